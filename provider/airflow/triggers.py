"""RayJobTrigger: waits for a RayJob by watch on the triggerer's event loop, so no worker slot is held."""

from __future__ import annotations

from typing import Any, AsyncIterator

from airflow.triggers.base import BaseTrigger, TriggerEvent

from kuberay_provider.airflow.hooks import DEFAULT_CONN_ID, AsyncKubeRayHook
from kuberay_provider.core.async_lifecycle import state_from_payload, state_to_payload, wait_for_rayjob
from kuberay_provider.core.lifecycle import RayJobTimeout, WaitTarget
from kuberay_provider.core.status import RayJobState


class RayJobTrigger(BaseTrigger):
    """Fires once the RayJob ``namespace/name`` reaches ``wait_for``.

    :param wait_for: ``"terminal"`` (Complete, Failed or ValidationFailed), ``"started"`` (the Ray job
        runs) or ``"ready_for_submission"`` (InteractiveMode waits for the provider's submission).
    :param timeout: seconds; None waits as long as the task's own timeouts allow.

    The event is ``{"status": "success" | "error" | "timeout", "state": {...}, "message": str}``; ``state``
    is the RayJob's status as ``core.async_lifecycle.state_to_payload`` writes it.
    """

    def __init__(
        self,
        name: str,
        namespace: str,
        kuberay_conn_id: str = DEFAULT_CONN_ID,
        wait_for: str = WaitTarget.TERMINAL.value,
        timeout: float | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.namespace = namespace
        self.kuberay_conn_id = kuberay_conn_id
        self.wait_for = WaitTarget(wait_for).value
        self.timeout = timeout

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "name": self.name,
                "namespace": self.namespace,
                "kuberay_conn_id": self.kuberay_conn_id,
                "wait_for": self.wait_for,
                "timeout": self.timeout,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = AsyncKubeRayHook(kuberay_conn_id=self.kuberay_conn_id)
        try:
            async with hook.objects_client() as kube:
                state = await wait_for_rayjob(
                    kube, self.namespace, self.name, WaitTarget(self.wait_for), timeout=self.timeout,
                    on_change=lambda s: self.log.info("%s", s.describe()),
                )
        except RayJobTimeout as exc:
            last = state_to_payload(exc.state) if exc.state else None
            yield TriggerEvent({"status": "timeout", "state": last, "message": str(exc)})
            return
        except Exception as exc:  # noqa: BLE001 - handed to the task, which fails with the reason
            yield TriggerEvent({"status": "error", "state": None, "message": f"{type(exc).__name__}: {exc}"})
            return
        yield TriggerEvent({"status": "success", "state": state_to_payload(state), "message": state.describe()})


def state_from_event(event: dict[str, Any] | None, subject: str = "the RayJob") -> RayJobState:
    """The RayJob state a RayJobTrigger event carries; raises AirflowException for timeout / error events."""
    from airflow.sdk.exceptions import AirflowException

    if not event or event.get("status") != "success" or not event.get("state"):
        message = (event or {}).get("message") or "the trigger ended without a result"
        raise AirflowException(f"waiting for {subject} failed: {message}")
    return state_from_payload(event["state"])
