"""One watch per (connection, kind, namespace), shared by every waiter on the same event loop.

A triggerer holding a thousand deferred RayJob waits would otherwise hold a thousand API clients and a
thousand watch connections. Here the first waiter of a group opens one namespace-wide list + watch
(``AsyncRayObjectsClient.watch``: resumes from resourceVersion, re-lists after 410, retries with
backoff); later waiters subscribe to it. Each event goes only to the waiters of that object (a dict
lookup, not a broadcast), and a waiter that joins late is handed the object's latest version at once,
so it never waits for a change that already happened. The watch closes ``linger`` seconds after its
last waiter leaves, so a task that defers again right away (started, then terminal) reuses it.

Why not Airflow 3.3's shared streams (``BaseEventTrigger.shared_stream_key``): they serve asset
watchers, hand every raw event to every subscriber (a thousand wake-ups per event here), and a late
subscriber sees only later events, not the current state a deferred wait needs first.

Memory: the group keeps the latest version of each object it watches (a few KB each; the watch's own
record of what it delivered holds the same dicts, not copies), which is what lets a late waiter start
from the current state without a request of its own. RayJobs and RayClusters are watched by the label
the provider puts on what it creates (``app.kubernetes.io/managed-by=kuberay-provider``), so a namespace
full of other RayJobs costs nothing. A wait on an object outside that selection (a sensor on a RayJob
another system made) is noticed (the object did not come with the group's first list, and one GET shows
it unlabelled or absent) and gets a watch on that one object of its own.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import AbstractAsyncContextManager as AsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from kuberay_provider.core.kube.watch import WatchEvent
from kuberay_provider.core.naming import LABEL_MANAGED_BY, MANAGED_BY_VALUE
from kuberay_provider.core.resources import RAYCLUSTER, RAYJOB, RayKind

DEFAULT_LINGER_SECONDS = 30.0
PROVIDER_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY_VALUE}"
# The kinds the provider labels when it creates them (RayServices it does not): their groups select.
SELECTED_KINDS = frozenset({RAYJOB.plural, RAYCLUSTER.plural})
# How long a young group's first list may take to bring a waiter's object before one GET asks about it.
FIRST_LIST_GRACE_SECONDS = 2.0


class NamespaceWatcher(Protocol):
    """What a group needs of its client (``AsyncRayObjectsClient``): its watch, over a namespace or one
    object, and a GET for an object the group's selection may not include."""

    def watch(
        self,
        kind: RayKind,
        namespace: str,
        *,
        name: str | None = None,
        label_selector: str | None = None,
        timeout_seconds: float | None = None,
    ) -> AsyncIterator[WatchEvent]: ...

    async def find(self, kind: RayKind, namespace: str, name: str) -> dict[str, Any] | None: ...


OpenClient = Callable[[], AsyncContextManager[NamespaceWatcher]]


@dataclass(frozen=True)
class _GroupKey:
    loop: asyncio.AbstractEventLoop
    source: Hashable  # who the client is, e.g. ("airflow", conn_id): waiters of one source share
    kind: RayKind
    namespace: str


@dataclass(frozen=True)
class _Failed:
    error: BaseException


_groups: dict[_GroupKey, _Group] = {}


class _Group:
    def __init__(self, key: _GroupKey, open_client: OpenClient, linger: float) -> None:
        self.key = key
        self.linger = linger
        self.latest: dict[str, dict[str, Any]] = {}
        self.waiters: dict[str, set[asyncio.Queue[WatchEvent | _Failed]]] = defaultdict(set)
        self.waiting = 0
        self.events_seen = 0
        self.selector = PROVIDER_SELECTOR if key.kind.plural in SELECTED_KINDS else None
        self.opened_at = time.monotonic()
        self.kube: NamespaceWatcher | None = None  # the group's client while it is open
        self._open = asyncio.Event()  # set once the client is open, or the group has ended
        self._idle_timer: asyncio.TimerHandle | None = None
        self._task = asyncio.create_task(self._run(open_client), name=f"shared-watch-{key.kind.plural}-{key.namespace}")

    async def _run(self, open_client: OpenClient) -> None:
        try:
            async with open_client() as kube:
                self.kube = kube
                self._open.set()
                async for event in kube.watch(self.key.kind, self.key.namespace, label_selector=self.selector):
                    self._dispatch(event)
            raise RuntimeError(f"the shared watch on {self.key.kind.plural} in {self.key.namespace} ended")
        except Exception as exc:
            for queues in self.waiters.values():
                for queue in queues:
                    queue.put_nowait(_Failed(exc))
        finally:
            self.kube = None
            self._open.set()
            self._retire()  # also when cancelled: by the idle timer, or by the loop shutting down

    async def selects(self, name: str) -> bool:
        """Whether the object ``name``, which the group has not delivered yet, is (or would be) among the
        group's objects: one GET, once the group's client is open. Raises what the group failed with."""
        await self._open.wait()
        kube = self.kube
        if kube is None:
            raise RuntimeError(f"the shared watch on {self.key.kind.plural} in {self.key.namespace} ended")
        found = await kube.find(self.key.kind, self.key.namespace, name)
        labels = ((found or {}).get("metadata") or {}).get("labels") or {}
        return found is not None and labels.get(LABEL_MANAGED_BY) == MANAGED_BY_VALUE

    def _dispatch(self, event: WatchEvent) -> None:
        self.events_seen += 1
        name = str((event.object.get("metadata") or {}).get("name", ""))
        if event.type == "DELETED":
            self.latest.pop(name, None)
        else:
            self.latest[name] = event.object
        for queue in self.waiters.get(name, ()):
            queue.put_nowait(event)

    def _retire(self) -> None:
        """Out of the registry: the next waiter opens a new group."""
        if _groups.get(self.key) is self:
            del _groups[self.key]

    def subscribe(self, name: str) -> asyncio.Queue[WatchEvent | _Failed]:
        queue: asyncio.Queue[WatchEvent | _Failed] = asyncio.Queue()
        self.waiters[name].add(queue)
        self.waiting += 1
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if name in self.latest:
            queue.put_nowait(WatchEvent("ADDED", self.latest[name]))
        return queue

    def unsubscribe(self, name: str, queue: asyncio.Queue[WatchEvent | _Failed]) -> None:
        queues = self.waiters.get(name)
        if queues is not None:
            queues.discard(queue)
            if not queues:
                del self.waiters[name]
        self.waiting -= 1
        if self.waiting == 0 and not self._task.done():
            self._idle_timer = asyncio.get_running_loop().call_later(self.linger, self._close_if_idle)

    def _close_if_idle(self) -> None:
        self._idle_timer = None
        if self.waiting == 0:
            self._retire()
            self._task.cancel()


