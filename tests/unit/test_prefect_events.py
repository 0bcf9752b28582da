"""Prefect events for RayJob state changes, with a fake at the boundary (``emit_event``, the watch): which
events a RayJob's states bring, each once, what they carry, and that a wait's watch reports through them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kuberay_provider.core.kube.watch import WatchEvent
from kuberay_provider.core.schedulers import KUEUE_QUEUE_LABEL
from kuberay_provider.prefect.events import (
    ADMITTED,
    CREATED,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    EventTap,
    RayJobEvents,
    flow_run_resource,
)

SECRET = "hunter2-never-in-an-event"


def rayjob(
    deployment: str = "", job: str = "", *, queue: str = "", suspend: bool = False, job_id: str = "", **status: str
) -> dict[str, Any]:
    labels = {KUEUE_QUEUE_LABEL: queue} if queue else {}
    return {
        "metadata": {"name": "scoring", "namespace": "team", "uid": "0f6c6a52-uid", "labels": labels},
        "spec": {"suspend": suspend, "runtimeEnvYAML": f"env_vars:\n  TOKEN: {SECRET}"},
        "status": {"jobDeploymentStatus": deployment, "jobStatus": job, "jobId": job_id, **status},
    }


class Recorder:
    """``emit_event`` as the emitter calls it."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **event: Any) -> None:
        self.calls.append(event)

    @property
    def names(self) -> list[str]:
        return [call["event"] for call in self.calls]


def test_a_kueue_rayjob_brings_each_event_once_in_order() -> None:
    recorder = Recorder()
    events = RayJobEvents(emit=recorder)
    events.created(rayjob(queue="team-queue", suspend=True))
    for state in [
        rayjob(queue="team-queue", suspend=True),
        rayjob("Suspended", queue="team-queue", suspend=True),  # repeated while queued: no second event
        rayjob("Initializing", queue="team-queue", job_id="job-1"),
        rayjob("Running", "PENDING", queue="team-queue", job_id="job-1"),
        rayjob("Running", "RUNNING", queue="team-queue", job_id="job-1"),
        rayjob("Running", "RUNNING", queue="team-queue", job_id="job-1"),
        rayjob("Complete", "SUCCEEDED", queue="team-queue", job_id="job-1"),
    ]:
        events.observe(state)
    assert recorder.names == [CREATED, QUEUED, ADMITTED, RUNNING, SUCCEEDED]
    done = recorder.calls[-1]
    assert done["resource"] == {
        "prefect.resource.id": "kuberay.rayjob.team.scoring",
        "prefect.resource.name": "scoring",
        "kuberay.namespace": "team",
        "kuberay.job-id": "job-1",
    }
    assert done["payload"] == {
        "jobStatus": "SUCCEEDED",
        "jobDeploymentStatus": "Complete",
        "reason": "",
        "message": "",
        "queueName": "team-queue",
    }
    assert done["related"] == [
        {
            "prefect.resource.id": "kueue.localqueue.team.team-queue",
            "prefect.resource.role": "kueue-queue",
            "prefect.resource.name": "team-queue",
        }
    ]
    assert all(SECRET not in repr(call) for call in recorder.calls)  # the spec (runtime env...) never goes out


def test_a_failed_job_and_a_job_too_quick_for_the_watch() -> None:
    recorder = Recorder()
    RayJobEvents(emit=recorder).observe(
        rayjob("Failed", "FAILED", job_id="job-2", reason="AppFailed", message="exit code 1")
    )
    assert recorder.names == [RUNNING, FAILED]  # it ran before it failed, even if no watch saw it run
    assert recorder.calls[-1]["payload"]["reason"] == "AppFailed"
    recorder = Recorder()
    RayJobEvents(emit=recorder).observe(rayjob("ValidationFailed", message="bad spec"))
    assert recorder.names == [FAILED]  # never ran: no running
    recorder = Recorder()
    RayJobEvents(emit=recorder).observe(rayjob("Complete", "SUCCEEDED", job_id="job-3"))
    assert recorder.names == [RUNNING, SUCCEEDED]


def test_a_retried_ray_job_runs_again_and_the_ids_let_prefect_drop_a_repeat() -> None:
    first, second = Recorder(), Recorder()
    events = RayJobEvents(emit=first)
    events.observe(rayjob("Running", "RUNNING", job_id="job-1"))
    events.observe(rayjob("Retrying", "FAILED", job_id="job-1"))
    events.observe(rayjob("Running", "RUNNING", job_id="job-2"))  # backoffLimit: a new Ray job
    assert first.names == [RUNNING, RUNNING]
    assert len({call["id"] for call in first.calls}) == 2
    # Another call (a re-attached wait) emits the same event with the same id: Prefect keeps one.
    RayJobEvents(emit=second).observe(rayjob("Running", "RUNNING", job_id="job-2"))
    assert second.calls[0]["id"] == first.calls[-1]["id"]


def test_the_worker_names_its_flow_run_and_an_emitter_failure_is_only_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class FlowRun:
        id, name = "3e1f", "crimson-panda"

    recorder = Recorder()
    RayJobEvents(related=[flow_run_resource(FlowRun())], emit=recorder).observe(rayjob("Running", "RUNNING"))
    assert recorder.calls[0]["related"] == [
        {
            "prefect.resource.id": "prefect.flow-run.3e1f",
            "prefect.resource.role": "flow-run",
            "prefect.resource.name": "crimson-panda",
        }
    ]

    def broken(**event: Any) -> None:
        raise RuntimeError("events API down")

    RayJobEvents(emit=broken).observe(rayjob("Running", "RUNNING"))  # no raise: the wait goes on
    assert "could not emit kuberay.rayjob.running" in caplog.text


class FakeWatcher:
    """A watch that delivers the given objects, and records that it was closed."""

    def __init__(self, objects: list[dict[str, Any]]) -> None:
        self.objects, self.closed = objects, False

    async def events(self) -> AsyncIterator[WatchEvent]:
        try:
            for obj in self.objects:
                yield WatchEvent("MODIFIED", obj)
        finally:
            self.closed = True

    def watch(self, kind: Any, namespace: str, *, name: str | None = None, timeout_seconds: float | None = None) -> Any:
        return self.events()


def test_the_tap_reports_what_the_wait_watches_and_closes_the_watch_it_wraps() -> None:
    from kuberay_provider.core.async_lifecycle import wait_for_rayjob

    recorder = Recorder()
    inner = FakeWatcher(
        [rayjob("Initializing"), rayjob("Running", "RUNNING", job_id="j"), rayjob("Complete", "SUCCEEDED", job_id="j")]
    )
    tap = EventTap(inner, RayJobEvents(emit=recorder))  # type: ignore[arg-type]  # a fake watcher
    state = asyncio.run(wait_for_rayjob(tap, "team", "scoring"))
    assert state.succeeded_job and recorder.names == [RUNNING, SUCCEEDED] and inner.closed
    assert tap.objects == inner.objects  # anything else is the wrapped watcher's
