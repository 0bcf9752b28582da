"""The waiting step of ``RayJobLifecycle`` for asyncio code (deferrable triggers, async flows)."""

from __future__ import annotations

from typing import AsyncIterator, Callable, Generic, Protocol, TypeVar

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


S = TypeVar("S", covariant=True)


class Tracker(Protocol, Generic[S]):
    """What the sync and async waits share for one object: ``core.clusters.ClusterTracker``,
    ``core.services.ServiceTracker``."""

    namespace: str
    name: str
    timeout: float | None

    def observe(self, event: WatchEvent) -> S | None: ...

    def timed_out(self) -> Exception: ...


async def wait_tracked(kube: ObjectWatcher, kind: RayKind, tracker: Tracker[S]) -> S:
    """Await what ``tracker`` waits for by watching its object; raises its timeout after ``tracker.timeout`` s."""
    async for event in kube.watch(kind, tracker.namespace, name=tracker.name, timeout_seconds=tracker.timeout):
        if (done := tracker.observe(event)) is not None:
            return done
    raise tracker.timed_out()
