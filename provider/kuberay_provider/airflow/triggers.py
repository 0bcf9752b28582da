"""RayJobTrigger: waits for a RayJob by watch on the triggerer's event loop, so no worker slot is held.

A triggerer imports a trigger's module on its event loop, where every second of import is a second no
other trigger runs. So this module imports only what is light; the Kubernetes clients (seconds to
import) are loaded in a thread the first time a trigger runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import TriggerEvent

from kuberay_provider.airflow import DEFAULT_CONN_ID

# The RayCluster / RayService triggers live in a module of their own (for size) and are importable from here,
# the classpath their serialized form names (deferrals stored before the split keep resolving).
from kuberay_provider.airflow.object_triggers import (
    RayClusterTrigger,
    RayObjectDeletedTrigger,
    RayServiceTrigger,
    deleted_from_event,
    object_state_from_event,
)
from kuberay_provider.airflow.trigger_support import (
    ProviderTrigger,
    async_hook,
    error_event,
    load_waiting_modules,
    shared_watches,
    trigger_event,
)
from kuberay_provider.core.kube.shared_watch import SharedWatches
from kuberay_provider.core.status import RayJobState, WaitTarget, state_from_payload, state_to_payload

if TYPE_CHECKING:
    from kuberay_provider.airflow.hooks import AsyncKubeRayHook
    from kuberay_provider.core.ray_jobs import RayJobsClient


def _jobs_client_finder(conn_id: str) -> Callable[[RayJobState | None], RayJobsClient]:
    """The Jobs API of a RayJob's cluster, found as the operator finds it (head service, service proxy or
    the connection's URL template); the sync hook's calls run in the caller's thread."""
    from kuberay_provider.airflow.hooks import KubeRayHook

    lifecycle = KubeRayHook(kuberay_conn_id=conn_id).lifecycle(validate_schema=False)

    def jobs_for(state: RayJobState | None) -> RayJobsClient:
        if state is None:  # a trigger always waits on a RayJob, whose state names its cluster
            raise ValueError("the Jobs API of a RayJob's cluster needs the RayJob's state")
        return lifecycle.rayjob_jobs_client(state)

    return jobs_for


