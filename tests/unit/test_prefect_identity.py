"""Which RayJob a Prefect task call owns (``kuberay_provider.prefect.identity``): real Prefect flows on a
test API, the real ``create_rayjob``, and a fake Kubernetes API server as the only fake.

Prefect 3 gives every task run a random dynamic key and makes new task runs in each flow-run attempt; the
RayJob must still be the same one in a retried flow run, and never another call's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.fake_apiserver import FakeApiServer

TOKEN = "unit-identity-token-5c1f0e9a7d"


@pytest.fixture(scope="module")
def prefect_api() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def apiserver() -> Iterator[FakeApiServer]:
    with FakeApiServer(token=TOKEN) as server:
        yield server


@pytest.fixture(autouse=True)
def empty_apiserver(apiserver: FakeApiServer) -> None:
    apiserver.reset()


def kubeconfig(server: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": server}}],
        "users": [{"name": "me", "user": {"token": TOKEN}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "me"}}],
    }


def block(apiserver: FakeApiServer, entrypoint: str = "python job.py", **fields: Any) -> Any:
    from prefect_kubernetes.credentials import KubernetesClusterConfig, KubernetesCredentials

    from kuberay_provider.core.spec import simple_cluster_spec
    from kuberay_provider.prefect import RayJob

    credentials = KubernetesCredentials(
        cluster_config=KubernetesClusterConfig(config=kubeconfig(apiserver.url), context_name="fake")
    )
    return RayJob(
        entrypoint=entrypoint,
        ray_cluster_spec=simple_cluster_spec(image="rayproject/ray:2.60.0"),
        credentials=credentials,
        validate_schema=False,
        **fields,
    )


def rayjobs(apiserver: FakeApiServer) -> dict[str, dict[str, Any]]:
    return {
        obj["metadata"]["name"]: obj
        for obj in apiserver.call(lambda store: store.listing("rayjobs", "default", lambda _: True))
    }


def attempt() -> int:
    from prefect.context import FlowRunContext

    return FlowRunContext.get().flow_run.run_count


def test_a_retried_flow_run_re_attaches_and_two_calls_of_one_task_never_share(
    prefect_api: None, apiserver: FakeApiServer
) -> None:
    """Attempt 1 creates three RayJobs and fails after them; attempt 2 (new task runs, new dynamic keys)
    finds the same three. Two calls of the same task with the same job get a RayJob each."""
    from prefect import flow

    from kuberay_provider.prefect import create_rayjob

    job, other = block(apiserver), block(apiserver, "python other.py")
    names: list[tuple[str, str, str]] = []

    @flow(name="unit-identity-retry", retries=1, retry_delay_seconds=0)
    async def nightly() -> None:
        first = await create_rayjob(job)
        second = await create_rayjob(job)
        third = await create_rayjob(other)
        names.append((first["name"], second["name"], third["name"]))
        if attempt() == 1:
            raise RuntimeError("the flow run failed after creating its RayJobs")

    state = asyncio.run(nightly(return_state=True))
    assert state.is_completed(), state
    assert len(names) == 2 and names[0] == names[1], names
    assert len(set(names[0])) == 3, names
    found = rayjobs(apiserver)
    assert sorted(found) == sorted(names[0])  # the retry created nothing more
    assert {obj["metadata"]["annotations"]["kuberay-provider.io/try-number"] for obj in found.values()} == {"1001"}
    assert {obj["metadata"]["labels"]["kuberay-provider.io/map-index"] for obj in found.values()} == {"0", "1"}


def test_mapped_calls_keep_their_own_rayjob_whatever_order_they_start_in(
    prefect_api: None, apiserver: FakeApiServer
) -> None:
    """``.map`` starts its tasks in no fixed order; each job must find its own RayJob in the retry."""
    from prefect import flow

    from kuberay_provider.prefect import create_rayjob

    jobs = [block(apiserver, f"python day.py --day {day}") for day in range(6)]
    by_attempt: list[dict[str, str]] = []

    @flow(name="unit-identity-map", retries=1, retry_delay_seconds=0)
    def daily() -> None:
        created = create_rayjob.map(jobs).result()
        by_attempt.append({job.entrypoint: made["name"] for job, made in zip(jobs, created, strict=False)})
        if attempt() == 1:
            raise RuntimeError("retry the whole run")

    assert daily(return_state=True).is_completed()
    assert by_attempt[0] == by_attempt[1] and len(set(by_attempt[0].values())) == 6, by_attempt
    for entrypoint, name in by_attempt[0].items():
        assert rayjobs(apiserver)[name]["spec"]["entrypoint"] == entrypoint


def test_a_task_retry_keeps_the_call_and_each_call_in_it(prefect_api: None, apiserver: FakeApiServer) -> None:
    """A task retry is the same task run (run_count + 1): the same RayJobs, the try number one higher."""
    from prefect import flow, task

    from kuberay_provider.prefect import RayJob, create_rayjob

    tries: list[tuple[str, str]] = []

    @task(retries=1, retry_delay_seconds=0)
    async def two_jobs(rayjob: RayJob) -> None:
        from prefect.context import TaskRunContext

        first, second = await create_rayjob.aio.fn(rayjob), await create_rayjob.aio.fn(rayjob)  # in this task run
        tries.append((first["name"], second["name"]))
        if TaskRunContext.get().task_run.run_count == 1:
            raise RuntimeError("the worker was lost")

    @flow(name="unit-identity-task-retry")
    async def run() -> None:
        await two_jobs(block(apiserver))

    asyncio.run(run())
    assert len(tries) == 2 and tries[0] == tries[1] and len(set(tries[0])) == 2, tries
    assert sorted(rayjobs(apiserver)) == sorted(tries[0])


def test_try_numbers_grow_with_task_and_flow_retries_under_one_identity(prefect_api: None) -> None:
    from prefect import flow, task

    from kuberay_provider.prefect.identity import TaskCall, current_call

    calls: list[TaskCall] = []

    @task(retries=1, retry_delay_seconds=0)
    def probe() -> None:
        from prefect.context import TaskRunContext

        calls.append(current_call("job"))
        if TaskRunContext.get().task_run.run_count == 1:
            raise RuntimeError("retry the task")

    @flow(name="unit-identity-tries", retries=1, retry_delay_seconds=0)
    def twice() -> None:
        probe()
        if attempt() == 1:
            raise RuntimeError("retry the flow")

    twice()
    assert [call.try_number for call in calls] == [1001, 1002, 2001, 2002]
    assert len({call.identity for call in calls}) == 1


def test_a_flow_retry_replaces_a_rayjob_that_failed(prefect_api: None, apiserver: FakeApiServer) -> None:
    """A new flow-run attempt starts its task runs at run_count 1 again; its try number must still be
    later than the failed RayJob's, or the retry would re-attach to the failure."""
    from prefect import flow

    from kuberay_provider.prefect import create_rayjob

    job = block(apiserver)

    def failed(obj: dict[str, Any]) -> dict[str, Any]:
        return {**obj, "status": {"jobDeploymentStatus": "Failed", "jobStatus": "FAILED", "reason": "AppFailed"}}

    @flow(name="unit-identity-replace", retries=1, retry_delay_seconds=0)
    async def nightly() -> str:
        created = await create_rayjob(job)
        if attempt() == 1:
            apiserver.call(lambda store: store.patch("rayjobs", "default", created["name"], failed))
            raise RuntimeError("the Ray job failed")
        return created["name"]

    name = asyncio.run(nightly())
    replaced = rayjobs(apiserver)[name]
    assert replaced["metadata"]["annotations"]["kuberay-provider.io/try-number"] == "2001"
    assert "status" not in replaced  # a new RayJob, not the failed one


