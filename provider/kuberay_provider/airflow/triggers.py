"""RayJobTrigger: waits for a RayJob by watch on the triggerer's event loop, so no worker slot is held.

A triggerer imports a trigger's module on its event loop, where every second of import is a second no
other trigger runs. So this module imports only what is light; the Kubernetes clients (seconds to
import) are loaded in a thread the first time a trigger runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from kuberay_provider.airflow import DEFAULT_CONN_ID
from kuberay_provider.core.kube.shared_watch import SharedWatches
from kuberay_provider.core.status import RayJobState, WaitTarget, state_from_payload, state_to_payload

if TYPE_CHECKING:
    from kuberay_provider.airflow.hooks import AsyncKubeRayHook
    from kuberay_provider.core.kube.async_client import AsyncRayObjectsClient
    from kuberay_provider.core.ray_jobs import RayJobsClient


def _async_hook(conn_id: str) -> AsyncKubeRayHook:
    from kuberay_provider.airflow.hooks import AsyncKubeRayHook

    return AsyncKubeRayHook(kuberay_conn_id=conn_id)


def _load_waiting_modules() -> None:
    """The hook and the core's waiting code, imported off the event loop (once per process)."""
    import kuberay_provider.airflow.hooks
    import kuberay_provider.core.async_runner  # noqa: F401


def _shared_watches(conn_id: str) -> SharedWatches:
    """Every RayJobTrigger of one connection in this triggerer shares one watch per namespace: a
    thousand deferred waits cost one API client and one watch connection, not a thousand."""

    @contextlib.asynccontextmanager
    async def open_client() -> AsyncIterator[AsyncRayObjectsClient]:
        hook = await asyncio.to_thread(_async_hook, conn_id)
        async with hook.objects_client() as kube:
            yield kube

    return SharedWatches(("airflow", conn_id), open_client)


def _jobs_client_finder(conn_id: str) -> Callable[[RayJobState], RayJobsClient]:
    """The Jobs API of a RayJob's cluster, found as the operator finds it (head service, service proxy or
    the connection's URL template); the sync hook's calls run in the caller's thread."""
    from kuberay_provider.airflow.hooks import KubeRayHook

    return KubeRayHook(kuberay_conn_id=conn_id).lifecycle(validate_schema=False).rayjob_jobs_client


class RayJobTrigger(BaseTrigger):
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
        return await asyncio.to_thread(_async_hook, self.kuberay_conn_id)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        yield TriggerEvent(await self._wait())

    async def _wait(self) -> dict[str, Any]:
        started = time.monotonic()
        try:
            await asyncio.to_thread(_load_waiting_modules)
        except Exception as exc:
            return _error_event(exc)
        from kuberay_provider.core.lifecycle import RayJobTimeout  # loaded in the thread above: free now

        try:
            state, log = await self._watch(_shared_watches(self.kuberay_conn_id))
        except RayJobTimeout as exc:
            return {
                "status": "timeout",
                "state": state_to_payload(exc.state) if exc.state else None,
                "message": str(exc),
            }
        except Exception as exc:
            return _error_event(exc)
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
        from kuberay_provider.core.log_follower import StreamedLog

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
        return state, StreamedLog(
            stream.received, event_log_tail(stream.tail(self.log_tail_lines), shown_line)
        ).to_payload()

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


def _error_event(exc: Exception) -> dict[str, Any]:
    return {"status": "error", "state": None, "message": f"{type(exc).__name__}: {exc}"}


def state_from_event(event: dict[str, Any] | None, subject: str = "the RayJob") -> RayJobState:
    """The RayJob state a RayJobTrigger event carries; raises AirflowException for timeout / error events."""
    from airflow.sdk.exceptions import AirflowException

    if not event or event.get("status") != "success" or not event.get("state"):
        message = (event or {}).get("message") or "the trigger ended without a result"
        raise AirflowException(f"waiting for {subject} failed: {message}")
    return state_from_payload(event["state"])


