"""The Prefect adapter end to end: real Prefect flows (test harness) against the shared local control
plane and the session's real Ray."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from tests.support.cluster_under_test import JOBS_NAMESPACE, RAY_IMAGE
from tests.support.clusters import ready_raycluster
from tests.support.ray_waits import ray_job_status_becomes

pytestmark = pytest.mark.ray

IMAGE = RAY_IMAGE


def printing(marker: str) -> str:
    return f"python -c \"print('{marker}', flush=True)\""


@pytest.fixture(scope="session")
def credentials(least_privilege_kubeconfig: Path) -> Any:
    """The ServiceAccount of docker/kubernetes/rbac.yaml: the flows run with exactly its verbs."""
    from prefect_kubernetes.credentials import KubernetesClusterConfig, KubernetesCredentials

    return KubernetesCredentials(cluster_config=KubernetesClusterConfig.from_file(least_privilege_kubeconfig))


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
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
            )

    return asyncio.run(read())


def test_success_streams_the_ray_log_into_the_flow_run_log(prefect_api: None, credentials: Any, kube: Any) -> None:
    from kuberay_provider.core.resources import RAYJOB
    from kuberay_provider.prefect import RayJob, run_rayjob

    block = RayJob(
        namespace=JOBS_NAMESPACE,
        entrypoint=printing("PREFECT-E2E-MARKER answer 42"),
        runtime_env={"env_vars": {"GREETING": "hello"}},
        ray_cluster_spec=cluster_spec(),
        spec_params={"shutdown_after_job_finishes": True, "ttl_seconds_after_finished": 60},
        credentials=credentials,
        timeout=300,
    )
    state = run_rayjob(block, return_state=True)
    outcome = state.result()
    flow_run_id = state.state_details.flow_run_id
    assert outcome["succeeded"] and outcome["job_status"] == "SUCCEEDED" and outcome["deployment_status"] == "Complete"
    assert "[ray] PREFECT-E2E-MARKER answer 42" in flow_run_log(flow_run_id)
    rayjob = kube.find(RAYJOB, JOBS_NAMESPACE, outcome["rayjob_name"])
    assert rayjob is not None and rayjob["spec"]["runtimeEnvYAML"].strip() == "env_vars:\n  GREETING: hello"
    assert rayjob["metadata"]["labels"]  # the run's identity labels
    published = [str(artifact.data) for artifact in artifacts_of(flow_run_id)]
    # No link to the API server's proxy (a person cannot open it): the summary says how to get a browser link.
    assert not any(outcome["dashboard_url"] in data for data in published), published
    assert any("dashboard_browser_url" in data for data in published), published
    assert any("succeeded" in data and outcome["job_id"] in data for data in published), published  # the summary


def test_application_failure_fails_the_flow_with_reason_and_log_tail(prefect_api: None, credentials: Any) -> None:
    from kuberay_provider.core.job_runner import RayJobFailed
    from kuberay_provider.prefect import RayJob, run_rayjob

    block = RayJob(
        namespace=JOBS_NAMESPACE,
        entrypoint="python -c \"import sys; print('PREFECT-E2E about to fail', flush=True); sys.exit(3)\"",
        ray_cluster_spec=cluster_spec(),
        credentials=credentials,
        timeout=300,
        delete_on_failure=True,
    )
    with pytest.raises(RayJobFailed) as failed:
        run_rayjob(block)
    message = str(failed.value)
    assert "AppFailed" in message
    assert "last lines of the Ray job's log" in message and "PREFECT-E2E about to fail" in message


def test_sdk_submission_in_interactive_mode(prefect_api: None, credentials: Any, kube: Any) -> None:
    from kuberay_provider.core.resources import RAYJOB
    from kuberay_provider.prefect import RayJob, run_rayjob

    block = RayJob(
        namespace=JOBS_NAMESPACE,
        entrypoint=printing("PREFECT-SDK-MARKER"),
        ray_cluster_spec=cluster_spec(),
        submit_via="sdk",
        credentials=credentials,
        timeout=300,
    )
    state = run_rayjob(block, return_state=True)
    outcome = state.result()
    assert "[ray] PREFECT-SDK-MARKER" in flow_run_log(state.state_details.flow_run_id)
    rayjob = kube.find(RAYJOB, JOBS_NAMESPACE, outcome["rayjob_name"])
    assert rayjob["spec"]["submissionMode"] == "InteractiveMode" and rayjob["spec"]["jobId"] == outcome["job_id"]


@pytest.fixture(scope="session")
def existing_cluster(kube: Any) -> str:
    return ready_raycluster(kube, "prefect-existing", image=IMAGE)


@pytest.mark.parametrize("submit_via", ["kuberay", "sdk"])
def test_existing_cluster(
    prefect_api: None, credentials: Any, kube: Any, existing_cluster: str, submit_via: str
) -> None:
    from kuberay_provider.core.resources import RAYJOB
    from kuberay_provider.prefect import RayJob, run_rayjob

    marker = f"PREFECT-EXISTING-{submit_via.upper()}-MARKER"
    block = RayJob(
        namespace=JOBS_NAMESPACE,
        entrypoint=printing(marker),
        cluster_selector=existing_cluster,
        submit_via=submit_via,
        credentials=credentials,
        timeout=300,
    )
    state = run_rayjob(block, return_state=True)
    outcome = state.result()
    assert outcome["cluster_name"] == existing_cluster and outcome["job_status"] == "SUCCEEDED"
    assert f"[ray] {marker}" in flow_run_log(state.state_details.flow_run_id)
    if submit_via == "kuberay":
        rayjob = kube.find(RAYJOB, JOBS_NAMESPACE, outcome["rayjob_name"])
        assert rayjob["spec"]["clusterSelector"] == {"ray.io/cluster": existing_cluster}
    else:
        assert outcome["rayjob_name"] == ""  # straight to the cluster's head: no RayJob


def test_a_retried_task_reattaches_to_its_rayjob(prefect_api: None, credentials: Any, kube: Any) -> None:
    """A task's first try is lost after creating its RayJob; the retry (same task run) re-attaches."""
    from prefect import flow, task
    from prefect.context import TaskRunContext

    from kuberay_provider.core.resources import RAYJOB
    from kuberay_provider.prefect import RayJob, create_rayjob

    block = RayJob(
        namespace=JOBS_NAMESPACE,
        entrypoint=printing("PREFECT-REATTACH"),
        ray_cluster_spec=cluster_spec(),
        credentials=credentials,
    )

    @task(retries=1, retry_delay_seconds=0)
    async def lost_once(rayjob: RayJob) -> dict[str, str]:
        created = await create_rayjob.aio.fn(rayjob)  # in this task run: named after it
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
    assert kube.find(RAYJOB, JOBS_NAMESPACE, created["name"]) is not None


