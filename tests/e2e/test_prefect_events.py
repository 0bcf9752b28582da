"""Prefect events for RayJob state changes end to end: real flows (test harness) run RayJobs on the local
control plane and the session's real Ray; the events are read back through Prefect's own API
(``PrefectClient.read_events``, the ``/events/filter`` endpoint), as an Automation would see them."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

# deployment, worker, worker_env: test_prefect_worker's fixtures (the kuberay pool and a worker process).
from tests.e2e.test_prefect_worker import deployment, final_state, rayjobs_of, worker, worker_env  # noqa: F401  # fixtures, used by name
from tests.support.cluster_under_test import JOBS_NAMESPACE, RAY_IMAGE

pytestmark = pytest.mark.ray

IMAGE = RAY_IMAGE


@pytest.fixture(scope="module")
def credentials(least_privilege_kubeconfig: Path) -> Any:
    from prefect_kubernetes.credentials import KubernetesClusterConfig, KubernetesCredentials

    return KubernetesCredentials(cluster_config=KubernetesClusterConfig.from_file(least_privilege_kubeconfig))


def job_block(credentials: Any, entrypoint: str, **fields: Any) -> Any:
    from kuberay_provider.core.spec import simple_cluster_spec
    from kuberay_provider.prefect import RayJob

    return RayJob(
        namespace=JOBS_NAMESPACE,
        entrypoint=entrypoint,
        ray_cluster_spec=simple_cluster_spec(image=IMAGE, ray_version="2.60.0", head_memory="1Gi"),
        credentials=credentials,
        timeout=300,
        **fields,
    )


def rayjob_events(namespace: str, name: str, until: str, timeout: float = 60.0) -> list[Any]:
    """The RayJob's events as Prefect stored them, oldest first, once ``until`` is among them (the server
    persists events in batches)."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
    from prefect.events.worker import EventsWorker

    async def read() -> list[Any]:
        async with get_client() as client:
            page = await client.read_events(
                EventFilter(
                    event=EventNameFilter(prefix=["kuberay.rayjob."]),
                    resource=EventResourceFilter(id=[f"kuberay.rayjob.{namespace}.{name}"]),
                ),
                limit=50,
            )
        return sorted(page.events, key=lambda event: event.occurred)

    EventsWorker.drain_all(timeout=30, at_exit=False)  # what this process emitted has left it
    deadline = time.monotonic() + timeout
    while True:
        events = asyncio.run(read())
        if any(event.event == until for event in events) or time.monotonic() > deadline:
            return events
        time.sleep(1.0)


def related_ids(event: Any, role: str) -> set[str]:
    return {resource.id for resource in event.related if resource.role == role}


def test_a_succeeding_rayjob_emits_created_running_succeeded_once(prefect_api: None, credentials: Any) -> None:
    from prefect import flow

    from kuberay_provider.prefect import create_rayjob, delete_rayjob, wait_for_rayjob

    block = job_block(credentials, "python -c \"print('EVENTS-E2E ok', flush=True)\"")

    @flow(name="rayjob-events-succeeding")
    def nightly() -> tuple[dict[str, str], dict[str, Any]]:
        created = create_rayjob(block)
        return created, wait_for_rayjob(block, created)

    @flow(name="rayjob-events-reattached-wait")
    def wait_again(created: dict[str, str]) -> dict[str, Any]:
        return wait_for_rayjob(block, created)

    @flow(name="rayjob-events-cleanup")
    def cleanup(created: dict[str, str]) -> bool:
        return delete_rayjob(block, created)

    state = nightly(return_state=True)
    created, outcome = state.result()
    assert outcome["succeeded"], outcome
    try:
        assert wait_again(created)["job_id"] == outcome["job_id"]  # a re-attached wait: no second "created"
        events = rayjob_events(created["namespace"], created["name"], until="kuberay.rayjob.succeeded")
    finally:
        cleanup(created)
    names = [event.event for event in events]
    # Each transition once: the re-attached wait sent running/succeeded again under the same ids.
    assert names == ["kuberay.rayjob.created", "kuberay.rayjob.running", "kuberay.rayjob.succeeded"], names
    succeeded = events[-1]
    assert succeeded.resource.id == f"kuberay.rayjob.{created['namespace']}.{created['name']}"
    assert succeeded.resource["kuberay.job-id"] == outcome["job_id"]
    assert succeeded.payload["jobStatus"] == "SUCCEEDED" and succeeded.payload["jobDeploymentStatus"] == "Complete"
    assert "EVENTS-E2E" not in str(succeeded.model_dump())  # never the job's log
    # Emitted inside the flow's tasks: Prefect named the flow run and the task run itself.
    flow_run_id = str(state.state_details.flow_run_id)
    assert all(f"prefect.flow-run.{flow_run_id}" in related_ids(event, "flow-run") for event in events), events
    assert all(related_ids(event, "task-run") for event in events)


def test_a_failing_rayjob_emits_failed_with_kuberays_reason(prefect_api: None, credentials: Any) -> None:
    from kuberay_provider.core.job_runner import RayJobFailed
    from kuberay_provider.prefect import run_rayjob

    block = job_block(credentials, 'python -c "import sys; sys.exit(3)"', delete_on_failure=True)
    with pytest.raises(RayJobFailed) as failed:
        run_rayjob(block)
    outcome = failed.value.outcome
    events = rayjob_events(outcome.namespace, outcome.rayjob_name, until="kuberay.rayjob.failed")
    names = [event.event for event in events]
    assert names == ["kuberay.rayjob.created", "kuberay.rayjob.running", "kuberay.rayjob.failed"], names
    assert events[-1].payload["reason"] == "AppFailed" and events[-1].payload["jobStatus"] == "FAILED"


@pytest.mark.local_only("a flow that runs as the Ray driver with this machine's Python and Prefect")
def test_the_kuberay_worker_emits_the_events_of_its_flow_runs_rayjob(
    worker: Any,  # noqa: F811  # the imported fixture, by name
    deployment: str,  # noqa: F811  # the imported fixture, by name
    kube: Any,
) -> None:
    from prefect.deployments import run_deployment

    flow_run_id = run_deployment(deployment, timeout=0, parameters={"mode": "ok"}).id
    state = final_state(flow_run_id, worker)
    assert state.is_completed(), state
    [rayjob] = rayjobs_of(kube, flow_run_id)
    events = rayjob_events(JOBS_NAMESPACE, rayjob["metadata"]["name"], until="kuberay.rayjob.succeeded")
    names = [event.event for event in events]
    assert names == ["kuberay.rayjob.created", "kuberay.rayjob.running", "kuberay.rayjob.succeeded"], names
    # No run context in the worker's process: the worker names the flow run itself.
    assert all(f"prefect.flow-run.{flow_run_id}" in related_ids(event, "flow-run") for event in events), events
