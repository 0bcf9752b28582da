"""SharedWatches: one namespace watch serves many waiters, each getting only its object's events."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kuberay_provider.core.async_lifecycle import wait_for_rayjob
from kuberay_provider.core.kube import shared_watch
from kuberay_provider.core.kube.shared_watch import PROVIDER_SELECTOR, SharedWatches, held_objects, open_groups
from kuberay_provider.core.kube.watch import WatchEvent
from kuberay_provider.core.naming import identity_labels
from kuberay_provider.core.resources import RAYCLUSTER, RAYJOB, RAYSERVICE
from kuberay_provider.core.status import WaitTarget


def job(name: str, deployment: str = "Running", version: str = "1", ours: bool = True) -> dict[str, Any]:
    labels = identity_labels("0123456789") if ours else {"team": "other"}
    return {
        "metadata": {"name": name, "namespace": "ns", "resourceVersion": version, "labels": labels},
        "status": {
            "jobDeploymentStatus": deployment,
            "jobStatus": "SUCCEEDED" if deployment == "Complete" else "RUNNING",
        },
    }


class NamespaceWatch:
    """A namespace-wide watch the test feeds by hand; counts how often it was opened and closed."""

    def __init__(self) -> None:
        self.opened = 0
        self.closed = 0
        self.watched: list[tuple[str, str]] = []
        self.feed: asyncio.Queue[WatchEvent | Exception] = asyncio.Queue()

    @contextlib.asynccontextmanager
    async def open(self) -> AsyncIterator[NamespaceWatch]:
        self.opened += 1
        try:
            yield self
        finally:
            self.closed += 1

    async def watch(self, kind: Any, namespace: str, **_: Any) -> AsyncIterator[WatchEvent]:
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
        for event in (
            WatchEvent("ADDED", job("a")),
            WatchEvent("ADDED", job("b")),
            WatchEvent("ADDED", job("c")),
            WatchEvent("MODIFIED", job("a", "Complete", "2")),
        ):
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


# --- selecting the provider's own objects -----------------------------------------------------------------


def matches(obj: dict[str, Any], name: str | None, selector: str | None) -> bool:
    metadata = obj["metadata"]
    if name is not None and metadata["name"] != name:
        return False
    if selector:
        key, value = selector.split("=")
        return (metadata.get("labels") or {}).get(key) == value
    return True


class ApiServer:
    """The API server's side of list + watch: it applies a watch's name and label selector as the real one
    does. Counts the GETs and the watches of single objects."""

    def __init__(self, objects: list[dict[str, Any]]) -> None:
        self.objects = {obj["metadata"]["name"]: obj for obj in objects}
        self.selectors: list[tuple[str, str | None]] = []  # (kind, label selector) of namespace watches
        self.alone: list[str] = []  # objects watched one by one
        self.gets = 0
        self._watchers: list[tuple[asyncio.Queue[WatchEvent], str | None, str | None]] = []

    @contextlib.asynccontextmanager
    async def open(self) -> AsyncIterator[ApiServer]:
        yield self

    async def watch(
        self,
        kind: Any,
        namespace: str,
        *,
        name: str | None = None,
        label_selector: str | None = None,
        timeout_seconds: float | None = None,
    ) -> AsyncIterator[WatchEvent]:
        if name is None:
            self.selectors.append((kind.plural, label_selector))
        else:
            self.alone.append(name)
        queue: asyncio.Queue[WatchEvent] = asyncio.Queue()
        self._watchers.append((queue, name, label_selector))
        for obj in list(self.objects.values()):
            if matches(obj, name, label_selector):
                yield WatchEvent("ADDED", obj)
        while True:
            yield await queue.get()

    async def find(self, kind: Any, namespace: str, name: str) -> dict[str, Any] | None:
        self.gets += 1
        return self.objects.get(name)

    def change(self, obj: dict[str, Any], kind: str = "MODIFIED") -> None:
        self.objects[obj["metadata"]["name"]] = obj
        for queue, name, selector in self._watchers:
            if matches(obj, name, selector):
                queue.put_nowait(WatchEvent(kind, obj))


@pytest.fixture
def short_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shared_watch, "FIRST_LIST_GRACE_SECONDS", 0.2)


def test_a_namespace_full_of_other_rayjobs_costs_the_shared_watch_nothing() -> None:
    async def scenario() -> None:
        server = ApiServer([job(f"theirs-{n}", ours=False) for n in range(2000)] + [job("a"), job("b")])
        watches = SharedWatches("src", server.open)
        waiter = asyncio.create_task(collect(watches, "a", 2))
        await settle()
        assert server.selectors == [("rayjobs", PROVIDER_SELECTOR)]
        assert held_objects() == 2  # before: all 2,002 RayJobs of the namespace
        server.change(job("a", "Complete", "2"))
        assert [e.object["metadata"]["resourceVersion"] for e in await waiter] == ["1", "2"]
        assert server.gets == 0 and server.alone == []

    asyncio.run(scenario())


def test_a_wait_on_a_rayjob_another_system_made_gets_a_watch_of_its_own(short_grace: None) -> None:
    async def scenario() -> None:
        server = ApiServer([job(f"theirs-{n}", ours=False) for n in range(100)] + [job("a")])
        watches = SharedWatches("src", server.open)
        ours = asyncio.create_task(collect(watches, "a", 1))
        theirs = asyncio.create_task(collect(watches, "theirs-7", 2))
        await asyncio.sleep(0.4)
        server.change(job("theirs-7", "Complete", "2", ours=False))
        assert len(await ours) == 1
        assert [e.object["metadata"]["resourceVersion"] for e in await theirs] == ["1", "2"]
        assert server.alone == ["theirs-7"] and server.gets == 1 and held_objects() == 1
        late = await collect(watches, "theirs-7", 1)  # the group is old now: a GET at once, no grace
        assert late[0].object["metadata"]["resourceVersion"] == "2" and server.gets == 2

    asyncio.run(scenario())


def test_a_providers_rayjob_created_after_the_watch_opened_comes_through_the_group(short_grace: None) -> None:
    async def scenario() -> None:
        server = ApiServer([job("a")])
        watches = SharedWatches("src", server.open)
        first = asyncio.create_task(collect(watches, "a", 1))
        await asyncio.sleep(0.4)  # the group is past its grace
        server.change(job("b"), "ADDED")  # its event still on the way when the wait for it starts:
        assert len(await first) == 1 and len(await collect(watches, "b", 1)) == 1
        assert server.alone == [] and server.gets == 1  # one GET says it is ours; the group delivers it
        server.change(job("c"), "ADDED")
        await settle()  # delivered before its wait starts: no request at all
        assert len(await collect(watches, "c", 1)) == 1 and server.gets == 1

    asyncio.run(scenario())


def test_rayservices_carry_no_provider_label_and_are_watched_whole() -> None:
    async def scenario() -> None:
        server = ApiServer([job("svc", ours=False)])
        watches = SharedWatches("src", server.open)
        assert len(await collect(watches, "svc", 1, kind=RAYSERVICE)) == 1
        assert server.selectors == [("rayservices", None)] and server.gets == 0

    asyncio.run(scenario())
