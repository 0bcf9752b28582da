"""SharedWatches: one namespace watch serves many waiters, each getting only its object's events."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator

import pytest

from kuberay_provider.core.async_lifecycle import wait_for_rayjob
from kuberay_provider.core.kube.shared_watch import SharedWatches, open_groups
from kuberay_provider.core.kube.watch import WatchEvent
from kuberay_provider.core.resources import RAYCLUSTER, RAYJOB
from kuberay_provider.core.status import WaitTarget


def job(name: str, deployment: str = "Running", version: str = "1") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": version},
            "status": {"jobDeploymentStatus": deployment, "jobStatus": "SUCCEEDED" if deployment == "Complete" else "RUNNING"}}


class NamespaceWatch:
    """A namespace-wide watch the test feeds by hand; counts how often it was opened and closed."""

    def __init__(self) -> None:
        self.opened = 0
        self.closed = 0
        self.watched: list[tuple[str, str]] = []
        self.feed: asyncio.Queue[WatchEvent | Exception] = asyncio.Queue()

    @contextlib.asynccontextmanager
    async def open(self) -> AsyncIterator["NamespaceWatch"]:
        self.opened += 1
        try:
            yield self
        finally:
            self.closed += 1

    async def watch(self, kind: Any, namespace: str) -> AsyncIterator[WatchEvent]:
        self.watched.append((kind.plural, namespace))
        while True:
            item = await self.feed.get()
            if isinstance(item, Exception):
                raise item
            yield item


async def collect(watches: SharedWatches, name: str, count: int, kind: Any = RAYJOB) -> list[WatchEvent]:
    events = []
    async for event in watches.watch(kind, "ns", name=name, timeout_seconds=5):
        events.append(event)
        if len(events) == count:
            break
    return events


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_waiters_share_one_watch_and_get_only_their_objects_events():
    async def scenario() -> None:
        upstream = NamespaceWatch()
        watches = SharedWatches("src", upstream.open)
        a = asyncio.create_task(collect(watches, "a", 2))
        b = asyncio.create_task(collect(watches, "b", 1))
        await settle()
        for event in (WatchEvent("ADDED", job("a")), WatchEvent("ADDED", job("b")), WatchEvent("ADDED", job("c")),
                      WatchEvent("MODIFIED", job("a", "Complete", "2"))):
            upstream.feed.put_nowait(event)
        got_a, got_b = await asyncio.gather(a, b)
        assert [(e.type, e.object["metadata"]["resourceVersion"]) for e in got_a] == [("ADDED", "1"), ("MODIFIED", "2")]
        assert [e.object["metadata"]["name"] for e in got_b] == ["b"]
        assert upstream.opened == 1 and upstream.watched == [("rayjobs", "ns")]

    asyncio.run(scenario())


def test_a_late_waiter_starts_from_the_latest_version():
    async def scenario() -> None:
        upstream = NamespaceWatch()
        watches = SharedWatches("src", upstream.open)
        first = asyncio.create_task(collect(watches, "a", 2))
        await settle()
        upstream.feed.put_nowait(WatchEvent("ADDED", job("a")))
        upstream.feed.put_nowait(WatchEvent("MODIFIED", job("a", "Complete", "2")))
        await first
        late = await collect(watches, "a", 1)  # joins after the change: handed the object as it is now
        assert late[0].object["metadata"]["resourceVersion"] == "2" and upstream.opened == 1

    asyncio.run(scenario())


def test_deleted_objects_are_forwarded_and_forgotten():
    async def scenario() -> None:
        upstream = NamespaceWatch()
        watches = SharedWatches("src", upstream.open)
        waiter = asyncio.create_task(collect(watches, "a", 2))
        await settle()
        upstream.feed.put_nowait(WatchEvent("ADDED", job("a")))
        upstream.feed.put_nowait(WatchEvent("DELETED", job("a")))
        assert [e.type for e in await waiter] == ["ADDED", "DELETED"]
        events = []
        async for event in watches.watch(RAYJOB, "ns", name="a", timeout_seconds=0.1):
            events.append(event)
        assert events == []  # nothing stale handed to a new waiter

    asyncio.run(scenario())


def test_wait_for_rayjob_on_a_shared_watch_and_its_timeout():
    async def scenario() -> None:
        upstream = NamespaceWatch()
        watches = SharedWatches("src", upstream.open)
        upstream.feed.put_nowait(WatchEvent("ADDED", job("a", "Complete")))
        state = await wait_for_rayjob(watches, "ns", "a", WaitTarget.TERMINAL, timeout=5)
        assert state.is_terminal
        from kuberay_provider.core.lifecycle import RayJobTimeout

        with pytest.raises(RayJobTimeout):
            await wait_for_rayjob(watches, "ns", "never", WaitTarget.TERMINAL, timeout=0.1)

    asyncio.run(scenario())


def test_a_failed_watch_fails_every_waiter_and_the_next_waiter_opens_a_new_one():
    async def scenario() -> None:
        upstream = NamespaceWatch()
        watches = SharedWatches("src", upstream.open)
        waiters = [asyncio.create_task(collect(watches, name, 1)) for name in ("a", "b")]
        await settle()
        upstream.feed.put_nowait(PermissionError("forbidden: cannot watch rayjobs"))
        for outcome in await asyncio.gather(*waiters, return_exceptions=True):
            assert isinstance(outcome, PermissionError)
        assert open_groups() == 0 and upstream.closed == 1
        again = asyncio.create_task(collect(watches, "a", 1))
        await settle()
        upstream.feed.put_nowait(WatchEvent("ADDED", job("a")))
        assert len(await again) == 1 and upstream.opened == 2

    asyncio.run(scenario())


def test_the_watch_closes_after_its_last_waiter_lingers_past_and_kinds_do_not_mix():
    async def scenario() -> None:
        upstream = NamespaceWatch()
        watches = SharedWatches("src", upstream.open, linger=0.05)
        jobs = asyncio.create_task(collect(watches, "a", 1))
        clusters = asyncio.create_task(collect(watches, "a", 1, kind=RAYCLUSTER))
        await settle()
        assert open_groups() == 2  # one per kind
        jobs.cancel()
        clusters.cancel()
        await asyncio.gather(jobs, clusters, return_exceptions=True)
        assert open_groups() == 2  # lingering: a wait that comes right back reuses it
        await asyncio.sleep(0.2)
        assert open_groups() == 0 and upstream.closed == 2

    asyncio.run(scenario())


def test_a_wait_needs_an_object_name():
    async def scenario() -> None:
        with pytest.raises(ValueError, match="name="):
            async for _ in SharedWatches("src", NamespaceWatch().open).watch(RAYJOB, "ns"):
                pass

    asyncio.run(scenario())
