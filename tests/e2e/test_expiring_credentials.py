"""Credentials that expire mid-wait (#18 item 5), on the session's local plane and real Ray: the kubeconfig's
exec plugin hands out tokens living 2 s, as EKS and GKE hand out ones living 15-60 min. A RayJob's wait, its
log tail and the final job info through the API server's service proxy all outlive several tokens."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kuberay_provider.core.kube.sync_client import RayObjectsClient
from kuberay_provider.core.lifecycle import RayJobLifecycle
from kuberay_provider.core.spec import rayjob, simple_cluster_spec
from kuberay_provider.core.status import JobDeploymentStatus, JobStatus
from tests.support.expiring_tokens import expiring_kubeconfig, sync_api_client

TOKEN_SECONDS = 2
pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]


@pytest.fixture
def lifecycle(local_plane, namespace: str, tmp_path: Path) -> Iterator[RayJobLifecycle]:
    with sync_api_client(expiring_kubeconfig(local_plane, namespace, tmp_path, TOKEN_SECONDS)) as api_client:
        yield RayJobLifecycle(RayObjectsClient(api_client))


def test_a_rayjob_outlives_the_tokens_it_started_with(lifecycle: RayJobLifecycle, namespace: str) -> None:
    import ray

    ticks = "import time\nfor i in range(6): print('tick', i, flush=True); time.sleep(1)"
    manifest = rayjob(
        "outlives-tokens",
        namespace,
        entrypoint=f'python -c "{ticks}"',
        shutdown_after_job_finishes=False,
        ray_cluster_spec=simple_cluster_spec(image=f"rayproject/ray:{ray.__version__}", ray_version=ray.__version__),
    )
    lifecycle.create_or_attach(manifest)
    running = lifecycle.wait(
        namespace,
        "outlives-tokens",
        timeout=120,
        until=lambda s: s.is_terminal or (s.deployment_status == JobDeploymentStatus.RUNNING and bool(s.job_id)),
    )
    jobs = lifecycle.rayjob_jobs_client(running)  # its endpoint is built now, with the token valid now
    token_then = lifecycle.kube.api_client.configuration.api_key["BearerToken"]
    while jobs.find(running.job_id) is None:  # the submitter submits a few seconds after Running
        time.sleep(0.5)
    time.sleep(TOKEN_SECONDS + 1)  # the token of the endpoint's making is dead now: the plane answers it 401

    async def tail() -> str:
        return "".join([chunk async for chunk in jobs.tail(running.job_id)])

    assert "tick 5" in asyncio.run(asyncio.wait_for(tail(), timeout=120))
    time.sleep(TOKEN_SECONDS + 1)
    ended = jobs.wait_until_ended(running.job_id, timeout=120)
    assert ended is not None and ended.status is JobStatus.SUCCEEDED
    assert jobs.info(running.job_id).status is JobStatus.SUCCEEDED
    final = lifecycle.wait(namespace, "outlives-tokens", timeout=120)
    assert final.succeeded_job, final.failure_summary()
    assert lifecycle.kube.api_client.configuration.api_key["BearerToken"] != token_then  # the plugin ran again
    lifecycle.delete_and_wait(namespace, "outlives-tokens", timeout=120)
