"""The object store: every object, one global resourceVersion counter, and the watch history.

Everything runs on the server's event loop, so a read-modify-write without an ``await`` in the middle
is atomic. Stored objects are never mutated in place: writers store a new dict, which lets watch events
and responses share them safely.
"""

from __future__ import annotations

import asyncio
import builtins
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

StorageKey = tuple[str, str]  # (group, resource)


@dataclass(frozen=True)
class WatchEvent:
    resource_version: int
    type: str  # ADDED, MODIFIED, DELETED
    storage_key: StorageKey
    namespace: str
    object: dict[str, Any]
    # The object before a MODIFIED event, so selector watches can turn it into ADDED / DELETED.
    previous: dict[str, Any] | None = None


class TooOldResourceVersion(Exception):
    """The events after this resourceVersion are no longer all in the history."""

    def __init__(self, requested: int, oldest: int) -> None:
        super().__init__(f"too old resource version: {requested} ({oldest})")


class Subscription:
    """A watcher's queue of live events of one resource (optionally one namespace)."""

    def __init__(self, storage_key: StorageKey, namespace: str | None) -> None:
        self.storage_key = storage_key
        self.namespace = namespace
        self.queue: asyncio.Queue[WatchEvent] = asyncio.Queue()

    def wants(self, event: WatchEvent) -> bool:
        return event.storage_key == self.storage_key and self.namespace in (None, event.namespace)


class ObjectStore:
    def __init__(self, history_limit: int = 10_000) -> None:
        self._objects: dict[StorageKey, dict[tuple[str, str], dict[str, Any]]] = {}
        self._resource_version = 0
        self._history: deque[WatchEvent] = deque(maxlen=history_limit)
        # Every event up to and including this resourceVersion has left the history.
        self._compacted_through = 0
        self._subscriptions: set[Subscription] = set()

    @property
    def resource_version(self) -> int:
        return self._resource_version

    def get(self, key: StorageKey, namespace: str, name: str) -> dict[str, Any] | None:
        return self._objects.get(key, {}).get((namespace, name))

    def list(self, key: StorageKey, namespace: str | None = None) -> list[dict[str, Any]]:
        found = self._objects.get(key, {})
        chosen = (obj for (ns, _), obj in found.items() if namespace is None or ns == namespace)
        return sorted(chosen, key=lambda obj: (obj["metadata"].get("namespace", ""), obj["metadata"]["name"]))

    def all_objects(self) -> Iterator[tuple[StorageKey, dict[str, Any]]]:
        for key, objects in list(self._objects.items()):
            for obj in list(objects.values()):
                yield key, obj

    def save(self, key: StorageKey, obj: dict[str, Any]) -> dict[str, Any]:
        """Store a new or changed object under a fresh resourceVersion and announce it."""
        meta = obj["metadata"]
        location = (meta.get("namespace", ""), meta["name"])
        bucket = self._objects.setdefault(key, {})
        previous = bucket.get(location)
        meta["resourceVersion"] = str(self._next_resource_version())
        bucket[location] = obj
        self._record("MODIFIED" if previous is not None else "ADDED", key, obj, previous)
        return obj

    def remove(self, key: StorageKey, obj: dict[str, Any]) -> dict[str, Any]:
        """Drop an object; its DELETED event carries the deletion's resourceVersion, as a real server's does."""
        meta = obj["metadata"]
        self._objects.get(key, {}).pop((meta.get("namespace", ""), meta["name"]), None)
        gone = {**obj, "metadata": {**meta, "resourceVersion": str(self._next_resource_version())}}
        self._record("DELETED", key, gone)
        return gone

    def _next_resource_version(self) -> int:
        self._resource_version += 1
        return self._resource_version

    def _record(
        self, event_type: str, key: StorageKey, obj: dict[str, Any], previous: dict[str, Any] | None = None
    ) -> None:
        history = self._history
        if history.maxlen is not None and len(history) == history.maxlen:
            self._compacted_through = history[0].resource_version
        event = WatchEvent(
            int(obj["metadata"]["resourceVersion"]),
            event_type,
            key,
            obj["metadata"].get("namespace", ""),
            obj,
            previous,
        )
        history.append(event)
        for subscription in self._subscriptions:
            if subscription.wants(event):
                subscription.queue.put_nowait(event)

    def compact(self) -> None:
        """Forget the whole history (as etcd compaction does); older watches then get 410 Gone."""
        if self._history:
            self._compacted_through = self._history[-1].resource_version
        self._history.clear()

    # builtins.list: in this class body, a bare ``list`` is the method above.
    def subscribe(
        self, key: StorageKey, namespace: str | None, since: int
    ) -> tuple[builtins.list[WatchEvent], Subscription]:
        """The recorded events after ``since`` plus a subscription to everything later."""
        if since < self._compacted_through:
            raise TooOldResourceVersion(since, self._compacted_through + 1)
        subscription = Subscription(key, namespace)
        backlog = [e for e in self._history if e.resource_version > since and subscription.wants(e)]
        self._subscriptions.add(subscription)
        return backlog, subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)