class _RayObjectTrigger(BaseTrigger):
    """A deferred wait on one RayCluster or RayService, through the connection's shared watch.

    The event is ``{"status": "success" | "error" | "timeout", "state": {...} | None, "message": str,
    "namespace": str, "name": str, "carry": {...}}``; ``state`` is the object's state as its ``to_dict()``
    writes it, ``carry`` what the deferring task handed the trigger to get back (e.g. whether it created
    the cluster): ``dag.test()`` drops a deferral's method kwargs, and an XCom would not obey ``do_xcom_push``.
    """

    kind_name = ""

    def __init__(
        self,
        name: str,
        namespace: str,
        kuberay_conn_id: str = DEFAULT_CONN_ID,
        timeout: float | None = None,
        carry: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.name, self.namespace, self.kuberay_conn_id, self.timeout = name, namespace, kuberay_conn_id, timeout
        self.carry = dict(carry or {})

    def _arguments(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "namespace": self.namespace,
            "kuberay_conn_id": self.kuberay_conn_id,
            "timeout": self.timeout,
            "carry": self.carry,
        }

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{type(self).__module__}.{type(self).__qualname__}", self._arguments()

    def _tracker(self) -> Any:
        raise NotImplementedError

    async def run(self) -> AsyncIterator[TriggerEvent]:
        yield TriggerEvent(await self._wait())

    async def _await_tracked(self, watches: Any, kind: Any, tracker: Any) -> Any:
        """Feed ``tracker`` the object's events until it has its state."""
        from kuberay_provider.core.async_lifecycle import wait_tracked

        return await wait_tracked(watches, kind, tracker)

    async def _wait(self) -> dict[str, Any]:
        try:
            await asyncio.to_thread(_load_object_waiting_modules)
            from kuberay_provider.core.resources import RAY_KINDS

            tracker = self._tracker()
            state = await self._await_tracked(_shared_watches(self.kuberay_conn_id), RAY_KINDS[self.kind_name], tracker)
        except Exception as exc:
            last = getattr(exc, "state", None)
            status = "timeout" if type(exc).__name__.endswith("Timeout") else "error"
            return {
                "status": status,
                "state": last.to_dict() if last is not None else None,
                "message": str(exc),
                "namespace": self.namespace,
                "name": self.name,
                "carry": self.carry,
            }
        return {
            "status": "success",
            "state": state.to_dict(),
            "message": state.describe(),
            "namespace": self.namespace,
            "name": self.name,
            "carry": self.carry,
        }


def _load_object_waiting_modules() -> None:
    """The core's RayCluster / RayService waiting code, imported off the event loop."""
    _load_waiting_modules()
    import kuberay_provider.core.clusters
    import kuberay_provider.core.services  # noqa: F401


class RayClusterTrigger(_RayObjectTrigger):
    """Fires once the RayCluster ``namespace/name`` reaches ``wait_for``: ``"ready"`` (state ready and the
    head Pod ready), ``"workers"`` (after a scale: ready workers == desired) or ``"admitted"`` (Kueue no
    longer holds it suspended). With ``delete_on_kill`` a user's kill of the deferred task deletes the
    cluster (``RayClusterCreateOperator`` asks for it when its try created the cluster)."""

    kind_name = "RayCluster"

    def __init__(
        self,
        name: str,
        namespace: str,
        kuberay_conn_id: str = DEFAULT_CONN_ID,
        timeout: float | None = None,
        wait_for: str = "ready",
        carry: Mapping[str, Any] | None = None,
        delete_on_kill: bool = False,
    ) -> None:
        super().__init__(name, namespace, kuberay_conn_id, timeout, carry)
        self.wait_for, self.delete_on_kill = wait_for, delete_on_kill

    def _arguments(self) -> dict[str, Any]:
        return {**super()._arguments(), "wait_for": self.wait_for, "delete_on_kill": self.delete_on_kill}

    async def on_kill(self) -> None:
        """A user killed the deferred task (Airflow >= 3.3; never on a triggerer restart): delete the cluster."""
        if not self.delete_on_kill:
            return
        from kuberay_provider.core.resources import RAYCLUSTER

        self.log.info(
            "Deferred task killed: deleting RayCluster %s/%s, which its try created", self.namespace, self.name
        )
        hook = await asyncio.to_thread(_async_hook, self.kuberay_conn_id)
        async with hook.objects_client() as kube:
            deleted = await kube.delete(RAYCLUSTER, self.namespace, self.name)
        self.log.info("RayCluster %s/%s %s", self.namespace, self.name, "deleted" if deleted else "was already gone")

    def _tracker(self) -> Any:
        from kuberay_provider.core.clusters import ClusterTracker

        return ClusterTracker(
            self.namespace,
            self.name,
            self.wait_for,
            self.timeout,
            on_change=lambda state: self.log.info("%s", state.describe()),
        )


class RayServiceTrigger(_RayObjectTrigger):
    """Fires once the RayService ``namespace/name`` serves its latest spec (applied, its applications running
    as read after the change, Ready, no upgrade in progress); a failed application, a spec KubeRay refused
    or an initializing timeout ends it with an error saying what to do."""

    kind_name = "RayService"

    def _tracker(self) -> Any:
        from kuberay_provider.core.services import ServiceTracker

        return ServiceTracker(
            self.namespace, self.name, self.timeout, on_change=lambda state: self.log.info("%s", state.describe())
        )

    async def _await_tracked(self, watches: Any, kind: Any, tracker: Any) -> Any:
        """A RayService wait also wakes up without an event, to trust a state KubeRay did not rewrite."""
        from kuberay_provider.core.services import await_service

        return await await_service(watches, tracker)


class RayObjectDeletedTrigger(BaseTrigger):
    """Fires once the RayCluster or RayService (``kind``) ``namespace/name``, which the task deleted before
    deferring, is gone: the deferred wait of ``RayClusterDeleteOperator`` and ``RayServiceDeleteOperator``.
    Its own watch from the object's current version (a deletion is rare: no shared watch). The event is
    ``{"status": "success" | "error" | "timeout", "message": str, "namespace": str, "name": str}``."""

    def __init__(
        self, kind: str, name: str, namespace: str, kuberay_conn_id: str = DEFAULT_CONN_ID, timeout: float | None = None
    ) -> None:
        super().__init__()
        self.kind, self.name, self.namespace, self.kuberay_conn_id, self.timeout = (
            kind,
            name,
            namespace,
            kuberay_conn_id,
            timeout,
        )

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{type(self).__module__}.{type(self).__qualname__}", {
            "kind": self.kind,
            "name": self.name,
            "namespace": self.namespace,
            "kuberay_conn_id": self.kuberay_conn_id,
            "timeout": self.timeout,
        }

    async def run(self) -> AsyncIterator[TriggerEvent]:
        yield TriggerEvent(await self._wait())

    async def _wait(self) -> dict[str, Any]:
        where, subject = {"namespace": self.namespace, "name": self.name}, f"{self.kind} {self.namespace}/{self.name}"
        try:
            await asyncio.to_thread(_load_object_waiting_modules)
            from kuberay_provider.core.async_lifecycle import wait_until_gone
            from kuberay_provider.core.resources import RAY_KINDS

            hook = await asyncio.to_thread(_async_hook, self.kuberay_conn_id)
            async with hook.objects_client() as kube:
                left = await wait_until_gone(kube, RAY_KINDS[self.kind], self.namespace, self.name, self.timeout)
        except Exception as exc:
            return {**_error_event(exc), **where}
        if left is not None:
            return {"status": "timeout", "message": f"{subject} was not gone within {self.timeout} s", **where}
        self.log.info("%s is gone", subject)
        return {"status": "success", "message": f"{subject} is gone", **where}


def object_state_from_event(event: dict[str, Any] | None, subject: str) -> dict[str, Any]:
    """The state a RayClusterTrigger / RayServiceTrigger event carries; AirflowException otherwise."""
    from airflow.sdk.exceptions import AirflowException

    if not event or event.get("status") != "success" or not event.get("state"):
        raise AirflowException(
            f"waiting for {subject} failed: {(event or {}).get('message') or 'the trigger ended without a result'}"
        )
    return dict(event["state"])


def deleted_from_event(event: dict[str, Any] | None, kind: str) -> bool:
    """True from a RayObjectDeletedTrigger's success; AirflowException, with the reason, otherwise."""
    from airflow.sdk.exceptions import AirflowException

    event = event or {}
    if event.get("status") != "success":
        raise AirflowException(
            f"waiting for {kind} {event.get('namespace')}/{event.get('name')} to be gone failed: "
            f"{event.get('message') or 'the trigger ended without a result'}"
        )
    return True
