"""RayJobTrigger: waits for a RayJob by watch on the triggerer's event loop, so no worker slot is held.

A triggerer imports a trigger's module on its event loop, where every second of import is a second no
other trigger runs. So this module imports only what is light; the Kubernetes clients (seconds to
import) are loaded in a thread the first time a trigger runs.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, AsyncIterator

from airflow.triggers.base import BaseTrigger, TriggerEvent

from kuberay_provider.airflow import DEFAULT_CONN_ID
from kuberay_provider.core.status import RayJobState, WaitTarget, state_from_payload, state_to_payload

if TYPE_CHECKING:
    from kuberay_provider.airflow.hooks import AsyncKubeRayHook


def _async_hook(conn_id: str) -> AsyncKubeRayHook:
    from kuberay_provider.airflow.hooks import AsyncKubeRayHook

    return AsyncKubeRayHook(kuberay_conn_id=conn_id)


class RayJobTrigger(BaseTrigger):
    """Fires once the RayJob ``namespace/name`` reaches ``wait_for``.

    :param wait_for: ``"terminal"`` (Complete, Failed or ValidationFailed), ``"started"`` (the Ray job
        runs) or ``"ready_for_submission"`` (InteractiveMode waits for the provider's submission).
    :param timeout: seconds; None waits as long as the task's own timeouts allow.
    :param delete_on_kill: delete the RayJob when a user kills the deferred task (mark failed or
        success, clear). KubeRay then stops the Ray job and removes the cluster it made. A triggerer
        restart or a trigger moved to another triggerer is not a kill: the RayJob stays, and the
        trigger resumes watching it wherever it runs next (Airflow >= 3.3 calls ``on_kill`` only for
        user actions).

    The event is ``{"status": "success" | "error" | "timeout", "state": {...}, "message": str}``; ``state``
    is the RayJob's status as ``core.status.state_to_payload`` writes it.
    """

    def __init__(
        self,
        name: str,
        namespace: str,
        kuberay_conn_id: str = DEFAULT_CONN_ID,
        wait_for: str = WaitTarget.TERMINAL.value,
        timeout: float | None = None,
        delete_on_kill: bool = False,
    ) -> None:
        super().__init__()
        self.name = name
        self.namespace = namespace
        self.kuberay_conn_id = kuberay_conn_id
        self.wait_for = WaitTarget(wait_for).value
        self.timeout = timeout
        self.delete_on_kill = delete_on_kill

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
            },
        )

    async def _hook(self) -> AsyncKubeRayHook:
        return await asyncio.to_thread(_async_hook, self.kuberay_conn_id)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        yield TriggerEvent(await self._wait())

    async def _wait(self) -> dict[str, Any]:
        try:
            hook = await self._hook()
        except Exception as exc:  # noqa: BLE001 - handed to the task, which fails with the reason
            return _error_event(exc)
        # Already imported with the hook, in its thread: these cost the loop nothing now.
        from kuberay_provider.core.async_lifecycle import wait_for_rayjob
        from kuberay_provider.core.lifecycle import RayJobTimeout

        try:
            async with hook.objects_client() as kube:
                state = await wait_for_rayjob(
                    kube, self.namespace, self.name, WaitTarget(self.wait_for), timeout=self.timeout,
                    on_change=lambda s: self.log.info("%s", s.describe()),
                )
        except RayJobTimeout as exc:
            return {"status": "timeout", "state": state_to_payload(exc.state) if exc.state else None, "message": str(exc)}
        except Exception as exc:  # noqa: BLE001 - handed to the task, which fails with the reason
            return _error_event(exc)
        return {"status": "success", "state": state_to_payload(state), "message": state.describe()}

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


def _error_event(exc: Exception) -> dict[str, Any]:
    return {"status": "error", "state": None, "message": f"{type(exc).__name__}: {exc}"}


def state_from_event(event: dict[str, Any] | None, subject: str = "the RayJob") -> RayJobState:
    """The RayJob state a RayJobTrigger event carries; raises AirflowException for timeout / error events."""
    from airflow.sdk.exceptions import AirflowException

    if not event or event.get("status") != "success" or not event.get("state"):
        message = (event or {}).get("message") or "the trigger ended without a result"
        raise AirflowException(f"waiting for {subject} failed: {message}")
    return state_from_payload(event["state"])
