"""The controller loop: watches feed a delaying work queue; workers reconcile one key at a time each."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from .api import PODS, RAYCLUSTERS, RAYJOBS, RAYSERVICES, ClusterAPI, Resource
from .kuberay import RAY_CLUSTER_LABEL
from .reconciler import Controller

log = logging.getLogger(__name__)

Key = tuple[str, str, str]  # (kind, namespace, name)
ERROR_REQUEUE_SECONDS = 1.0
WATCH_RETRY_SECONDS = 1.0


class WorkQueue:
    """controller-runtime's rate-limited queue, reduced: a key is due at a time, earliest wins, and a key
    is never handed to two workers at once (re-adds while busy run after it is done)."""

    def __init__(self) -> None:
        self._due: dict[Key, float] = {}
        self._busy: set[Key] = set()
        self._changed = asyncio.Event()

    def add(self, key: Key, delay: float = 0.0) -> None:
        due = asyncio.get_running_loop().time() + max(delay, 0.0)
        if key not in self._due or due < self._due[key]:
            self._due[key] = due
            self._changed.set()

    async def get(self) -> Key:
        loop = asyncio.get_running_loop()
        while True:
            ready = [(due, key) for key, due in self._due.items() if key not in self._busy]
            wait = None
            if ready:
                due, key = min(ready)
                if due <= loop.time():
                    del self._due[key]
                    self._busy.add(key)
                    return key
                wait = due - loop.time()
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=wait)

    def done(self, key: Key) -> None:
        self._busy.discard(key)
        self._changed.set()


def _key(obj: Mapping[str, Any], kind: str) -> Key:
    meta = obj.get("metadata") or {}
    return (kind, meta.get("namespace", ""), meta.get("name", ""))


def _owner_keys(obj: Mapping[str, Any]) -> list[Key]:
    """Owns(): a change to an owned object requeues its controller owner."""
    meta = obj.get("metadata") or {}
    return [
        (ref["kind"], meta.get("namespace", ""), ref["name"])
        for ref in meta.get("ownerReferences") or []
        if ref.get("controller") and ref.get("kind") in (RAYJOBS.kind, RAYSERVICES.kind, RAYCLUSTERS.kind)
    ]


async def _watch_forever(api: ClusterAPI, resource: Resource, controller: Controller, queue: WorkQueue) -> None:
    while True:
        try:
            async for event in api.watch(resource):
                obj = event.object
                if resource is PODS:
                    cluster = ((obj.get("metadata") or {}).get("labels") or {}).get(RAY_CLUSTER_LABEL)
                    if cluster:
                        queue.add((RAYCLUSTERS.kind, obj["metadata"].get("namespace", ""), cluster))
                    continue
                if event.type == "DELETED":
                    await controller.handle_deleted(resource.kind, obj)
                else:
                    queue.add(_key(obj, resource.kind))
                for owner in _owner_keys(obj):
                    queue.add(owner)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("watch of %s failed: %s", resource.plural, exc)
        await asyncio.sleep(WATCH_RETRY_SECONDS)


async def _resync_forever(api: ClusterAPI, queue: WorkQueue, period: float) -> None:
    """Requeue everything now and then, as the informers' resync does."""
    while True:
        await asyncio.sleep(period)
        for resource in (RAYJOBS, RAYCLUSTERS, RAYSERVICES):
            try:
                for obj in await api.list(resource):
                    queue.add(_key(obj, resource.kind))
            except Exception as exc:
                log.warning("resync of %s failed: %s", resource.plural, exc)


async def _work_forever(controller: Controller, queue: WorkQueue) -> None:
    while True:
        key = await queue.get()
        try:
            delay = await controller.reconcile(*key)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("reconcile of %s %s/%s failed", *key)
            delay = ERROR_REQUEUE_SECONDS
        finally:
            queue.done(key)
        if delay is not None:
            queue.add(key, delay)


async def run_loop(
    api: ClusterAPI, controller: Controller, stop: asyncio.Event, *, resync_seconds: float, workers: int
) -> None:
    queue = WorkQueue()
    tasks = [
        asyncio.create_task(_watch_forever(api, r, controller, queue))
        for r in (RAYJOBS, RAYCLUSTERS, RAYSERVICES, PODS)
    ]
    tasks.append(asyncio.create_task(_resync_forever(api, queue, resync_seconds)))
    tasks += [asyncio.create_task(_work_forever(controller, queue)) for _ in range(workers)]
    try:
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
