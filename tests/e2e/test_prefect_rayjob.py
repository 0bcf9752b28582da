"""The Prefect adapter end to end: real Prefect flows (test harness) against the shared local control
plane and the session's real Ray."""

from __future__ import annotations

import asyncio
from typing import Any, Iterator
from uuid import UUID

import pytest

pytestmark = pytest.mark.ray

IMAGE = "rayproject/ray:2.60.0"


def printing(marker: str) -> str:
    return f"python -c \"print('{marker}', flush=True)\""


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def credentials(local_plane: Any) -> Any:
    from prefect_kubernetes.credentials import KubernetesClusterConfig, KubernetesCredentials

    return KubernetesCredentials(cluster_config=KubernetesClusterConfig.from_file(local_plane.kubeconfig_path))


@pytest.fixture(scope="session")
def kube(local_plane: Any) -> Iterator[Any]:
    from kuberay_provider.core.kube.sync_client import RayObjectsClient

    with local_plane.api_client() as api_client:
        yield RayObjectsClient(api_client)


def cluster_spec() -> dict[str, Any]:
    from kuberay_provider.core.spec import simple_cluster_spec

    return simple_cluster_spec(image=IMAGE, ray_version="2.60.0", head_memory="1Gi")


def flow_run_log(flow_run_id: UUID) -> str:
    """Every line the flow run and its task runs sent to the Prefect API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    async def read() -> str:
        await APILogHandler.aflush()
        async with get_client() as client:
            logs = await client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        return "\n".join(entry.message for entry in logs)

    return asyncio.run(read())


def artifacts_of(flow_run_id: UUID) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async def read() -> list[Any]:
        async with get_client() as client:
            return await client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))

    return asyncio.run(read())


def test_success_streams_the_ray_log_into_the_flow_run_log(prefect_api: None, credentials: Any, kube: Any) -> None:
    from kuberay_provider.core.resources import RAYJOB
    from kuberay_provider.prefect import RayJob, run_rayjob

    block = RayJob(
        entrypoint=printing("PREFECT-E2E-MARKER answer 42"), runtime_env={"env_vars": {"GREETING": "hello"}},
        ray_cluster_spec=cluster_spec(), spec_params={"shutdown_after_job_finishes": True, "ttl_seconds_after_finished": 60},
        credentials=credentials, timeout=300,
    )
    state = run_rayjob(block, return_state=True)
    outcome = state.result()
    flow_run_id = state.state_details.flow_run_id
    assert outcome["succeeded"] and outcome["job_status"] == "SUCCEEDED" and outcome["deployment_status"] == "Complete"
    assert "[ray] PREFECT-E2E-MARKER answer 42" in flow_run_log(flow_run_id)
    rayjob = kube.find(RAYJOB, "default", outcome["rayjob_name"])
    assert rayjob is not None and rayjob["spec"]["runtimeEnvYAML"].strip() == "env_vars:\n  GREETING: hello"
    assert rayjob["metadata"]["labels"]  # the run's identity labels
    published = [str(artifact.data) for artifact in artifacts_of(flow_run_id)]
    assert any(f"[Ray dashboard]({outcome['dashboard_url']})" in data for data in published), published  # a link artifact
    assert any("succeeded" in data and outcome["job_id"] in data for data in published), published  # the summary


def test_application_failure_fails_the_flow_with_reason_and_log_tail(prefect_api: None, credentials: Any) -> None:
    from kuberay_provider.core.job_runner import RayJobFailed
    from kuberay_provider.prefect import RayJob, run_rayjob

    block = RayJob(
        entrypoint="python -c \"import sys; print('PREFECT-E2E about to fail', flush=True); sys.exit(3)\"",
        ray_cluster_spec=cluster_spec(), credentials=credentials, timeout=300, delete_on_failure=True,
    )
    with pytest.raises(RayJobFailed) as failed:
        run_rayjob(block)
    message = str(failed.value)
    assert "AppFailed" in message
    assert "last lines of the Ray job's log" in message and "PREFECT-E2E about to fail" in message


def test_sdk_submission_in_interactive_mode(prefect_api: None, credentials: Any, kube: Any) -> None:
    from kuberay_provider.core.resources import RAYJOB
    from kuberay_provider.prefect import RayJob, run_rayjob

    block = RayJob(entrypoint=printing("PREFECT-SDK-MARKER"), ray_cluster_spec=cluster_spec(), submit_via="sdk",
                   credentials=credentials, timeout=300)
    state = run_rayjob(block, return_state=True)
    outcome = state.result()
    assert "[ray] PREFECT-SDK-MARKER" in flow_run_log(state.state_details.flow_run_id)
    rayjob = kube.find(RAYJOB, "default", outcome["rayjob_name"])
    assert rayjob["spec"]["submissionMode"] == "InteractiveMode" and rayjob["spec"]["jobId"] == outcome["job_id"]


@pytest.fixture(scope="session")
def existing_cluster(kube: Any) -> str:
    from kuberay_provider.core.resources import RAYCLUSTER
    from kuberay_provider.core.spec import raycluster, simple_cluster_spec

    name = "prefect-existing"
    if kube.find(RAYCLUSTER, "default", name) is None:
        kube.create(raycluster(name, "default", base={"spec": simple_cluster_spec(image=IMAGE)}))
    for event in kube.watch(RAYCLUSTER, "default", name=name, timeout_seconds=60):
        if (event.object.get("status") or {}).get("state") == "ready":
            return name
    raise AssertionError("the RayCluster did not become ready")


@pytest.mark.parametrize("submit_via", ["kuberay", "sdk"])
def test_existing_cluster(prefect_api: None, credentials: Any, kube: Any, existing_cluster: str, submit_via: str) -> None:
    from kuberay_provider.core.resources import RAYJOB
    from kuberay_provider.prefect import RayJob, run_rayjob

    marker = f"PREFECT-EXISTING-{submit_via.upper()}-MARKER"
    block = RayJob(entrypoint=printing(marker), cluster_selector=existing_cluster, submit_via=submit_via,
                   credentials=credentials, timeout=300)
    state = run_rayjob(block, return_state=True)
    outcome = state.result()
    assert outcome["cluster_name"] == existing_cluster and outcome["job_status"] == "SUCCEEDED"
    assert f"[ray] {marker}" in flow_run_log(state.state_details.flow_run_id)
    if submit_via == "kuberay":
        rayjob = kube.find(RAYJOB, "default", outcome["rayjob_name"])
        assert rayjob["spec"]["clusterSelector"] == {"ray.io/cluster": existing_cluster}
    else:
        assert outcome["rayjob_name"] == ""  # straight to the cluster's head: no RayJob


def test_a_retried_task_reattaches_to_its_rayjob(prefect_api: None, credentials: Any, kube: Any) -> None:
    """A task's first try is lost after creating its RayJob; the retry (same task run) re-attaches."""
    from prefect import flow, task
    from prefect.context import TaskRunContext

    from kuberay_provider.core.resources import RAYJOB
    from kuberay_provider.prefect import RayJob, create_rayjob

    block = RayJob(entrypoint=printing("PREFECT-REATTACH"), ray_cluster_spec=cluster_spec(), credentials=credentials)

    @task(retries=1, retry_delay_seconds=0)
    async def lost_once(rayjob: RayJob) -> dict[str, str]:
        created = await create_rayjob.fn(rayjob)  # in this task run: named after it
        if TaskRunContext.get().task_run.run_count == 1:
            raise RuntimeError("the worker was lost")
        return created

    @flow(name="prefect-e2e-reattach")
    async def reattach() -> Any:
        return await lost_once(block, return_state=True)

    state = asyncio.run(reattach())
    created = state.result()
    log = flow_run_log(state.state_details.flow_run_id)
    assert log.count("Created RayJob") == 1 and log.count("Re-attached to RayJob") == 1, log
    assert kube.find(RAYJOB, "default", created["name"]) is not None


def test_batch_inference_flow_writes_the_days_partition(prefect_api: None, credentials: Any, tmp_path: Any) -> None:
    import importlib.util
    import json

    from tests.conftest import PROJECT_ROOT

    spec = importlib.util.spec_from_file_location("prefect_batch_inference", PROJECT_ROOT / "dags" / "prefect_batch_inference.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    outcome = example.batch_inference("2026-01-15", str(tmp_path), credentials)
    assert outcome["job_status"] == "SUCCEEDED"
    partition = tmp_path / "output" / "date=2026-01-15"
    assert json.loads((partition / "_SUMMARY.json").read_text())["output"] == str(partition)
    assert any(partition.glob("*.parquet"))
