"""Waiting for a RayJob (or any object a ``Tracker`` follows) by watch: the one implementation.

It is async: deferrable triggers and async flows await it on their loop, with one shared watch per
namespace (``core.kube.shared_watch.SharedWatches``) or a client's own; synchronous callers run it through
``core.sync_bridge`` (``run_sync``, with ``ThreadedWatches`` over a synchronous client's watch).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Protocol

from kuberay_provider.core.errors import KubeRayProviderError, WaitTimeout
from kuberay_provider.core.kube.watch import S, Tracker, WatchEvent
from kuberay_provider.core.resources import RAYJOB, RayKind
from kuberay_provider.core.status import RayJobState, WaitTarget

if TYPE_CHECKING:
    from kuberay_provider.core.kube.api_requests import KubeObject


class RayJobTimeout(WaitTimeout[RayJobState]):
    """The RayJob did not reach the awaited state in time. Carries the last state seen."""


class AdmissionTimeout(RayJobTimeout):
    """Kueue did not admit the RayJob in time (it was still suspended on its queue)."""


class ObjectWatcher(Protocol):
    """Where waits get one object's events: an ``AsyncRayObjectsClient`` (its own watch), a
    ``core.kube.shared_watch.SharedWatches`` (one watch per namespace shared by all waiters) or a
    synchronous client's (``core.sync_bridge.ThreadedWatches``)."""

    def watch(
        self, kind: RayKind, namespace: str, *, name: str | None = None, timeout_seconds: float | None = None
    ) -> AsyncIterator[WatchEvent]: ...


class GoneWatcher(Protocol):
    """What ``wait_until_gone`` needs: a GET, and a watch from a resourceVersion (an ``AsyncRayObjectsClient``,
    or a synchronous client's ``core.sync_bridge.ThreadedWatches``)."""

    async def find(self, kind: RayKind, namespace: str, name: str) -> KubeObject | None: ...

    def watch(
        self,
        kind: RayKind,
        namespace: str,
        *,
        name: str | None = None,
        resource_version: str | None = None,
        timeout_seconds: float | None = None,
    ) -> AsyncIterator[WatchEvent]: ...


class StateTracker:
    """One RayJob's events in, the state that satisfies ``until`` out (None while still waiting)."""

    def __init__(
        self,
        namespace: str,
        name: str,
        until: Callable[[RayJobState], bool],
        timeout: float | None = None,
        on_change: Callable[[RayJobState], None] | None = None,
    ) -> None:
        self.namespace, self.name, self.until, self.timeout, self.on_change = namespace, name, until, timeout, on_change
        self.last: RayJobState | None = None
        self._deadline = None if timeout is None else time.monotonic() + timeout

    def observe(self, event: WatchEvent) -> RayJobState | None:
        if event.type == "DELETED":
            raise KubeRayProviderError(f"RayJob {self.namespace}/{self.name} was deleted while being waited on")
        state = RayJobState.from_object(event.object)
        if self.last is None or _changed(self.last, state):
            if self.on_change:
                self.on_change(state)
            self.last = state
        if self.until(state):
            return state
        if self._deadline is not None and time.monotonic() >= self._deadline:
            raise self.timed_out()
        return None

    def timed_out(self) -> RayJobTimeout:
        return RayJobTimeout(
            f"RayJob {self.namespace}/{self.name} did not reach the awaited state within {self.timeout} s", self.last
        )


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
    events = kube.watch(kind, tracker.namespace, name=tracker.name, timeout_seconds=tracker.timeout)
    try:
        async for event in events:
            if (done := tracker.observe(event)) is not None:
                return done
    finally:
        if (close := getattr(events, "aclose", None)) is not None:
            await close()  # now, not when collected: the watch's connection (or thread) goes with it
    raise tracker.timed_out()


async def wait_until_gone(
    kube: GoneWatcher, kind: RayKind, namespace: str, name: str, timeout: float | None
) -> KubeObject | None:
    """After a delete: watch the object from its current version until it is gone. None once gone (or
    already), else the object as it still was when ``timeout`` s had passed."""
    current = await kube.find(kind, namespace, name)
    if current is None:
        return None
    version = (current.get("metadata") or {}).get("resourceVersion")
    events = kube.watch(kind, namespace, name=name, resource_version=version, timeout_seconds=timeout)
    try:
        async for event in events:
            if event.type == "DELETED":
                return None
    finally:
        if (close := getattr(events, "aclose", None)) is not None:
            await close()  # now: the watch's connection (or thread) goes with it
    return current


def _changed(before: RayJobState, after: RayJobState) -> bool:
    return before.describe() != after.describe()
