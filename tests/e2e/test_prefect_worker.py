"""The ``kuberay`` worker end to end: a real Prefect server (the session's temporary one), a work pool made with
``prefect work-pool create --type kuberay``, a deployment of a flow whose code is on this disk, and a real
``prefect worker start`` process against the local control plane, whose RayJobs run on the session's Ray.

Each flow run's process is the Ray driver of its RayJob; the worker streams the Ray job's log into the flow
run's log, deletes the RayJob of a cancelled run, marks a run crashed when its RayJob ends before the flow
reported, and re-attaches instead of creating a second RayJob when a flow run is submitted again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest

from tests.support.prefect_worker import WorkerProcess, prefect_cli, prefect_env

pytestmark = [
    pytest.mark.ray,
    pytest.mark.local_only("flows that run as the Ray driver with this machine's Python and Prefect"),
]

IMAGE = "rayproject/ray:2.60.0"
POOL = "kuberay-e2e"
FLOW_CODE = """
import time

import ray
from prefect import flow, get_run_logger


@ray.remote
def square(x: int) -> int:
    print(f"WORKER-E2E square of {x}", flush=True)
    return x * x


@flow(name="on-ray")
def on_ray(mode: str = "ok") -> int:
    ray.init()  # no address: the RayJob's cluster, whose driver this process is
    total = sum(ray.get([square.remote(i) for i in range(4)]))
    print(f"WORKER-E2E total {total}", flush=True)
    get_run_logger().info("WORKER-E2E flow log, %s Ray node(s)", len(ray.nodes()))
    if mode == "sleep":
        print("WORKER-E2E sleeping", flush=True)
        time.sleep(600)
    return total
"""
CRASHING_COMMAND = "python -c \"import sys; print('WORKER-E2E no Prefect here', flush=True); sys.exit(3)\""


def api(call: Callable[[Any], Awaitable[Any]]) -> Any:
    from prefect.client.orchestration import get_client

    async def go() -> Any:
        async with get_client() as client:
            return await call(client)

    return asyncio.run(go())


def run_log(flow_run_id: UUID) -> str:
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    logs = api(lambda client: client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))))
    return "\n".join(entry.message for entry in logs)


def log_with(flow_run_id: UUID, marker: str) -> str:
    """The flow run's log once it holds ``marker``, else ""."""
    log = run_log(flow_run_id)
    return log if marker in log else ""


