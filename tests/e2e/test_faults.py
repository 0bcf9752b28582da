"""RayJobs through the Airflow operator and the Prefect flow while the API server misbehaves: a local control plane injecting faults
into 10 % of the provider's requests (500, 503, 429 with Retry-After, connection resets, slow answers,
dropped watches, 410 Gone on watch resume), on the session's real Ray: 12 RayJobs through the operator, 4 at a
time, and 4 Prefect flow runs side by side. Every job must end in its true state, none twice, no cluster
left behind."""

from __future__ import annotations

from tests.airflow_env import configure_airflow_env

configure_airflow_env()

import asyncio
import contextvars
import json
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from kuberay_provider.local.apiserver.faults import FaultPlan
from kuberay_provider.local.controller import ControllerSettings, RayJobSettings
from kuberay_provider.local.plane import LocalControlPlane
from tests.support.airflow_fakes import FakeTaskInstance
from tests.support.airflow_runs import wait_until

pytestmark = [pytest.mark.ray, pytest.mark.timeout(900)]

JOBS = 12  # three rounds of four at a time; the faults they met are counted below (>= 10, >= 4 kinds)
FAILING = {3, 6, 11}  # these exit 1: their true end is AppFailed (one per round)
CONN = "AIRFLOW_CONN_KUBERAY_FAULTY"
# The embedded KubeRay (which the faults spare) looks at each RayJob every 0.5 s instead of every 1 s, so a
# job's end is seen sooner; the faults still hit only the provider's requests, at the same rate.
REQUEUE_SECONDS = 0.5


@pytest.fixture(scope="module")
def faulty_plane(crds_dir: Path, ray_dashboard_url: str) -> Iterator[LocalControlPlane]:
    from kuberay_provider.airflow.devenv import kuberay_connection_env
    from kuberay_provider.local.ray_backend import LocalRayBackend

    backend = LocalRayBackend(dashboard_url=ray_dashboard_url)
    try:
        settings = ControllerSettings(rayjob=RayJobSettings(requeue_seconds=REQUEUE_SECONDS))
        with LocalControlPlane(
            crds_dir=crds_dir, backend=backend, faults=FaultPlan(rate=0.1, seed=2026), controller_settings=settings
        ) as plane:
            kuberay_connection_env(Path(plane.kubeconfig_path), conn_id="kuberay_faulty")
            yield plane
    finally:
        os.environ.pop(CONN, None)
        asyncio.run(backend.close())


def run_one(index: int) -> tuple[int, str]:
    """One task try, as a worker runs it: the operator's execute(); returns how it ended."""
    from airflow.sdk.exceptions import AirflowException

    from kuberay_provider.airflow.operators import RayJobOperator
    from kuberay_provider.core.spec import simple_cluster_spec

    code = 1 if index in FAILING else 0
    operator = RayJobOperator(
        task_id=f"job{index}",
        kuberay_conn_id="kuberay_faulty",
        shutdown_after_job_finishes=True,
        ray_cluster_spec=simple_cluster_spec(image="rayproject/ray:2.60.0"),
        entrypoint=f"python -c \"import sys; print('FAULTS-MARKER {index}', flush=True); sys.exit({code})\"",
    )
    try:
        outcome = operator.execute(
            {"ti": FakeTaskInstance(dag_id="kuberay_e2e_faults", task_id=f"job{index}", run_id="faults")}
        )
        return index, outcome["job_status"]
    except AirflowException as exc:
        return index, "FAILED" if "reason=AppFailed" in str(exc) else f"error: {exc}"