def test_the_identity_ignores_how_to_reach_and_wait_but_not_the_job() -> None:
    from kuberay_provider.prefect import RayCluster

    server = FakeApiServer(token=TOKEN)  # never started: only its URL goes into the kubeconfig
    base = block(server)
    assert (
        base.job_fingerprint() == block(server, timeout=5, stream_logs=False, delete_on_failure=True).job_fingerprint()
    )
    assert base.job_fingerprint() == base.model_copy(update={"credentials": type(base.credentials)()}).job_fingerprint()
    assert base.job_fingerprint() != block(server, "python other.py").job_fingerprint()
    assert base.job_fingerprint() != block(server, labels={"team": "a"}).job_fingerprint()
    from kuberay_provider.prefect.identity import block_fingerprint

    cluster = RayCluster(spec={"headGroupSpec": {}}, ready_timeout=5)
    assert block_fingerprint(cluster, RayCluster.RUN_SETTINGS) == block_fingerprint(
        cluster.model_copy(update={"ready_timeout": 900}), RayCluster.RUN_SETTINGS
    )


def test_blocks_never_show_their_kubeconfig_in_a_repr_or_a_prefect_error() -> None:
    """A block in an f-string, a log line or Prefect's own "Error binding parameters" message."""
    from prefect.exceptions import ParameterBindError
    from prefect.utilities.callables import get_call_parameters

    from kuberay_provider.prefect import RayCluster, RayService, create_rayjob

    server = FakeApiServer(token=TOKEN)
    job = block(server)
    credentials = job.credentials
    for shown in (job, RayCluster(spec={}, credentials=credentials), RayService(name="s", credentials=credentials)):
        assert TOKEN not in repr(shown) and TOKEN not in str(shown) and TOKEN not in f"{shown!r}"
    assert "python job.py" in repr(job)  # the rest of the block still shows
    with pytest.raises(ParameterBindError) as bind_error:
        get_call_parameters(create_rayjob.fn, (job, "unexpected"), {})
    assert "RayJob(" in str(bind_error.value) and TOKEN not in str(bind_error.value)
