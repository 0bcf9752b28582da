"""Every Prefect task is called the natural way from sync and from async flows (prefect/dispatch.py), with
real Prefect against the local control plane: a sync flow calls the RayJob tasks and gets values (they
were async-only: a coroutine came back), an async flow awaits the RayCluster tasks and its event loop
keeps running meanwhile (they were sync-only: awaiting a dict failed, and the wait blocked the loop)."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.cluster_under_test import JOBS_NAMESPACE, RAY_IMAGE

pytestmark = pytest.mark.ray

IMAGE = RAY_IMAGE


@pytest.fixture(scope="module")
def credentials(least_privilege_kubeconfig: Path) -> Any:
    from prefect_kubernetes.credentials import KubernetesClusterConfig, KubernetesCredentials

    return KubernetesCredentials(cluster_config=KubernetesClusterConfig.from_file(least_privilege_kubeconfig))


def test_a_sync_flow_calls_the_rayjob_tasks_and_gets_their_values(
    prefect_api: None, credentials: Any, kube: Any
) -> None:
    from prefect import flow

    from kuberay_provider.core.resources import RAYJOB
    from kuberay_provider.core.spec import simple_cluster_spec
    from kuberay_provider.prefect import RayJob, create_rayjob, delete_rayjob, wait_for_rayjob

    block = RayJob(
        namespace=JOBS_NAMESPACE,
        entrypoint="python -c \"print('SYNC-FLOW-MARKER', flush=True)\"",
        ray_cluster_spec=simple_cluster_spec(image=IMAGE, ray_version="2.60.0", head_memory="1Gi"),
        spec_params={"shutdown_after_job_finishes": True, "ttl_seconds_after_finished": 60},
        credentials=credentials,
        timeout=300,
    )

    @flow(name="sync-flow-rayjob-tasks")
    def nightly() -> tuple[dict[str, Any], dict[str, Any], bool]:
        created = create_rayjob(block)
        outcome = wait_for_rayjob(block, created)
        return created, outcome, delete_rayjob(block, created)

    created, outcome, deleted = nightly()
    assert isinstance(created, dict) and created["name"], created
    assert outcome["succeeded"] is True and outcome["job_status"] == "SUCCEEDED", outcome
    assert deleted is True and kube.find(RAYJOB, created["namespace"], created["name"]) is None


def test_an_async_flow_awaits_the_raycluster_tasks_and_its_loop_keeps_running(
    prefect_api: None, credentials: Any, kube: Any
) -> None:
    from prefect import flow

    from kuberay_provider.core.resources import RAYCLUSTER
    from kuberay_provider.core.spec import simple_cluster_spec
    from kuberay_provider.prefect import RayCluster, create_raycluster, delete_raycluster

    cluster = RayCluster(
        namespace=JOBS_NAMESPACE,
        spec=simple_cluster_spec(image=IMAGE, ray_version="2.60.0", head_memory="1Gi"),
        credentials=credentials,
    )
    ticks: list[float] = []

    async def heartbeat() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    @flow(name="async-flow-raycluster-tasks")
    async def with_cluster() -> tuple[dict[str, Any], float, float, bool]:
        beating = asyncio.create_task(heartbeat())
        started = time.monotonic()
        created = await create_raycluster(cluster)
        ready = time.monotonic()
        beating.cancel()
        return created, started, ready, await delete_raycluster(cluster, created["name"])

    created, started, ready, deleted = asyncio.run(with_cluster())
    assert created["state"] == "ready" and created["head_pod_ready"], created
    during = [tick for tick in ticks if started <= tick <= ready]
    gaps = [later - earlier for earlier, later in itertools.pairwise(during)]
    # The flow's loop ran its other coroutine all along the wait for the cluster (a blocked loop: no tick
    # between the call and its value; a Prefect task run takes far longer than one 10 ms tick).
    assert len(during) >= 2 and max(gaps) < 1, (ready - started, gaps)
    assert deleted is True and kube.find(RAYCLUSTER, created["namespace"], created["name"]) is None


def test_the_rayjob_block_is_a_job_block_triggered_from_sync_and_async_flows(
    prefect_api: None, credentials: Any, kube: Any
) -> None:
    """Prefect's JobBlock interface, as prefect-kubernetes' KubernetesJob offers it: trigger() starts the
    RayJob, wait_for_completion() follows it, fetch_result() gives the outcome; a failed job raises."""
    from prefect import flow
    from prefect.blocks.abstract import JobBlock

    from kuberay_provider.core.job_outcome import RayJobFailed
    from kuberay_provider.core.spec import simple_cluster_spec
    from kuberay_provider.prefect import RayJob

    def block(entrypoint: str) -> RayJob:
        return RayJob(
            namespace=JOBS_NAMESPACE,
            entrypoint=entrypoint,
            ray_cluster_spec=simple_cluster_spec(image=IMAGE, ray_version="2.60.0", head_memory="1Gi"),
            spec_params={"shutdown_after_job_finishes": True, "ttl_seconds_after_finished": 60},
            credentials=credentials,
            timeout=300,
        )

    succeeding, failing = block("python -c \"print('JOB-BLOCK-OK')\""), block('python -c "raise SystemExit(3)"')
    assert isinstance(succeeding, JobBlock)

    @flow(name="job-block-sync")
    def sync_flow() -> dict[str, Any]:
        run = succeeding.trigger()
        run.wait_for_completion()
        return run.fetch_result()

    @flow(name="job-block-async")
    async def async_flow() -> str:
        run = await failing.trigger()
        with pytest.raises(RayJobFailed):  # the wait says the job failed
            await run.wait_for_completion()
        try:
            await run.fetch_result()
        except RayJobFailed as failed:
            return failed.outcome.job_status
        return "no failure"

    outcome = sync_flow()
    assert outcome["succeeded"] is True and outcome["job_status"] == "SUCCEEDED", outcome
    assert asyncio.run(async_flow()) == "FAILED"
