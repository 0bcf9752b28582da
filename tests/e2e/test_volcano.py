"""Volcano end to end: a Volcano Job with the ``ray`` plugin exposes its head as ``<job>-head-svc`` (the
local plane's stand-in routes it to the session's real Ray); the example DAG and a Prefect flow submit
straight to it through the Ray Jobs SDK with no RayJob or RayCluster, and a RayJob queued for Volcano
carries KubeRay's Volcano labels. Run with the least-privilege ServiceAccount."""

from __future__ import annotations

from tests.airflow_env import configure_airflow_env

configure_airflow_env()

import time
from pathlib import Path
from typing import Any

import pytest

from tests.airflow_env import PROJECT_DAGS_FOLDER
from tests.support.airflow_runs import load_dag, rayjobs_of

pytestmark = [
    pytest.mark.ray,
    pytest.mark.timeout(600),
    pytest.mark.local_only(
        "the local plane's Volcano Job API (batch.volcano.sh); a real cluster needs Volcano installed"
    ),
]
NAMESPACE = "default"


def volcano_ray_job(kube: Any, name: str) -> str:
    """A Volcano Job with the ray plugin, applied as a platform team would; returns its head Service."""
    from kubernetes import client

    custom = client.CustomObjectsApi(kube.api_client)
    custom.create_namespaced_custom_object(
        "batch.volcano.sh",
        "v1alpha1",
        NAMESPACE,
        "jobs",
        {
            "apiVersion": "batch.volcano.sh/v1alpha1",
            "kind": "Job",
            "metadata": {"name": name},
            "spec": {
                "minAvailable": 1,
                "schedulerName": "volcano",
                "plugins": {"ray": [], "svc": []},
                "tasks": [
                    {
                        "replicas": 1,
                        "name": "head",
                        "template": {
                            "spec": {
                                "containers": [
                                    {
                                        "name": "head",
                                        "image": "rayproject/ray:2.60.0",
                                        "resources": {"requests": {"cpu": "1"}},
                                    }
                                ]
                            }
                        },
                    },
                ],
            },
        },
    )
    core, service, deadline = client.CoreV1Api(kube.api_client), f"{name}-head-svc", time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            core.read_namespaced_service(service, NAMESPACE)
            return service
        except client.ApiException:
            time.sleep(0.2)
    raise AssertionError(f"no {service} for Volcano Job {name}")


def test_airflow_submits_to_a_volcano_ray_head_and_labels_a_volcano_queued_rayjob(
    airflow: Path, kube: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    volcano_ray_job(kube, "airflow-preprocess")
    run = load_dag("volcano_ray_head", PROJECT_DAGS_FOLDER).test(
        run_conf={"volcano_job": "airflow-preprocess", "volcano_queue": "batch"}
    )
    out = capfd.readouterr().out
    assert run.state == "success", out[-4000:]
    assert f"on Service {NAMESPACE}/airflow-preprocess-head-svc" in out and "[ray] preprocessed rows: 5050" in out
    assert rayjobs_of(kube, "volcano_ray_head", "preprocess", run.run_id) == []  # no RayJob on the Volcano head
    [train] = rayjobs_of(kube, "volcano_ray_head", "train", run.run_id)
    labels = train["metadata"]["labels"]
    assert labels["volcano.sh/queue-name"] == "batch" and labels["ray.io/scheduler-name"] == "volcano"
    assert train["status"]["jobStatus"] == "SUCCEEDED"


def test_prefect_runs_on_a_volcano_ray_head(prefect_api: None, kube: Any, least_privilege_kubeconfig: Path) -> None:
    from prefect_kubernetes.credentials import KubernetesClusterConfig, KubernetesCredentials

    from kuberay_provider.prefect import RayJob, run_rayjob

    volcano_ray_job(kube, "prefect-preprocess")
    credentials = KubernetesCredentials(cluster_config=KubernetesClusterConfig.from_file(least_privilege_kubeconfig))
    block = RayJob(
        credentials=credentials,
        namespace=NAMESPACE,
        volcano_job="prefect-preprocess",
        entrypoint="python -c \"print('prefect on volcano', 6 * 7)\"",
    )
    outcome = run_rayjob(block)
    assert outcome["succeeded"] and outcome["rayjob_name"] == "" and outcome["job_status"] == "SUCCEEDED"

    missing = RayJob(credentials=credentials, namespace=NAMESPACE, volcano_job="no-such-job", entrypoint="python -c 1")
    from kuberay_provider.core.lifecycle import ClusterNotFoundError

    with pytest.raises(ClusterNotFoundError, match="no-such-job-head-svc and no-such-job"):
        run_rayjob(missing)