class RayJobTrigger(ProviderTrigger):
    """Fires once the RayJob ``namespace/name`` reaches ``wait_for``.

    :param wait_for: ``"terminal"`` (Complete, Failed or ValidationFailed), ``"admitted"`` (Kueue no
        longer holds it suspended on its queue), ``"started"`` (the Ray job
        runs) or ``"ready_for_submission"`` (InteractiveMode waits for the provider's submission).
    :param timeout: seconds; None waits as long as the task's own timeouts allow.
    :param delete_on_kill: delete the RayJob when a user kills the deferred task (mark failed or
        success, clear). KubeRay then stops the Ray job and removes the cluster it made. A triggerer
        restart or a trigger moved to another triggerer is not a kill: the RayJob stays, and the
        trigger resumes watching it wherever it runs next (Airflow >= 3.3 calls ``on_kill`` only for
        user actions).
    :param stream_logs: with ``wait_for="terminal"``: stream the Ray job's log into the trigger's log
        (which Airflow shows in the task's log) while waiting; the event then carries how much arrived
        and its last ``log_tail_lines`` lines (``"log"``), at most ``EVENT_LOG_TAIL_BYTES`` of them and
        function markers shrunk to their size: events are stored in Airflow's metadata database, so a
        function's result is read from the job's log by the resumed task, never carried here.

    The event is ``{"status": "success" | "error" | "timeout", "state": {...}, "message": str}``; ``state``
    is the RayJob's status as ``core.status.state_to_payload`` writes it; a success also says how long
    this trigger waited (``waited_seconds``).
    """

    def __init__(
        self,
        name: str,
        namespace: str,
        kuberay_conn_id: str = DEFAULT_CONN_ID,
        wait_for: str = WaitTarget.TERMINAL.value,
        timeout: float | None = None,
        delete_on_kill: bool = False,
        stream_logs: bool = False,
        log_tail_lines: int = 50,
    ) -> None:
        super().__init__()
        self.name = name
        self.namespace = namespace
        self.kuberay_conn_id = kuberay_conn_id
        self.wait_for = WaitTarget(wait_for).value
        self.timeout = timeout
        self.delete_on_kill = delete_on_kill
        self.stream_logs = stream_logs
        self.log_tail_lines = log_tail_lines

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "name": self.name,
                "namespace": self.namespace,
                "kuberay_conn_id": self.kuberay_conn_id,
                "wait_for": self.wait_for,
                "timeout": self.timeout,
                "delete_on_kill": self.delete_on_kill,
                "stream_logs": self.stream_logs,
                "log_tail_lines": self.log_tail_lines,
            },
        )

    async def _hook(self) -> AsyncKubeRayHook:
        return await asyncio.to_thread(async_hook, self.kuberay_conn_id)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        yield trigger_event(await self._wait())

    async def _wait(self) -> dict[str, Any]:
        started = time.monotonic()
        try:
            await asyncio.to_thread(load_waiting_modules)
        except Exception as exc:
            return error_event(exc)
        from kuberay_provider.core.lifecycle import RayJobTimeout  # loaded in the thread above: free now

        try:
            state, log = await self._watch(shared_watches(self.kuberay_conn_id))
        except RayJobTimeout as exc:
            return {
                "status": "timeout",
                "state": state_to_payload(exc.state) if exc.state else None,
                "message": str(exc),
            }
        except Exception as exc:
            return error_event(exc)
        event = {
            "status": "success",
            "state": state_to_payload(state),
            "message": state.describe(),
            "waited_seconds": round(time.monotonic() - started, 1),
        }
        if log is not None:
            event["log"] = log
        return event

    async def _watch(self, watches: SharedWatches) -> tuple[RayJobState, dict[str, Any] | None]:
        """The awaited state, and what was streamed of the Ray job's log (None: nothing was)."""
        from kuberay_provider.core.async_lifecycle import wait_for_rayjob
        from kuberay_provider.core.async_runner import wait_streaming_log
        from kuberay_provider.core.functions import shown_line

        def status(state: RayJobState) -> None:
            self.log.info("%s", state.describe())

        target = WaitTarget(self.wait_for)
        if not (self.stream_logs and target is WaitTarget.TERMINAL):
            return await wait_for_rayjob(
                watches, self.namespace, self.name, target, timeout=self.timeout, on_change=status
            ), None
        jobs_for = await asyncio.to_thread(_jobs_client_finder, self.kuberay_conn_id)
        state, stream = await wait_streaming_log(
            watches,
            self.namespace,
            self.name,
            jobs_for=jobs_for,
            line_sink=lambda line: self.log.info("[ray] %s", shown_line(line)),
            timeout=self.timeout,
            on_change=status,
            keep_lines=self.log_tail_lines,
        )
        if stream is None:
            return state, None
        return state, stream.received_log.to_payload(event_log_tail(stream.tail(self.log_tail_lines), shown_line))

    async def on_kill(self) -> None:
        """A user killed the deferred task: delete the RayJob, as ``RayJobOperator.on_kill`` does for a
        running one. Never called on a triggerer restart (Airflow >= 3.3)."""
        if not self.delete_on_kill:
            return
        from kuberay_provider.core.resources import RAYJOB

        self.log.info("Deferred task killed: deleting RayJob %s/%s", self.namespace, self.name)
        hook = await self._hook()
        async with hook.objects_client() as kube:
            deleted = await kube.delete(RAYJOB, self.namespace, self.name)
        self.log.info("RayJob %s/%s %s", self.namespace, self.name, "deleted" if deleted else "was already gone")


EVENT_LOG_TAIL_BYTES = 4096  # of the log's last lines in a RayJobTrigger event (UTF-8)


def event_log_tail(text: str, shown: Callable[[str], str], limit: int = EVENT_LOG_TAIL_BYTES) -> str:
    """The log's last lines as an event carries them: each as the task log shows it (a function's
    marker shrinks to its size), the newest kept whole while they fit in ``limit`` bytes; a newest line
    longer than that is cut."""
    kept: list[str] = []
    size = 0
    for line in reversed(text.splitlines()):
        line = shown(line)
        encoded = line.encode("utf-8")
        if size + len(encoded) + 1 > limit:
            if not kept:
                kept.append(encoded[: max(limit - 4, 0)].decode("utf-8", errors="ignore") + " ...")
            break
        kept.append(line)
        size += len(encoded) + 1
    return "\n".join(reversed(kept))


def state_from_event(event: dict[str, Any] | None, subject: str = "the RayJob") -> RayJobState:
    """The RayJob state a RayJobTrigger event carries; raises AirflowException for timeout / error events."""
    from airflow.sdk.exceptions import AirflowException

    if not event or event.get("status") != "success" or not event.get("state"):
        message = (event or {}).get("message") or "the trigger ended without a result"
        raise AirflowException(f"waiting for {subject} failed: {message}")
    return state_from_payload(event["state"])


__all__ = [
    "EVENT_LOG_TAIL_BYTES",
    "RayClusterTrigger",
    "RayJobTrigger",
    "RayObjectDeletedTrigger",
    "RayServiceTrigger",
    "deleted_from_event",
    "event_log_tail",
    "object_state_from_event",
    "state_from_event",
]
