"""Prefect end to end on the local control plane and the session's real Ray: a retried flow run re-attaches
to the RayJob its timed-out attempt left running, and the bearer token and the kubeconfig's CA data never
reach a Prefect log, artifact, state message or exception (the Prefect twin of test_airflow_secrets.py)."""

from __future__ import annotations

import asyncio
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import yaml

from tests.support.cluster_under_test import JOBS_NAMESPACE, RAY_IMAGE

pytestmark = pytest.mark.ray

IMAGE = RAY_IMAGE


@pytest.fixture(scope="module")
def credentials(least_privilege_kubeconfig: Path) -> Any:
    """A kubeconfig with the least-privilege ServiceAccount's bearer token and the plane's CA inside."""
    from prefect_kubernetes.credentials import KubernetesClusterConfig, KubernetesCredentials

    return KubernetesCredentials(cluster_config=KubernetesClusterConfig.from_file(least_privilege_kubeconfig))


def cluster_spec() -> dict[str, Any]:
    from kuberay_provider.core.spec import simple_cluster_spec

    return simple_cluster_spec(image=IMAGE, ray_version="2.60.0", head_memory="1Gi")


def read_api(read: Callable[[Any], Any]) -> Any:
    """``read(client)`` against the Prefect API, once the run loggers' lines have been sent."""
    from prefect.client.orchestration import get_client
    from prefect.logging.handlers import APILogHandler

    async def go() -> Any:
        await APILogHandler.aflush()
        async with get_client() as client:
            return await read(client)

    return asyncio.run(go())


def logs_of(flow_run_ids: list[UUID]) -> str:
    """Every line the flow runs and their task runs sent to the Prefect API."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    logs = read_api(lambda client: client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=flow_run_ids))))
    return "\n".join(entry.message for entry in logs)


def ray_jobs_with(ray_dashboard_url: str, marker: str) -> list[Any]:
    from ray.job_submission import JobSubmissionClient

    return [job for job in JobSubmissionClient(ray_dashboard_url).list_jobs() if marker in (job.entrypoint or "")]


def test_a_retried_flow_run_re_attaches_to_the_rayjob_its_timed_out_attempt_left_running(
    prefect_api: None, credentials: Any, kube: Any, ray_dashboard_url: str
) -> None:
    """Attempt 1 gives up waiting (a 10 s timeout on a 25 s job) and fails; attempt 2 (new task runs, new
    dynamic keys) finds the same RayJob still running, waits for it and succeeds: one RayJob, one Ray job."""
    from prefect import flow
    from prefect.context import FlowRunContext

    from kuberay_provider.core.naming import run_selector
    from kuberay_provider.core.resources import RAYJOB
    from kuberay_provider.prefect import RayJob, create_rayjob, wait_for_rayjob

    marker = f"PREFECT-FLOW-RETRY-{uuid.uuid4().hex[:8]}"
    block = RayJob(
        namespace=JOBS_NAMESPACE,
        entrypoint=f"python -c \"import time; print('{marker} started', flush=True); time.sleep(25); "
        f"print('{marker} done', flush=True)\"",
        ray_cluster_spec=cluster_spec(),
        credentials=credentials,
    )
    names: list[str] = []

    @flow(name="prefect-e2e-flow-retry", retries=1, retry_delay_seconds=0)
    async def patient() -> dict[str, Any]:
        first_attempt = FlowRunContext.get().flow_run.run_count == 1
        # The first attempt gives up early; how long to wait is not part of the job, so the retry's
        # longer wait still names the same RayJob.
        rayjob = block.model_copy(update={"timeout": 10 if first_attempt else 300})
        created = await create_rayjob(rayjob)
        names.append(created["name"])
        return await wait_for_rayjob(rayjob, created)

    state = asyncio.run(patient(return_state=True))
    flow_run_id = state.state_details.flow_run_id
    log = logs_of([flow_run_id])
    assert state.is_completed(), log[-3000:]
    outcome = state.result()
    assert outcome["job_status"] == "SUCCEEDED" and outcome["rayjob_name"] == names[0], outcome
    assert read_api(lambda client: client.read_flow_run(flow_run_id)).run_count == 2
    assert len(names) == 2 and names[0] == names[1], names
    assert f"RayJob {JOBS_NAMESPACE}/{names[0]} did not reach the awaited state within" in log, log[-3000:]  # attempt 1
    assert log.count("Created RayJob") == 1 and log.count("Re-attached to RayJob") == 1, log[-3000:]
    assert f"[ray] {marker} done" in log
    rayjobs = kube.list(RAYJOB, JOBS_NAMESPACE, label_selector=run_selector("prefect-e2e-flow-retry", str(flow_run_id)))
    assert [rayjob["metadata"]["name"] for rayjob in rayjobs] == [names[0]]
    jobs = ray_jobs_with(ray_dashboard_url, marker)
    assert len(jobs) == 1 and str(jobs[0].status.value) == "SUCCEEDED", jobs


class Runs:
    """The flow runs of the leak test, and every exception they raised."""

    def __init__(self) -> None:
        self.ids: list[UUID] = []
        self.errors: list[BaseException] = []

    def record(self, state: Any) -> Any:
        """Keep the run's id and, if it failed, its exception; return what it returned (or raised)."""
        self.ids.append(state.state_details.flow_run_id)
        result = state.result(raise_on_failure=False)
        if isinstance(result, BaseException):
            self.errors.append(result)
        return result

    def exception_texts(self) -> str:
        return "\n".join(
            text
            for error in self.errors
            for text in (str(error), repr(error), "".join(traceback.format_exception(error)))
        )

    def state_messages(self) -> str:
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

        async def read(client: Any) -> list[str]:
            flow_runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=self.ids)))
            task_runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=self.ids)))
            return [str(run.state.message or "") for run in [*flow_runs, *task_runs] if run.state is not None]

        return "\n".join(read_api(read))

    def artifacts(self) -> list[str]:
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

        found = read_api(
            lambda client: client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=self.ids))
            )
        )
        return [f"{artifact.key} {artifact.description} {artifact.data}" for artifact in found]


