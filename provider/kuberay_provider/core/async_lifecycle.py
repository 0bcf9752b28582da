"""The waiting step of ``RayJobLifecycle`` for asyncio code (deferrable triggers, async flows)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Protocol

from kuberay_provider.core.kube.watch import S, Tracker, WatchEvent
from kuberay_provider.core.lifecycle import StateTracker
from kuberay_provider.core.resources import RAYJOB, RayKind
from kuberay_provider.core.status import RayJobState, WaitTarget

if TYPE_CHECKING:
    from kuberay_provider.core.kube.api_requests import KubeObject
    from kuberay_provider.core.kube.async_client import AsyncRayObjectsClient


class ObjectWatcher(Protocol):
    """Where waits get one object's events: an ``AsyncRayObjectsClient`` (its own watch) or a
    ``core.kube.shared_watch.SharedWatches`` (one watch per namespace shared by all waiters)."""

    def watch(
        self, kind: RayKind, namespace: str, *, name: str | None = None, timeout_seconds: float | None = None
    ) -> AsyncIterator[WatchEvent]: ...


async def wait_for_rayjob(
    kube: ObjectWatcher,
    namespace: str,
    name: str,
    target: WaitTarget = WaitTarget.TERMINAL,
    *,
    timeout: float | None = None,
    on_change: Callable[[RayJobState], None] | None = None,
) -> RayJobState:
    """Await ``target`` by watching the RayJob (no polling); raises RayJobTimeout after ``timeout`` s."""
    return await wait_tracked(kube, RAYJOB, StateTracker(namespace, name, target.reached, timeout, on_change))


async def wait_tracked(kube: ObjectWatcher, kind: RayKind, tracker: Tracker[S]) -> S:
    """Await what ``tracker`` waits for by watching its object; its timeout error after ``tracker.timeout`` s."""
    async for event in kube.watch(kind, tracker.namespace, name=tracker.name, timeout_seconds=tracker.timeout):
        if (done := tracker.observe(event)) is not None:
            return done
    raise tracker.timed_out()


async def wait_until_gone(
    kube: AsyncRayObjectsClient, kind: RayKind, namespace: str, name: str, timeout: float | None
) -> KubeObject | None:
    """After a delete: watch the object from its current version until it is gone (``sync_client.wait_until_gone``
    for asyncio). None once gone (or already), else the object as it still was when ``timeout`` s had passed."""
    current = await kube.find(kind, namespace, name)
    if current is None:
        return None
    version = (current.get("metadata") or {}).get("resourceVersion")
    async for event in kube.watch(kind, namespace, name=name, resource_version=version, timeout_seconds=timeout):
        if event.type == "DELETED":
            return None
    return current
