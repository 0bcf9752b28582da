"""The deferred waits on RayClusters and RayServices (``RayClusterTrigger``, ``RayServiceTrigger``) and on
their deletion (``RayObjectDeletedTrigger``). Like ``triggers``, this module imports only what is light: the
waiting code is loaded in a thread the first time a trigger runs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

from airflow.triggers.base import TriggerEvent

from kuberay_provider.airflow import DEFAULT_CONN_ID
from kuberay_provider.airflow.trigger_support import (
    ProviderTrigger,
    async_hook,
    error_event,
    load_waiting_modules,
    shared_watches,
    trigger_event,
)

# The module their serialized classpath names: ``triggers``, where they were first, re-exports them.
CLASSPATH_MODULE = "kuberay_provider.airflow.triggers"


class _RayObjectTrigger(ProviderTrigger):
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
        return f"{CLASSPATH_MODULE}.{type(self).__qualname__}", self._arguments()

    def _tracker(self) -> Any:
        raise NotImplementedError

    async def run(self) -> AsyncIterator[TriggerEvent]:
        yield trigger_event(await self._wait())

    async def _await_tracked(self, watches: Any, kind: Any, tracker: Any) -> Any:
        """Feed ``tracker`` the object's events until it has its state."""
        from kuberay_provider.core.async_lifecycle import wait_tracked

        return await wait_tracked(watches, kind, tracker)

    async def _wait(self) -> dict[str, Any]:
        try:
            await asyncio.to_thread(_load_object_waiting_modules)
            from kuberay_provider.core.resources import RAY_KINDS

            tracker = self._tracker()
            state = await self._await_tracked(shared_watches(self.kuberay_conn_id), RAY_KINDS[self.kind_name], tracker)
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
    load_waiting_modules()
    import kuberay_provider.core.clusters
    import kuberay_provider.core.services  # noqa: F401  # imported for its loading, off the event loop


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
        hook = await asyncio.to_thread(async_hook, self.kuberay_conn_id)
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


class RayObjectDeletedTrigger(ProviderTrigger):
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
        return f"{CLASSPATH_MODULE}.{type(self).__qualname__}", {
            "kind": self.kind,
            "name": self.name,
            "namespace": self.namespace,
            "kuberay_conn_id": self.kuberay_conn_id,
            "timeout": self.timeout,
        }

    async def run(self) -> AsyncIterator[TriggerEvent]:
        yield trigger_event(await self._wait())

    async def _wait(self) -> dict[str, Any]:
        where, subject = {"namespace": self.namespace, "name": self.name}, f"{self.kind} {self.namespace}/{self.name}"
        try:
            await asyncio.to_thread(_load_object_waiting_modules)
            from kuberay_provider.core.async_lifecycle import wait_until_gone
            from kuberay_provider.core.resources import RAY_KINDS

            hook = await asyncio.to_thread(async_hook, self.kuberay_conn_id)
            async with hook.objects_client() as kube:
                left = await wait_until_gone(kube, RAY_KINDS[self.kind], self.namespace, self.name, self.timeout)
        except Exception as exc:
            return {**error_event(exc), **where}
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
