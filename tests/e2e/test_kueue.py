"""Kueue end to end: two RayJobs on a LocalQueue whose ClusterQueue has CPU quota for one run one after
the other, on the session's real Ray, from a real Airflow DAG (deferred, through a real triggerer) and
from a real Prefect flow; each task reports its wait for admission. The queues are made with the
official client as a platform team would; the jobs run with the least-privilege ServiceAccount."""

from __future__ import annotations

from tests.airflow_env import configure_airflow_env

configure_airflow_env()

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.airflow_env import PROJECT_DAGS_FOLDER
from tests.support.airflow_runs import dag_test_with_real_triggerer, load_dag, rayjobs_of, trigger_log

pytestmark = [
    pytest.mark.ray,
    pytest.mark.timeout(600),
    pytest.mark.local_only(
        "the local plane's Kueue (its ClusterQueue/LocalQueue stand-in); a real cluster needs Kueue installed"
    ),
]

KUEUE = ("kueue.x-k8s.io", "v1beta1")
NAMESPACE = "default"  # where the least-privilege ServiceAccount runs its jobs


def make_queue(kube: Any, name: str, cpu: str) -> None:
    """A ClusterQueue with ``cpu`` of quota and a LocalQueue ``name`` on it, in the jobs' namespace."""
    from kubernetes import client

    custom = client.CustomObjectsApi(kube.api_client)
    custom.create_cluster_custom_object(
        *KUEUE,
        "clusterqueues",
        {
            "apiVersion": "kueue.x-k8s.io/v1beta1",
            "kind": "ClusterQueue",
            "metadata": {"name": f"{name}-cq"},
            "spec": {
                "namespaceSelector": {},
                "queueingStrategy": "StrictFIFO",
                "resourceGroups": [
                    {
                        "coveredResources": ["cpu"],
                        "flavors": [{"name": "default-flavor", "resources": [{"name": "cpu", "nominalQuota": cpu}]}],
                    }
                ],
            },
        },
    )
    custom.create_namespaced_custom_object(
        *KUEUE,
        NAMESPACE,
        "localqueues",
        {
            "apiVersion": "kueue.x-k8s.io/v1beta1",
            "kind": "LocalQueue",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"clusterQueue": f"{name}-cq"},
        },
    )


def admission_times(kube: Any, rayjob_names: list[str]) -> dict[str, datetime]:
    """When the local Kueue admitted each RayJob: its ``Started`` event."""
    from kubernetes import client

    events = client.CoreV1Api(kube.api_client).list_namespaced_event(NAMESPACE).items
    return {
        e.involved_object.name: e.event_time
        for e in events
        if e.reason == "Started" and e.involved_object.name in rayjob_names
    }


def assert_one_after_the_other(kube: Any, rayjobs: list[dict[str, Any]]) -> None:
    """The later-admitted RayJob was admitted only once the earlier one had finished."""
    admitted = admission_times(kube, [r["metadata"]["name"] for r in rayjobs])
    assert len(admitted) == 2, admitted
    first, second = sorted(rayjobs, key=lambda r: admitted[r["metadata"]["name"]])
    first_end = datetime.fromisoformat(first["status"]["endTime"].replace("Z", "+00:00"))
    assert admitted[second["metadata"]["name"]] >= first_end, (admitted, first["status"])


def test_airflow_two_deferred_jobs_on_a_queue_for_one_run_one_after_the_other(
    airflow: Path, triggerer: Any, kube: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    make_queue(kube, "airflow-team", "2")  # each job: head 1 CPU + submitter 0.5
    run = dag_test_with_real_triggerer(
        load_dag("kueue_queued_jobs", PROJECT_DAGS_FOLDER), run_conf={"queue": "airflow-team", "seconds": 4}
    )
    out = capfd.readouterr().out
    assert run.state == "success", out[-4000:] + triggerer.output()[-2000:]
    tasks = ("score_shard_a", "score_shard_b")
    rayjobs = [rayjobs_of(kube, "kueue_queued_jobs", task, run.run_id)[0] for task in tasks]
    assert all(r["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "airflow-team" for r in rayjobs)
    assert_one_after_the_other(kube, rayjobs)
    for rayjob in rayjobs:
        name = rayjob["metadata"]["name"]
        assert f"RayJob {NAMESPACE}/{name} is queued for admission on Kueue LocalQueue 'airflow-team'" in out
        assert f"RayJob {NAMESPACE}/{name} admitted by Kueue LocalQueue 'airflow-team' after" in out
    assert "scored shard a: 40425" in out + "".join(
        trigger_log(airflow, "kueue_queued_jobs", run.run_id, t) for t in tasks
    )


def test_prefect_two_jobs_on_a_queue_for_one_run_one_after_the_other(
    prefect_api: None, kube: Any, least_privilege_kubeconfig: Path
) -> None:
    from prefect import flow
    from prefect_kubernetes.credentials import KubernetesClusterConfig, KubernetesCredentials

    from kuberay_provider.core.spec import simple_cluster_spec
    from kuberay_provider.prefect import RayJob, create_rayjob, wait_for_rayjob

    make_queue(kube, "prefect-team", "2")
    credentials = KubernetesCredentials(cluster_config=KubernetesClusterConfig.from_file(least_privilege_kubeconfig))
    spec = simple_cluster_spec(image="rayproject/ray:2.60.0", ray_version="2.60.0", head_memory="1Gi")
    blocks = [
        RayJob(
            credentials=credentials,
            namespace=NAMESPACE,
            queue_name="prefect-team",
            admission_timeout=300,
            ray_cluster_spec=spec,
            spec_params={"shutdown_after_job_finishes": True},
            entrypoint=f"python -c \"import time; time.sleep(4); print('prefect shard {shard}', flush=True)\"",
        )
        for shard in "ab"
    ]

    @flow(name="kueue-two-shards")
    def two_shards() -> list[dict[str, Any]]:
        created = [create_rayjob.submit(block).result() for block in blocks]
        waits = [wait_for_rayjob.submit(block, made) for block, made in zip(blocks, created, strict=False)]
        return [wait.result() for wait in waits]

    state = two_shards(return_state=True)
    outcomes = state.result()
    assert all(outcome["succeeded"] for outcome in outcomes), outcomes
    from kuberay_provider.core.resources import RAYJOB

    rayjobs = [kube.get(RAYJOB, NAMESPACE, outcome["rayjob_name"]) for outcome in outcomes]
    assert_one_after_the_other(kube, rayjobs)
    from tests.e2e.test_prefect_rayjob import flow_run_log

    log = flow_run_log(state.state_details.flow_run_id)
    for rayjob in rayjobs:
        name = rayjob["metadata"]["name"]
        assert f"RayJob {NAMESPACE}/{name} admitted by Kueue LocalQueue 'prefect-team' after" in log, log[-3000:]
    assert "queued for admission on Kueue LocalQueue 'prefect-team'" in log