@pytest.mark.local_only("the example flow as printed (default namespace), whose job writes this machine's disk")
def test_batch_inference_flow_writes_the_days_partition(prefect_api: None, credentials: Any, tmp_path: Any) -> None:
    import importlib.util
    import json

    from tests.conftest import PROJECT_ROOT

    spec = importlib.util.spec_from_file_location(
        "prefect_batch_inference", PROJECT_ROOT / "dags" / "prefect_batch_inference.py"
    )
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    outcome = example.batch_inference("2026-01-15", str(tmp_path), credentials)
    assert outcome["job_status"] == "SUCCEEDED"
    partition = tmp_path / "output" / "date=2026-01-15"
    assert json.loads((partition / "_SUMMARY.json").read_text())["output"] == str(partition)
    assert any(partition.glob("*.parquet"))


SLEEPING = "python -c \"import time; print('PREFECT-CANCEL-MARKER', flush=True); time.sleep(300)\""


def sleeping_job(credentials: Any) -> Any:
    """A RayJob block whose job sleeps until it is stopped, its log not streamed."""
    from kuberay_provider.prefect import RayJob

    return RayJob(
        namespace=JOBS_NAMESPACE,
        entrypoint=SLEEPING,
        ray_cluster_spec=cluster_spec(),
        credentials=credentials,
        stream_logs=False,
    )


def gone_or_going(kube: Any, namespace: str, name: str) -> bool:
    from kuberay_provider.core.resources import RAYJOB

    rayjob = kube.find(RAYJOB, namespace, name)
    return rayjob is None or bool(rayjob["metadata"].get("deletionTimestamp"))


async def cancel_once_running(
    flow_run: Any, created: dict[str, str], kube: Any, ray_dashboard_url: str
) -> tuple[str, BaseException | None]:
    """Run ``flow_run`` (a coroutine) as an asyncio task, wait until the RayJob it creates runs its Ray job,
    then cancel the task as a user cancelling an async flow does. Returns the Ray job id and how it ended."""
    import time

    from kuberay_provider.core.lifecycle import RayJobLifecycle
    from kuberay_provider.core.status import is_started

    running = asyncio.create_task(flow_run)
    deadline = time.monotonic() + 120
    while not created and not running.done() and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    assert created, f"no RayJob was created: {running}"
    state = await asyncio.to_thread(
        RayJobLifecycle(kube).wait, created["namespace"], created["name"], until=is_started, timeout=180
    )
    await asyncio.to_thread(ray_job_status_becomes, ray_dashboard_url, state.job_id, {"RUNNING"}, 60)
    running.cancel()
    try:
        await running
    except BaseException as exc:
        return state.job_id, exc
    return state.job_id, None


