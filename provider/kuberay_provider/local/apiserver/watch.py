"""``?watch=true``: a stream of JSON lines ``{"type": ..., "object": ...}`` as the API server sends them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .errors import bad_request, gone
from .registry import ResourceType
from .store import ObjectStore, Subscription, TooOldResourceVersion, WatchEvent

Matcher = Callable[[dict[str, Any]], bool]
Render = Callable[[dict[str, Any]], dict[str, Any]]
# How often a watch checks for the server stopping and for a due bookmark.
TICK_SECONDS = 0.25
INITIAL_EVENTS_END_ANNOTATION = "k8s.io/initial-events-end"


@dataclass(frozen=True)
class WatchRequest:
    rtype: ResourceType
    namespace: str | None
    matches: Matcher
    render: Render
    resource_version: str
    timeout_seconds: float
    bookmarks: bool
    # WatchList (sendInitialEvents=true): the current objects, then a bookmark marking their end.
    send_initial_events: bool = False


def selected_change(event: WatchEvent, matches: Matcher) -> str | None:
    """The event type a selector watch reports: objects entering or leaving the selection are ADDED / DELETED."""
    now = matches(event.object)
    if event.type == "MODIFIED" and event.previous is not None:
        before = matches(event.previous)
        if before and now:
            return "MODIFIED"
        return "DELETED" if before else ("ADDED" if now else None)
    return event.type if now else None


def _line(event_type: str, obj: dict[str, Any]) -> bytes:
    return json.dumps({"type": event_type, "object": obj}, separators=(",", ":")).encode() + b"\n"


def _bookmark(watch: WatchRequest, resource_version: int, initial_events_end: bool = False) -> bytes:
    metadata: dict[str, Any] = {"resourceVersion": str(resource_version)}
    if initial_events_end:
        metadata["annotations"] = {INITIAL_EVENTS_END_ANNOTATION: "true"}
    return _line("BOOKMARK", {"kind": watch.rtype.kind, "apiVersion": watch.rtype.api_version, "metadata": metadata})


Events = list[tuple[str, dict[str, Any]]]


def _start(
    store: ObjectStore, watch: WatchRequest, current: Callable[[], list[dict[str, Any]]]
) -> tuple[Events, Subscription]:
    """What to send first, and the subscription for what follows (atomically: no await in between)."""
    key = watch.rtype.storage_key
    if watch.resource_version in ("", "0") or watch.send_initial_events:
        # "Get state and start at most recent": synthetic ADDED events for what exists now.
        _, subscription = store.subscribe(key, watch.namespace, store.resource_version)
        return [("ADDED", obj) for obj in current()], subscription
    try:
        since = int(watch.resource_version)
    except ValueError:
        raise bad_request(f"invalid resource version: {watch.resource_version!r}") from None
    backlog, subscription = store.subscribe(key, watch.namespace, since)
    initial = []
    for event in backlog:
        event_type = selected_change(event, watch.matches)
        if event_type:
            initial.append((event_type, event.object))
    return initial, subscription


async def serve_watch(
    request: web.Request,
    store: ObjectStore,
    watch: WatchRequest,
    current: Callable[[], list[dict[str, Any]]],
    stopping: asyncio.Event,
    bookmark_interval: float,
) -> web.StreamResponse:
    loop = asyncio.get_running_loop()
    try:
        initial, subscription = _start(store, watch, current)
    except TooOldResourceVersion as too_old:
        initial, subscription = [("ERROR", gone(str(too_old)).to_status())], None
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json", "Cache-Control": "no-cache"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    try:
        for event_type, obj in initial:
            await response.write(_line(event_type, obj if event_type == "ERROR" else watch.render(obj)))
        if subscription is not None and watch.send_initial_events:
            await response.write(_bookmark(watch, store.resource_version, initial_events_end=True))
        if subscription is not None:
            deadline = loop.time() + watch.timeout_seconds
            await _follow(request, response, store, subscription, watch, stopping, bookmark_interval, deadline)
        await response.write_eof()
    except (ConnectionResetError, asyncio.CancelledError):
        pass  # the client went away
    finally:
        if subscription is not None:
            store.unsubscribe(subscription)
    return response


async def _follow(
    request: web.Request,
    response: web.StreamResponse,
    store: ObjectStore,
    subscription: Subscription,
    watch: WatchRequest,
    stopping: asyncio.Event,
    bookmark_interval: float,
    deadline: float,
) -> None:
    loop = asyncio.get_running_loop()
    last_bookmark = loop.time()
    while not stopping.is_set():
        remaining = deadline - loop.time()
        transport = request.transport
        if remaining <= 0 or transport is None or transport.is_closing():
            return  # timed out, or the client hung up (a quiet watch would otherwise never notice)
        try:
            event = await asyncio.wait_for(subscription.queue.get(), timeout=min(remaining, TICK_SECONDS))
        except TimeoutError:
            if watch.bookmarks and subscription.queue.empty() and loop.time() - last_bookmark >= bookmark_interval:
                # Every event up to the store's current version has been sent: safe to resume from there.
                await response.write(_bookmark(watch, store.resource_version))
                last_bookmark = loop.time()
            continue
        event_type = selected_change(event, watch.matches)
        if event_type:
            await response.write(_line(event_type, watch.render(event.object)))