def test_the_token_and_the_kubeconfig_never_reach_prefect_logs_artifacts_or_exceptions(
    prefect_api: None, credentials: Any, least_privilege_kubeconfig: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from prefect import flow, get_run_logger

    from kuberay_provider.prefect import RayJob, create_rayjob, run_rayjob

    kubeconfig = yaml.safe_load(least_privilege_kubeconfig.read_text())
    token = kubeconfig["users"][0]["user"]["token"]
    ca_data = kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"]
    succeeding = RayJob(
        namespace=JOBS_NAMESPACE,
        entrypoint="python -c \"print('PREFECT-SECRETS-OK', flush=True)\"",
        ray_cluster_spec=cluster_spec(),
        credentials=credentials,
        timeout=300,
        delete_on_success=True,
    )
    failing = RayJob(
        namespace=JOBS_NAMESPACE,
        entrypoint="python -c \"import sys; print('PREFECT-SECRETS-FAILING', flush=True); sys.exit(4)\"",
        ray_cluster_spec=cluster_spec(),
        credentials=credentials,
        timeout=300,
        delete_on_failure=True,
    )
    refused = succeeding.model_copy(update={"namespace": "kube-system"})  # the ServiceAccount may not write there
    succeeding.save("prefect-e2e-secrets", overwrite=True)
    runs = Runs()

    # Success, by the saved block's name: logs, the dashboard link and the summary artifacts.
    outcome = runs.record(run_rayjob("prefect-e2e-secrets", return_state=True))
    assert outcome["job_status"] == "SUCCEEDED", outcome
    # The Ray job fails: RayJobFailed with KubeRay's reason and the log's tail, and the summary artifact.
    assert "AppFailed" in str(runs.record(run_rayjob(failing, return_state=True)))
    # Kubernetes refuses the RayJob: the API's error, raised inside the task.
    assert "missing RBAC permission" in str(runs.record(run_rayjob(refused, return_state=True)))

    @flow(name="prefect-e2e-secrets-user-code")
    async def careless(rayjob: str) -> None:
        block = await RayJob.load(rayjob)
        get_run_logger().info("running %s", block)  # a block in a log line
        try:
            await create_rayjob(block, "an-argument-too-many")  # Prefect's own error quotes the arguments
        except TypeError as error:
            raise RuntimeError(f"could not start {block!r}") from error  # and in the user's own exception

    error = runs.record(asyncio.run(careless("prefect-e2e-secrets", return_state=True)))
    assert "could not start RayJob(" in str(error) and "Error binding parameters" in str(error.__cause__), error

    printed = capfd.readouterr()
    log = logs_of(runs.ids)
    assert "[ray] PREFECT-SECRETS-OK" in log and "PREFECT-SECRETS-FAILING" in log  # the runs did talk to the plane
    artifacts = runs.artifacts()
    assert any("Ray dashboard" in text for text in artifacts) and any("failed" in text for text in artifacts), artifacts
    written = {
        "logs": log,
        "artifacts": "\n".join(artifacts),
        "exceptions": runs.exception_texts(),
        "states": runs.state_messages(),
        "console": printed.out + printed.err,
    }
    for where, text in written.items():
        assert token not in text, f"the bearer token is in the {where}"
        assert ca_data not in text, f"the kubeconfig's CA data is in the {where}"
    # Run by the saved block's name, the flow run's stored parameters hold the name, not the kubeconfig.
    stored = read_api(lambda client: client.read_flow_run(runs.ids[0]))
    assert stored.parameters == {"rayjob": "prefect-e2e-secrets"}
