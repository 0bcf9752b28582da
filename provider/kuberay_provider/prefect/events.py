"""Prefect events for the RayJobs the provider follows, so Prefect Automations can react to them.

* ``kuberay.rayjob.created``: this call created the RayJob (never when it re-attached to one);
* ``kuberay.rayjob.queued``: Kueue holds it, suspended on its LocalQueue awaiting admission;
* ``kuberay.rayjob.admitted``: Kueue admitted it (unsuspended), before it ended;
* ``kuberay.rayjob.running``: the Ray job runs (``jobStatus`` RUNNING), or ended having run;
* ``kuberay.rayjob.succeeded``: Complete, its Ray job SUCCEEDED;
* ``kuberay.rayjob.failed``: any other end (Failed, ValidationFailed, a Ray job not SUCCEEDED).

The resource is ``kuberay.rayjob.<namespace>.<name>`` (name, namespace, and the Ray job's id once known);
the payload holds KubeRay's statuses, reason and message: never a secret, never the job's log. Emitted in a
flow or task run, Prefect adds the run as related resources itself; the worker names its flow run.

Each event goes out once per RayJob per call, on the first state that implies it: a job too quick for the
watch to see it running gets ``running`` just before ``succeeded``. Its id derives from the RayJob's uid
(and the Ray job's id), so when another call emits it again (a retried task, a re-attached wait) Prefect
stores it, and triggers on it, once.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any

from prefect.events import emit_event

from kuberay_provider.core.resources import RAYJOB, RayKind
from kuberay_provider.core.status import JobStatus, RayJobState

if TYPE_CHECKING:
    from kuberay_provider.core.async_lifecycle import ObjectWatcher
    from kuberay_provider.core.async_runner import AsyncRayJobRunner
    from kuberay_provider.core.kube.watch import WatchEvent

log = logging.getLogger(__name__)

PREFIX = "kuberay.rayjob"
CREATED, QUEUED, ADMITTED = f"{PREFIX}.created", f"{PREFIX}.queued", f"{PREFIX}.admitted"
RUNNING, SUCCEEDED, FAILED = f"{PREFIX}.running", f"{PREFIX}.succeeded", f"{PREFIX}.failed"
EVENT_NAMES = (CREATED, QUEUED, ADMITTED, RUNNING, SUCCEEDED, FAILED)
# Ray job statuses that say the job ran (or runs): it was submitted and Ray started its driver.
RAN = (JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED)
# Events that concern one Ray job of the RayJob (a backoffLimit retry runs a new one): keyed by its id too.
PER_JOB = (RUNNING, SUCCEEDED, FAILED)
MAX_MESSAGE = 1000  # KubeRay's message can quote a long error; an event has a size limit
EVENT_IDS = uuid.UUID("6f1c5d0e-8a43-4a8e-9b8f-2c1e9f7b4d21")  # the uuid5 namespace of the events' ids

Emit = Callable[..., Any]


def text(value: Any) -> str:
    return str(getattr(value, "value", value) or "")


def rayjob_resource(state: RayJobState) -> dict[str, str]:
    resource = {
        "prefect.resource.id": f"{PREFIX}.{state.namespace}.{state.name}",
        "prefect.resource.name": state.name,
        "kuberay.namespace": state.namespace,
    }
    if state.job_id:
        resource["kuberay.job-id"] = state.job_id
    return resource


def event_payload(state: RayJobState) -> dict[str, str]:
    """KubeRay's view of the RayJob: statuses, reason, message; nothing from the job's log or spec."""
    payload = {
        "jobStatus": text(state.job_status),
        "jobDeploymentStatus": text(state.deployment_status),
        "reason": state.reason,
        "message": state.message[:MAX_MESSAGE],
    }
    if state.cluster_name:
        payload["rayClusterName"] = state.cluster_name
    if state.queue_name:
        payload["queueName"] = state.queue_name
    return payload


def implied_events(state: RayJobState) -> list[str]:
    """The events a RayJob's state implies, in the order they happened."""
    if state.is_queued_for_admission:
        return [QUEUED]
    implied = []
    if state.queue_name and not state.suspend and not state.is_terminal:
        implied.append(ADMITTED)
    if state.job_status in RAN:
        implied.append(RUNNING)
    if state.is_terminal:
        implied.append(SUCCEEDED if state.succeeded_job else FAILED)
    return implied