def test_cancelling_the_wait_deletes_the_rayjob_and_stops_the_ray_job(
    prefect_api: None, credentials: Any, kube: Any, ray_dashboard_url: str
) -> None:
    """An async flow awaiting wait_for_rayjob is cancelled: the task deletes its RayJob before re-raising."""
    from prefect import flow
    from prefect.context import FlowRunContext

    from kuberay_provider.prefect import create_rayjob, wait_for_rayjob

    block = sleeping_job(credentials)
    created: dict[str, str] = {}

    @flow(name="prefect-e2e-cancel-wait")
    async def long_job() -> Any:
        flow_run_ids.append(FlowRunContext.get().flow_run.id)
        created.update(await create_rayjob(block))
        return await wait_for_rayjob(block, created)

    flow_run_ids: list[Any] = []
    job_id, ended = asyncio.run(cancel_once_running(long_job(), created, kube, ray_dashboard_url))
    assert isinstance(ended, asyncio.CancelledError), ended
    assert gone_or_going(kube, created["namespace"], created["name"])
    assert ray_job_status_becomes(ray_dashboard_url, job_id, {"STOPPED"}, 60) == "STOPPED"
    assert f"Deleted RayJob {created['namespace']}/{created['name']}: the task was cancelled" in flow_run_log(
        flow_run_ids[0]
    )


def test_a_crashed_flow_run_deletes_its_rayjobs_through_the_hook(
    prefect_api: None, credentials: Any, kube: Any, ray_dashboard_url: str
) -> None:
    """A flow run cancelled outside any task (here: while it sleeps) ends Crashed in process; its
    on_crashed hook deletes every RayJob the run created, found by the run's labels."""
    from prefect import flow
    from prefect.client.schemas.objects import FlowRun
    from prefect.context import FlowRunContext

    from kuberay_provider.prefect import create_rayjob, delete_rayjobs_hook
    from kuberay_provider.prefect.flows import _block_of

    block = sleeping_job(credentials)
    created: dict[str, str] = {}
    hook = delete_rayjobs_hook()

    @flow(name="prefect-e2e-cancel-hook", on_crashed=[hook], on_cancellation=[hook])
    async def long_job(rayjob: Any) -> None:  # Any: the test imports RayJob locally
        flow_run_ids.append(FlowRunContext.get().flow_run.id)
        created.update(await create_rayjob(rayjob))
        await asyncio.sleep(600)

    flow_run_ids: list[Any] = []
    job_id, ended = asyncio.run(cancel_once_running(long_job(block), created, kube, ray_dashboard_url))
    assert isinstance(ended, asyncio.CancelledError), ended
    assert gone_or_going(kube, created["namespace"], created["name"])
    assert ray_job_status_becomes(ray_dashboard_url, job_id, {"STOPPED"}, 60) == "STOPPED"
    stored = asyncio.run(read_flow_run(flow_run_ids[0]))
    assert stored.state.is_crashed(), stored.state
    assert "deleted its RayJobs " + created["name"] in flow_run_log(stored.id)
    # A runner's hook (the run's process already stopped) rebuilds the block from the stored parameters.
    rebuilt = _block_of(stored, "rayjob")
    assert (
        rebuilt is not None
        and rebuilt.entrypoint == SLEEPING
        and rebuilt.credentials.cluster_config.config == credentials.cluster_config.config
    )
    # ... a saved block's name, or the reference a deployment stores, even from async code (the hook is sync).
    document_id = block.save("prefect-e2e-cancel-hook", overwrite=True)

    async def rebuild(parameters: dict[str, Any]) -> Any:
        return _block_of(FlowRun(flow_id=stored.flow_id, name="elsewhere", parameters=parameters), "rayjob")

    by_name = asyncio.run(rebuild({"rayjob": "prefect-e2e-cancel-hook"}))
    by_ref = asyncio.run(rebuild({"rayjob": {"$ref": {"block_document_id": str(document_id)}}}))
    assert by_name.entrypoint == SLEEPING and by_ref.entrypoint == SLEEPING


async def read_flow_run(flow_run_id: Any) -> Any:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return await client.read_flow_run(flow_run_id)


def test_delete_flow_run_rayjobs_deletes_what_the_run_created(prefect_api: None, credentials: Any, kube: Any) -> None:
    from prefect import flow

    from kuberay_provider.prefect import create_rayjob, delete_flow_run_rayjobs

    block = sleeping_job(credentials)

    @flow(name="prefect-e2e-delete-run")
    async def create_then_clean() -> tuple[list[str], list[str]]:
        first = await create_rayjob(block)
        second = await create_rayjob.with_options(name="create_rayjob_again")(block)
        return [first["name"], second["name"]], await delete_flow_run_rayjobs(block)

    names, deleted = asyncio.run(create_then_clean())
    assert sorted(deleted) == sorted(names) and len(set(names)) == 2
    assert all(gone_or_going(kube, JOBS_NAMESPACE, name) for name in names)
