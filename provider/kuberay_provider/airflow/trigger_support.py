"""What every trigger of the provider shares: the connection's hooks and shared watches, loaded off the
triggerer's event loop (importing the Kubernetes clients takes seconds, during which no other trigger runs)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from kuberay_provider.core.kube.shared_watch import SharedWatches

if TYPE_CHECKING:
    from kuberay_provider.airflow.hooks import AsyncKubeRayHook
    from kuberay_provider.core.kube.async_client import AsyncRayObjectsClient


class ProviderTrigger(BaseTrigger):
    """The provider's triggers' base: Airflow's ``BaseTrigger``, called through a typed ``__init__``."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Airflow's BaseTrigger.__init__ is unannotated


def trigger_event(payload: dict[str, Any]) -> TriggerEvent:
    return TriggerEvent(payload)  # type: ignore[no-untyped-call]  # Airflow's TriggerEvent is unannotated


def async_hook(conn_id: str) -> AsyncKubeRayHook:
    from kuberay_provider.airflow.hooks import AsyncKubeRayHook

    return AsyncKubeRayHook(kuberay_conn_id=conn_id)


def load_waiting_modules() -> None:
    """The hook and the core's waiting code, imported off the event loop (once per process)."""
    import kuberay_provider.airflow.hooks
    import kuberay_provider.core.async_runner  # noqa: F401  # imported for its loading, off the event loop


def shared_watches(conn_id: str) -> SharedWatches:
    """Every RayJobTrigger of one connection in this triggerer shares one watch per namespace: a
    thousand deferred waits cost one API client and one watch connection, not a thousand."""

    @contextlib.asynccontextmanager
    async def open_client() -> AsyncIterator[AsyncRayObjectsClient]:
        hook = await asyncio.to_thread(async_hook, conn_id)
        async with hook.objects_client() as kube:
            yield kube

    return SharedWatches(("airflow", conn_id), open_client)


def error_event(exc: Exception) -> dict[str, Any]:
    return {"status": "error", "state": None, "message": f"{type(exc).__name__}: {exc}"}
