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

Memory: the group keeps the latest version of every object of its kind in the namespace (a few KB each),
which is what lets a late waiter start from the current state without a request of its own.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import AsyncContextManager, AsyncIterator, Callable, Hashable, Protocol

from kuberay_provider.core.kube.watch import WatchEvent
from kuberay_provider.core.resources import RayKind

DEFAULT_LINGER_SECONDS = 30.0


class NamespaceWatcher(Protocol):
    """What a group needs of its client: ``AsyncRayObjectsClient.watch`` over a whole namespace."""

    def watch(self, kind: RayKind, namespace: str) -> AsyncIterator[WatchEvent]: ...


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


_groups: dict[_GroupKey, "_Group"] = {}


class _Group:
    def __init__(self, key: _GroupKey, open_client: OpenClient, linger: float) -> None:
        self.key = key
        self.linger = linger
        self.latest: dict[str, dict] = {}
        self.waiters: dict[str, set[asyncio.Queue[WatchEvent | _Failed]]] = defaultdict(set)
        self.waiting = 0
        self.events_seen = 0
        self._idle_timer: asyncio.TimerHandle | None = None
        self._task = asyncio.create_task(self._run(open_client), name=f"shared-watch-{key.kind.plural}-{key.namespace}")

    async def _run(self, open_client: OpenClient) -> None:
        try:
            async with open_client() as kube:
                async for event in kube.watch(self.key.kind, self.key.namespace):
                    self._dispatch(event)
            raise RuntimeError(f"the shared watch on {self.key.kind.plural} in {self.key.namespace} ended")
        except Exception as exc:  # noqa: BLE001 - every waiter of the group gets it, as its own watch would raise it
            for queues in self.waiters.values():
                for queue in queues:
                    queue.put_nowait(_Failed(exc))
        finally:
            self._retire()  # also when cancelled: by the idle timer, or by the loop shutting down

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
        try:
            while True:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return
                try:
                    item = await asyncio.wait_for(queue.get(), remaining)
                except asyncio.TimeoutError:
                    return
                if isinstance(item, _Failed):
                    raise item.error
                yield item
        finally:
            group.unsubscribe(name, queue)


def open_groups() -> int:
    """How many shared watches are open on the running loop (for tests and diagnostics)."""
    loop = asyncio.get_running_loop()
    return sum(1 for key in _groups if key.loop is loop)