def wait_for(
    what: str, check: Callable[[], Any], timeout: float, worker: WorkerProcess, flow_run_id: UUID | None = None
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(1)
    run = (
        f"flow run {flow_run_id} is {state_of(flow_run_id)}; its log:\n{run_log(flow_run_id)}\n" if flow_run_id else ""
    )
    raise AssertionError(f"no {what} within {timeout} s; {run}the worker's output ends:\n{worker.log()[-4000:]}")


def state_of(flow_run_id: UUID) -> Any:
    return api(lambda client: client.read_flow_run(flow_run_id)).state


def final_state(flow_run_id: UUID, worker: WorkerProcess, timeout: float = 300) -> Any:
    def read() -> Any:
        state = state_of(flow_run_id)
        return state if state is not None and state.is_final() else None

    return wait_for("final state", read, timeout, worker, flow_run_id)


def rayjobs_of(kube: Any, flow_run_id: UUID) -> list[dict[str, Any]]:
    from kuberay_provider.core.resources import RAYJOB

    return kube.list(RAYJOB, "default", label_selector=f"prefect.io/flow-run-id={flow_run_id}")


@pytest.fixture(scope="module")
def worker_env(prefect_api: None, least_privilege_kubeconfig: Path) -> dict[str, str]:
    """The CLI's and the worker's environment: the session's Prefect API, the least-privilege kubeconfig
    (the worker creates RayJobs with exactly docker/kubernetes/rbac.yaml's verbs), polling every 2 s."""
    from prefect.settings import PREFECT_API_URL

    return prefect_env(
        str(PREFECT_API_URL.value()),
        least_privilege_kubeconfig,
        PREFECT_WORKER_QUERY_SECONDS="2",
        PREFECT_WORKER_PREFETCH_SECONDS="5",
    )


@pytest.fixture(scope="module")
def deployment(worker_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> str:
    """The pool as a user makes it (the CLI, the worker type's default template), and a deployment of a flow
    whose code stays on this disk: its pull step sets the working directory, which the local Ray shares."""
    from prefect import flow

    from kuberay_provider.prefect import KubeRayWorker

    created = prefect_cli(worker_env, "work-pool", "create", POOL, "--type", "kuberay", "--overwrite")
    assert created.returncode == 0, created.stdout + created.stderr
    pool = api(lambda client: client.read_work_pool(POOL))
    assert pool.type == "kuberay" and pool.base_job_template == KubeRayWorker.get_default_base_job_template()
    code = tmp_path_factory.mktemp("flow-code")
    (code / "worker_flows.py").write_text(FLOW_CODE)
    flow.from_source(source=str(code), entrypoint="worker_flows.py:on_ray").deploy(
        "e2e", work_pool_name=POOL, image=IMAGE, build=False, push=False, print_next_steps=False
    )
    return "on-ray/e2e"


@pytest.fixture(scope="module")
def worker(
    worker_env: dict[str, str], deployment: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    process = WorkerProcess(
        worker_env,
        tmp_path_factory.mktemp("worker") / "worker.log",
        "--pool",
        POOL,
        "--type",
        "kuberay",
        "--limit",
        "3",
        "--name",
        "e2e-worker",
    ).start()
    try:
        wait_for("worker start", lambda: "started!" in process.log(), 180, process)
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def runs(worker: WorkerProcess, deployment: str) -> dict[str, UUID]:
    """The module's three flow runs, started together so that the worker (limit 3) runs them side by side."""
    from prefect.deployments import run_deployment

    started = {
        "ok": {"parameters": {"mode": "ok"}},
        "sleep": {"parameters": {"mode": "sleep"}},
        "crash": {"job_variables": {"command": CRASHING_COMMAND}},
    }
    return {name: run_deployment(deployment, timeout=0, **options).id for name, options in started.items()}


def test_a_flow_run_completes_on_its_rayjob_with_the_ray_log_in_its_log(
    worker: WorkerProcess, runs: dict[str, UUID], kube: Any
) -> None:
    flow_run_id = runs["ok"]
    state = final_state(flow_run_id, worker)
    assert state.is_completed(), (state, run_log(flow_run_id))
    log = wait_for(
        "the Ray job's log in the flow run's log",
        lambda: log_with(flow_run_id, "[ray] WORKER-E2E total 14"),
        60,
        worker,
        flow_run_id,
    )
    # The total comes from four Ray tasks. Their own prints are not asserted: Ray forwards a worker's output to
    # the driver asynchronously and drops what is still in flight when the driver exits (seen under load).
    assert "\x1b[" not in log  # Ray's colour codes are stripped
    assert "WORKER-E2E flow log, 1 Ray node(s)" in log  # the flow's own logger
    [rayjob] = rayjobs_of(kube, flow_run_id)
    labels, spec = rayjob["metadata"]["labels"], rayjob["spec"]
    assert labels["kuberay-provider.io/owner"] == "flow-run" and labels["kuberay-provider.io/task"] == "on-ray"
    assert (
        spec["entrypoint"] == "prefect flow-run execute"
        and f"PREFECT__FLOW_RUN_ID: {flow_run_id}" in spec["runtimeEnvYAML"]
    )
    assert spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["image"] == IMAGE
    assert (
        spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] == 60
    )  # the pool's default cleanup
    assert f"Created RayJob default/{rayjob['metadata']['name']}" in log


def test_cancelling_a_running_flow_run_deletes_its_rayjob(
    worker: WorkerProcess, runs: dict[str, UUID], kube: Any
) -> None:
    from prefect.states import Cancelling

    flow_run_id = runs["sleep"]
    wait_for(
        "the flow sleeping on Ray", lambda: log_with(flow_run_id, "[ray] WORKER-E2E sleeping"), 240, worker, flow_run_id
    )
    [rayjob] = rayjobs_of(kube, flow_run_id)
    api(lambda client: client.set_flow_run_state(flow_run_id, Cancelling()))  # what the UI's Cancel does
    # ray.init() makes the stopped flow process report a crash; the worker, which saw the cancellation, says Cancelled.
    wait_for("the flow run's Cancelled state", lambda: state_of(flow_run_id).is_cancelled(), 180, worker, flow_run_id)
    wait_for("the RayJob's deletion", lambda: not rayjobs_of(kube, flow_run_id), 120, worker, flow_run_id)
    deleted = f"RayJob default/{rayjob['metadata']['name']}: the flow run was cancelled"
    wait_for("the worker's word on the deletion", lambda: log_with(flow_run_id, deleted), 30, worker, flow_run_id)


def test_a_rayjob_that_fails_before_the_flow_reports_crashes_the_run(
    worker: WorkerProcess, runs: dict[str, UUID]
) -> None:
    flow_run_id = runs["crash"]
    state = final_state(flow_run_id, worker)
    assert state.is_crashed(), state
    assert (
        "ended before the flow run reported a final state" in state.message
        and "WORKER-E2E no Prefect here" in state.message
    )
    wait_for(
        "the Ray job's log", lambda: log_with(flow_run_id, "[ray] WORKER-E2E no Prefect here"), 30, worker, flow_run_id
    )


def test_submitting_a_flow_run_again_never_creates_a_second_rayjob(
    prefect_api: None, least_privilege_kubeconfig: Path, kube: Any
) -> None:
    """The worker's own steps, in process: a second submission of a flow run whose RayJob still runs
    re-attaches to it; one whose RayJob ended replaces it. Never two RayJobs for one flow run."""
    from prefect.client.schemas.objects import Flow, FlowRun
    from prefect_kubernetes.credentials import KubernetesClusterConfig

    from kuberay_provider.core.lifecycle import RayJobLifecycle
    from kuberay_provider.core.resources import RAYJOB
    from kuberay_provider.prefect.worker import KubeRayWorker, launch_or_reattach
    from kuberay_provider.prefect.worker_config import KubeRayWorkerJobConfiguration

    flow_run = FlowRun(id=uuid4(), flow_id=uuid4(), name="submitted-twice")
    values = {
        "image": IMAGE,
        "command": 'python -c "import time; time.sleep(5)"',
        "cluster_config": KubernetesClusterConfig.from_file(least_privilege_kubeconfig).model_dump(),
    }
    configuration = asyncio.run(
        KubeRayWorkerJobConfiguration.from_template_and_values(KubeRayWorker.get_default_base_job_template(), values)
    )
    configuration.prepare_for_flow_run(flow_run, flow=Flow(id=flow_run.flow_id, name="resubmitted"))
    block = configuration.rayjob_block()
    request = configuration.rayjob_request(block)
    said: list[str] = []

    async def submit() -> None:
        async with block.async_runner(said.append, said.append) as runner:
            await launch_or_reattach(runner, request, said.append)

    asyncio.run(submit())
    first = kube.find(RAYJOB, "default", request.rayjob_name)
    asyncio.run(submit())  # while the first still runs
    assert any("Re-attached to RayJob" in line for line in said), said
    assert kube.find(RAYJOB, "default", request.rayjob_name)["metadata"]["uid"] == first["metadata"]["uid"]
    RayJobLifecycle(kube).wait("default", request.rayjob_name, until=lambda state: state.is_terminal, timeout=180)
    asyncio.run(submit())  # after it ended: replaced, still one
    assert any("of an earlier submission of this flow run" in line for line in said), said
    assert [job["metadata"]["uid"] for job in rayjobs_of(kube, flow_run.id)] != [first["metadata"]["uid"]]
    assert len(rayjobs_of(kube, flow_run.id)) == 1
    block.delete_now("default", request.rayjob_name)
