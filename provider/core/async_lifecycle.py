"""The waiting step of ``RayJobLifecycle`` for asyncio code (deferrable triggers, async flows)."""

from __future__ import annotations

from typing import AsyncIterator, Callable, Protocol

from kuberay_provider.core.kube.watch import WatchEvent
from kuberay_provider.core.lifecycle import StateTracker
from kuberay_provider.core.resources import RAYJOB, RayKind
from kuberay_provider.core.status import RayJobState, WaitTarget


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
    tracker = StateTracker(namespace, name, target.reached, timeout, on_change)
    async for event in kube.watch(RAYJOB, namespace, name=name, timeout_seconds=timeout):
        if (done := tracker.observe(event)) is not None:
            return done
    raise tracker.timed_out()