@dataclass(frozen=True)
class SharedWatches:
    """A watch source for the waits (``wait_for_rayjob`` and friends) with ``AsyncRayObjectsClient.watch``'s
    signature for one object; every waiter with the same ``source`` on this loop shares one watch per
    kind and namespace. ``open_client`` is called once per group, when its first waiter arrives."""

    source: Hashable
    open_client: OpenClient
    linger: float = DEFAULT_LINGER_SECONDS

    def _group(self, kind: RayKind, namespace: str) -> _Group:
        key = _GroupKey(asyncio.get_running_loop(), self.source, kind, namespace)
        group = _groups.get(key)
        if group is None:
            group = _groups[key] = _Group(key, self.open_client, self.linger)
        return group

    async def watch(
        self, kind: RayKind, namespace: str, *, name: str | None = None, timeout_seconds: float | None = None
    ) -> AsyncIterator[WatchEvent]:
        """The events of ``namespace/name`` (its latest version first, if it exists), until
        ``timeout_seconds`` pass; raises what the shared watch could not recover from."""
        if name is None:
            raise ValueError("a shared watch serves waits on one object: pass name=")
        deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
        group = self._group(kind, namespace)
        queue = group.subscribe(name)
        subscribed = True
        try:
            first = None
            if group.selector is not None and name not in group.latest:
                first, inside = await self._place(group, name, queue, deadline)
                if not inside:
                    group.unsubscribe(name, queue)
                    subscribed = False
                    async for event in self._watch_alone(kind, namespace, name, deadline):
                        yield event
                    return
            while True:
                item = first if first is not None else await self._next(queue, deadline)
                first = None
                if item is None:
                    return
                if isinstance(item, _Failed):
                    raise item.error
                yield item
        finally:
            if subscribed:
                group.unsubscribe(name, queue)

    @staticmethod
    async def _next(queue: asyncio.Queue[WatchEvent | _Failed], deadline: float | None) -> WatchEvent | _Failed | None:
        """The queue's next item, or None once ``deadline`` passed."""
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return None
        try:
            return await asyncio.wait_for(queue.get(), remaining)
        except TimeoutError:
            return None

    async def _place(
        self, group: _Group, name: str, queue: asyncio.Queue[WatchEvent | _Failed], deadline: float | None
    ) -> tuple[WatchEvent | _Failed | None, bool]:
        """Whether the group's selection includes ``name``: (its first item if one came, True), or (None,
        False) when the object is outside it. A young group gets until its first list may have landed."""
        grace = group.opened_at + FIRST_LIST_GRACE_SECONDS - time.monotonic()
        if grace > 0:
            cut = time.monotonic() + grace
            first = await self._next(queue, cut if deadline is None else min(cut, deadline))
            if first is not None:
                return first, True
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return None, True  # out of time either way: the caller's loop ends the wait
        try:
            return None, await asyncio.wait_for(group.selects(name), remaining)
        except TimeoutError:
            return None, True

    async def _watch_alone(
        self, kind: RayKind, namespace: str, name: str, deadline: float | None
    ) -> AsyncIterator[WatchEvent]:
        """A watch of one object outside the groups' selection, on a client of its own."""
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        async with self.open_client() as kube:
            async for event in kube.watch(kind, namespace, name=name, timeout_seconds=remaining):
                yield event


def open_groups() -> int:
    """How many shared watches are open on the running loop (for tests and diagnostics)."""
    loop = asyncio.get_running_loop()
    return sum(1 for key in _groups if key.loop is loop)


def held_objects() -> int:
    """How many objects the shared watches of the running loop hold (for tests and diagnostics)."""
    loop = asyncio.get_running_loop()
    return sum(len(group.latest) for key, group in _groups.items() if key.loop is loop)