class RayJobEvents:
    """One call's events: each at most once per RayJob (per Ray job for ``PER_JOB``). ``related``: resources
    to name besides what Prefect adds from the run context (the worker names its flow run)."""

    def __init__(self, related: list[dict[str, str]] | None = None, emit: Emit = emit_event) -> None:
        self.related, self.emit = related or [], emit
        self.sent: set[tuple[str, ...]] = set()

    def created(self, rayjob: Mapping[str, Any]) -> None:
        """This call created ``rayjob`` (the object the API returned)."""
        self.send(CREATED, rayjob, RayJobState.from_object(rayjob))

    def observe(self, rayjob: Mapping[str, Any]) -> None:
        """A RayJob as a watch delivered it: the events its state implies that were not sent yet."""
        state = RayJobState.from_object(rayjob)
        for event in implied_events(state):
            self.send(event, rayjob, state)

    def send(self, event: str, rayjob: Mapping[str, Any], state: RayJobState) -> None:
        uid = str((rayjob.get("metadata") or {}).get("uid") or "")
        key = (uid or f"{state.namespace}/{state.name}", event, state.job_id if event in PER_JOB else "")
        if key in self.sent:
            return
        self.sent.add(key)
        related = list(self.related)
        if state.queue_name:
            related.append(
                {
                    "prefect.resource.id": f"kueue.localqueue.{state.namespace}.{state.queue_name}",
                    "prefect.resource.role": "kueue-queue",
                    "prefect.resource.name": state.queue_name,
                }
            )
        try:
            self.emit(
                event=event,
                resource=rayjob_resource(state),
                related=related,
                payload=event_payload(state),
                id=uuid.uuid5(EVENT_IDS, "/".join(key)) if uid else None,
            )
        except Exception as error:  # an event is a notice: never the reason a wait fails
            log.warning("could not emit %s for RayJob %s/%s: %s", event, state.namespace, state.name, error)


class EventTap:
    """An ``ObjectWatcher`` that shows every RayJob it delivers to ``events`` on its way to the waiter."""

    def __init__(self, inner: ObjectWatcher, events: RayJobEvents) -> None:
        self.inner, self.events = inner, events

    def watch(
        self, kind: RayKind, namespace: str, *, name: str | None = None, timeout_seconds: float | None = None
    ) -> AsyncIterator[WatchEvent]:
        return self.tapped(kind, self.inner.watch(kind, namespace, name=name, timeout_seconds=timeout_seconds))

    async def tapped(self, kind: RayKind, events: AsyncIterator[WatchEvent]) -> AsyncIterator[WatchEvent]:
        try:
            async for event in events:
                if kind == RAYJOB and event.type != "DELETED":
                    self.events.observe(event.object)
                yield event
        finally:
            if (close := getattr(events, "aclose", None)) is not None:
                await close()  # now: the watch's connection (or thread) goes with it

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.inner, attribute)  # whatever else the waiter's client offers


def with_events(runner: AsyncRayJobRunner, events: RayJobEvents) -> AsyncRayJobRunner:
    """``runner`` whose waits report each RayJob state they watch to ``events``."""
    return dataclasses.replace(runner, kube=EventTap(runner.kube, events))


def flow_run_resource(flow_run: Any) -> dict[str, str]:
    """A flow run as a related resource (where no run context names it: the worker)."""
    return {
        "prefect.resource.id": f"prefect.flow-run.{flow_run.id}",
        "prefect.resource.role": "flow-run",
        "prefect.resource.name": str(flow_run.name or ""),
    }
