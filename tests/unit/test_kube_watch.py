"""Watch through both real clients: list-then-watch, streaming, fieldSelector for one object,
BOOKMARKs, resuming after a dropped stream or a server timeout without losing or duplicating
events, 410 relist (ERROR event and HTTP 410), the overall timeout, and giving up."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from kuberay_provider.core.kube import watch as watch_module
from kuberay_provider.core.kube.errors import ApiUnavailableError, ForbiddenError, KubeApiError
from kuberay_provider.core.kube.retry import RetryPolicy
from kuberay_provider.core.kube.watch import LineSplitter, WatchEvent, WatchQuery, WatchSession
from kuberay_provider.core.resources import RAYJOB
from tests.support.fake_apiserver import FakeApiServer, Store
from tests.support.kube_fixtures import *  # noqa: F403 - fixtures
from tests.support.kube_fixtures import collect, names, rayjob

SAFETY_TIMEOUT = 8.0  # every watch here ends long before this; it only bounds a failing test
_touches = itertools.count(1)


def touch(name: str) -> Callable[[Store], Any]:
    """A server-side change of ``name``'s spec (one MODIFIED event)."""
    number = next(_touches)
    return lambda store: store.patch("rayjobs", "default", name, lambda o: {**o, "spec": {**o["spec"], "n": number}})


def add(name: str, namespace: str = "default") -> Callable[[Store], Any]:
    return lambda store: store.create("rayjobs", namespace, rayjob(name, namespace=namespace))


def remove(name: str) -> Callable[[Store], Any]:
    return lambda store: store.delete("rayjobs", "default", name)


def version_now(apiserver: FakeApiServer) -> str:
    return str(apiserver.call(lambda store: store.resource_version))


def watch_requests(apiserver: FakeApiServer) -> list[dict[str, str]]:
    return [r.query for r in apiserver.requests_to("GET", watch=True)]


async def test_lists_first_then_streams_changes(kube: Any, apiserver: FakeApiServer) -> None:
    await kube.create(rayjob("a"))
    await kube.create(rayjob("b"))
    listed_version = version_now(apiserver)
    apiserver.on_next("watch", lambda store: [touch("a")(store), remove("b")(store), add("c")(store)])

    events = await collect(kube.watch(RAYJOB, "default", timeout_seconds=SAFETY_TIMEOUT), 5)

    assert names(events) == [("ADDED", "a"), ("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b"), ("ADDED", "c")]
    assert all(isinstance(e, WatchEvent) and type(e.object) is dict for e in events)
    first_watch = watch_requests(apiserver)[0]
    assert first_watch["resourceVersion"] == listed_version
    assert first_watch["allowWatchBookmarks"] == "true"


async def test_starts_from_a_given_resource_version(kube: Any, apiserver: FakeApiServer) -> None:
    await kube.create(rayjob("a"))
    after_a = version_now(apiserver)
    await kube.create(rayjob("b"))
    await kube.create(rayjob("c"))

    events = await collect(kube.watch(RAYJOB, "default", resource_version=after_a, timeout_seconds=SAFETY_TIMEOUT), 2)

    assert names(events) == [("ADDED", "b"), ("ADDED", "c")]
    assert apiserver.requests_to("GET", watch=False) == []


async def test_one_object_by_name_uses_a_field_selector(kube: Any, apiserver: FakeApiServer) -> None:
    await kube.create(rayjob("a"))
    await kube.create(rayjob("b"))
    apiserver.on_next("watch", lambda store: [touch("b")(store), touch("a")(store)])

    events = await collect(kube.watch(RAYJOB, "default", name="a", timeout_seconds=SAFETY_TIMEOUT), 2)

    assert names(events) == [("ADDED", "a"), ("MODIFIED", "a")]
    assert {r.query.get("fieldSelector") for r in apiserver.requests_to("GET")} == {"metadata.name=a"}


async def test_label_selector(kube: Any, apiserver: FakeApiServer) -> None:
    await kube.create(rayjob("a", labels={"team": "x"}))
    await kube.create(rayjob("b", labels={"team": "y"}))
    apiserver.on_next("watch", lambda store: [touch("b")(store), touch("a")(store)])

    events = await collect(kube.watch(RAYJOB, "default", label_selector="team=x", timeout_seconds=SAFETY_TIMEOUT), 2)

    assert names(events) == [("ADDED", "a"), ("MODIFIED", "a")]


async def test_resumes_after_a_dropped_stream_without_losing_or_duplicating(
    kube: Any, apiserver: FakeApiServer
) -> None:
    start = version_now(apiserver)
    for name in "abc":
        await kube.create(rayjob(name))
    after_a = str(int(start) + 1)
    apiserver.inject("drop_watch", after_events=1)  # cut after replaying "a"
    apiserver.on_next("watch", touch("a"), skip=1)  # a live change on the resumed stream

    events = await collect(kube.watch(RAYJOB, "default", resource_version=start, timeout_seconds=SAFETY_TIMEOUT), 4)

    assert names(events) == [("ADDED", "a"), ("ADDED", "b"), ("ADDED", "c"), ("MODIFIED", "a")]
    assert [q["resourceVersion"] for q in watch_requests(apiserver)][:2] == [start, after_a]


async def test_bookmarks_are_silent_but_move_the_resume_point(kube: Any, apiserver: FakeApiServer) -> None:
    await kube.create(rayjob("a"))
    other_version: list[str] = []

    def change_elsewhere_bookmark_then_add(store: Store) -> None:
        other = store.create("rayjobs", "other", rayjob("z", namespace="other"))  # invisible to this watch
        other_version.append(other["metadata"]["resourceVersion"])
        store.push_bookmark("rayjobs")
        add("b")(store)

    apiserver.inject("drop_watch", after_events=1)  # the bookmark goes through, then the stream is cut
    apiserver.on_next("watch", change_elsewhere_bookmark_then_add)

    events = await collect(kube.watch(RAYJOB, "default", timeout_seconds=SAFETY_TIMEOUT), 2)

    assert names(events) == [("ADDED", "a"), ("ADDED", "b")]
    assert watch_requests(apiserver)[1]["resourceVersion"] == other_version[0]