def test_twelve_rayjobs_end_in_their_true_state_under_ten_percent_api_faults(
    airflow: Path, faulty_plane: LocalControlPlane, ray_dashboard_url: str
) -> None:
    from ray.job_submission import JobSubmissionClient

    from kuberay_provider.core.kube.sync_client import RayObjectsClient
    from kuberay_provider.core.naming import LABEL_OWNER
    from kuberay_provider.core.resources import RAYCLUSTER, RAYJOB

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=4) as pool:
        ended = dict(pool.map(run_one, range(JOBS)))
    expected = {index: "FAILED" if index in FAILING else "SUCCEEDED" for index in range(JOBS)}
    injected = dict(faulty_plane.faults.injected)  # type: ignore[union-attr]
    assert ended == expected, json.dumps({"ended": ended, "faults": injected})
    assert sum(injected.values()) >= 10 and len(injected) >= 4, injected  # the faults really happened

    with faulty_plane.api_client() as api_client:
        kube = RayObjectsClient(api_client)
        rayjobs = kube.list(RAYJOB, "default", label_selector=f"{LABEL_OWNER}=kuberay_e2e_faults")
        assert len(rayjobs) == JOBS  # one per task: none created twice
        for rayjob in rayjobs:
            index = int(rayjob["metadata"]["labels"]["kuberay-provider.io/task"].removeprefix("job"))
            assert rayjob["status"]["jobStatus"] == expected[index], rayjob["status"]
        names = {rayjob["metadata"]["name"] for rayjob in rayjobs}
        ray_jobs = [
            job
            for job in JobSubmissionClient(ray_dashboard_url).list_jobs()
            if any((job.submission_id or "").startswith(f"{name}-") for name in names)
        ]
        assert len(ray_jobs) == JOBS  # each RayJob's Ray job ran once
        wait_until(
            lambda: (
                not [
                    c
                    for c in kube.list(RAYCLUSTER, "default")
                    if any(c["metadata"]["name"].startswith(f"{name}-") for name in names)
                ]
            ),
            120,
            "every RayJob's cluster to be deleted (shutdownAfterJobFinishes)",
        )
    print(f"{JOBS} RayJobs under faults {injected} in {time.monotonic() - started:.0f} s")


PREFECT_JOBS = 4
PREFECT_FAILING = {2}


def test_prefect_rayjobs_end_in_their_true_state_under_ten_percent_api_faults(
    prefect_api: None, faulty_plane: LocalControlPlane
) -> None:
    from prefect_kubernetes.credentials import KubernetesClusterConfig, KubernetesCredentials

    from kuberay_provider.core.job_runner import RayJobFailed
    from kuberay_provider.core.kube.sync_client import RayObjectsClient
    from kuberay_provider.core.resources import RAYJOB
    from kuberay_provider.core.spec import simple_cluster_spec
    from kuberay_provider.prefect import RayJob, run_rayjob

    credentials = KubernetesCredentials(cluster_config=KubernetesClusterConfig.from_file(faulty_plane.kubeconfig_path))
    before = sum(faulty_plane.faults.injected.values())  # type: ignore[union-attr]

    def run_one_flow(index: int) -> tuple[str, str]:
        """One flow run of ``run_rayjob``; returns its Ray job's status and its RayJob's name."""
        code = 1 if index in PREFECT_FAILING else 0
        block = RayJob(
            entrypoint=f"python -c \"import sys; print('PREFECT-FAULTS {index}', flush=True); sys.exit({code})\"",
            ray_cluster_spec=simple_cluster_spec(image="rayproject/ray:2.60.0"),
            credentials=credentials,
            timeout=300,
            spec_params={"shutdown_after_job_finishes": True},
        )
        state = run_rayjob(block, return_state=True)
        try:
            outcome = state.result()
            return outcome["job_status"], outcome["rayjob_name"]
        except RayJobFailed as exc:
            return exc.outcome.job_status, exc.outcome.rayjob_name

    # The flow runs go side by side, as a deployment's runs do; each thread runs in a copy of this context
    # (the test harness's Prefect settings live in a context variable).
    with ThreadPoolExecutor(max_workers=PREFECT_JOBS) as pool:
        futures = [pool.submit(contextvars.copy_context().run, run_one_flow, index) for index in range(PREFECT_JOBS)]
        results = [future.result() for future in futures]
    ended = {index: status for index, (status, _) in enumerate(results)}
    names = [name for _, name in results]
    assert ended == {index: "FAILED" if index in PREFECT_FAILING else "SUCCEEDED" for index in range(PREFECT_JOBS)}
    assert sum(faulty_plane.faults.injected.values()) > before  # type: ignore[union-attr]
    with faulty_plane.api_client() as api_client:
        kube = RayObjectsClient(api_client)
        statuses = [(kube.get(RAYJOB, "default", name)["status"]["jobStatus"]) for name in names]
    assert statuses == [ended[index] for index in range(PREFECT_JOBS)] and len(set(names)) == PREFECT_JOBS