async def test_resumes_after_the_server_ends_the_stream(
    kube: Any, apiserver: FakeApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watch_module, "MAX_WATCH_REQUEST_SECONDS", 1.0)  # the server closes each stream after 1 s
    await kube.create(rayjob("a"))
    apiserver.on_next("watch", touch("a"), skip=1)  # only the second stream can deliver it

    events = await collect(kube.watch(RAYJOB, "default", timeout_seconds=SAFETY_TIMEOUT), 2)

    assert names(events) == [("ADDED", "a"), ("MODIFIED", "a")]
    requests = watch_requests(apiserver)
    assert len(requests) >= 2 and requests[0]["timeoutSeconds"] == "1"


@pytest.mark.parametrize("gone_as", ["error_event", "http_410"])
async def test_410_relists_and_emits_what_changed_meanwhile(kube: Any, apiserver: FakeApiServer, gone_as: str) -> None:
    start = version_now(apiserver)
    await kube.create(rayjob("a"))
    await kube.create(rayjob("b"))

    def while_disconnected(store: Store) -> None:
        touch("a")(store)
        remove("b")(store)
        add("c")(store)
        if gone_as == "error_event":
            store.compact()  # the resume's resourceVersion is now too old: an ERROR event with code 410
        else:
            apiserver.inject("gone")  # the resume gets HTTP 410 itself

    apiserver.inject("drop_watch", after_events=2, on_trigger=while_disconnected)
    apiserver.on_next("list", touch("c"))  # right after the relist: must arrive as a live event

    events = await collect(kube.watch(RAYJOB, "default", resource_version=start, timeout_seconds=SAFETY_TIMEOUT), 6)

    assert names(events) == [
        ("ADDED", "a"),
        ("ADDED", "b"),
        ("MODIFIED", "a"),  # the relist: only what the consumer has not seen
        ("ADDED", "c"),
        ("DELETED", "b"),
        ("MODIFIED", "c"),  # and live events continue from the list's resourceVersion
    ]
    assert [r.query.get("watch") for r in apiserver.requests_to("GET")][-3:] == ["true", None, "true"]


async def test_stops_when_the_overall_timeout_elapses(kube: Any, apiserver: FakeApiServer) -> None:
    await kube.create(rayjob("a"))
    started = time.monotonic()

    events = await collect(kube.watch(RAYJOB, "default", timeout_seconds=0.6))

    elapsed = time.monotonic() - started
    assert names(events) == [("ADDED", "a")]
    assert 0.5 <= elapsed < 3.0


async def test_gives_up_when_every_reconnect_fails(make_kube: Any, apiserver: FakeApiServer) -> None:
    kube = await make_kube(retry=RetryPolicy(max_attempts=3, initial=0.01, maximum=0.02))
    apiserver.inject("drop_watch", times=100, after_events=0)

    with pytest.raises(ApiUnavailableError, match="watch on rayjobs.ray.io in namespace 'default' kept failing"):
        await collect(kube.watch(RAYJOB, "default", resource_version="1", timeout_seconds=SAFETY_TIMEOUT))

    assert len(watch_requests(apiserver)) == 3


async def test_permission_errors_surface(kube: Any, apiserver: FakeApiServer) -> None:
    apiserver.call(lambda store: store.forbidden.add(("watch", "rayjobs", "default")))

    with pytest.raises(ForbiddenError, match="may not watch rayjobs.ray.io in namespace 'default'"):
        await collect(kube.watch(RAYJOB, "default", resource_version="1", timeout_seconds=SAFETY_TIMEOUT))


# -- the state machine without I/O -----------------------------------------------------------------


def _job(name: str, version: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default", "resourceVersion": version}}


def _session(clock: Callable[[], float] = time.monotonic, **options: Any) -> WatchSession:
    query = WatchQuery(RAYJOB, "default", **options)
    return WatchSession(query, retry=RetryPolicy(), is_connection_failure=lambda e: False, clock=clock)


def test_line_splitter_holds_partial_lines() -> None:
    splitter = LineSplitter()

    assert splitter.feed(b'{"a":1}\n{"b"') == [b'{"a":1}']
    assert splitter.feed(b":2}\n\n") == [b'{"b":2}']
    assert splitter.feed(b"") == []


def test_session_skips_events_it_already_emitted() -> None:
    session = _session()
    session.on_list({"metadata": {"resourceVersion": "5"}, "items": [_job("a", "5")]})

    replayed = json.dumps({"type": "MODIFIED", "object": _job("a", "5")}).encode()
    assert session.on_line(replayed) == []
    assert session.resource_version == "5"


def test_session_raises_on_error_events_other_than_410() -> None:
    session = _session(resource_version="3")
    status = {"kind": "Status", "code": 500, "reason": "InternalError", "message": "boom"}
    error = json.dumps({"type": "ERROR", "object": status}).encode()

    with pytest.raises(KubeApiError) as caught:
        session.on_line(error)

    assert caught.value.status == 500


def test_session_stops_at_the_deadline() -> None:
    now = [100.0]
    session = _session(resource_version="3", timeout_seconds=2.0, clock=lambda: now[0])

    request = session.next_request()
    assert request is not None and request.query_value("timeoutSeconds") == "2" and request.read_timeout == 2.0
    now[0] = 102.0
    assert session.next_request() is None
