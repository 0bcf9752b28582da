"""The watch state machine shared by the sync and the async client (no I/O happens here).

The clients loop: ask ``next_request()`` (a list or a watch), run it, feed the result back
(``on_list`` / ``on_line`` / ``on_stream_end`` / ``handle_stream_failure``) and yield the events
these return. The session decides everything else:

* no starting resourceVersion → list first, emit the objects as ADDED, then watch from the list's
  resourceVersion (the informer pattern, so nothing between the list and the watch is lost);
* dropped connection or server-side timeout → resume from the last resourceVersion seen (events,
  and BOOKMARKs, which are consumed silently);
* 410 Gone (HTTP 410, or an ERROR event with code 410) → relist and emit the difference from what
  the consumer already saw (ADDED / MODIFIED / DELETED), then continue from the list's version;
* the overall ``timeout_seconds`` elapsed → stop.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from kuberay_provider.core.kube.api_requests import KubeObject, KubeRequest, Target, list_request, watch_request
from kuberay_provider.core.kube.errors import (
    ApiUnavailableError,
    KubeApiError,
    ResourceExpiredError,
    describe_failure,
    error_from_response,
)
from kuberay_provider.core.kube.retry import RetryPolicy, backoff_seconds
from kuberay_provider.core.resources import RayKind

# One watch request lasts at most this long; the apiserver caps it anyway (--min-request-timeout).
MAX_WATCH_REQUEST_SECONDS = 300.0
# Extra read time beyond the server's timeoutSeconds before we call a silent stream dead.
READ_GRACE_SECONDS = 30.0


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED or DELETED
    object: KubeObject


class LineSplitter:
    """Splits a byte stream into complete lines; a partial line is held until its newline arrives
    (and lost, correctly, if the connection drops first: the resume replays that event)."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        *lines, self._pending = (self._pending + chunk).split(b"\n")
        return [line for line in lines if line.strip()]


def _key(obj: KubeObject) -> str:
    metadata = obj.get("metadata") or {}
    return f"{metadata.get('namespace', '')}/{metadata.get('name', '')}"


def _version(obj: KubeObject) -> str | None:
    return (obj.get("metadata") or {}).get("resourceVersion")


@dataclass(frozen=True)
class WatchQuery:
    """What to watch: the arguments of ``watch()``."""

    kind: RayKind
    namespace: str
    name: str | None = None  # one object, by fieldSelector metadata.name=<name>
    label_selector: str | None = None
    resource_version: str | None = None  # None: list first, then watch from the list's version
    timeout_seconds: float | None = None  # overall; None: forever


class WatchSession:
    """The state of one ``watch()`` call across all of its list and watch requests."""

    def __init__(
        self,
        query: WatchQuery,
        *,
        retry: RetryPolicy,
        is_connection_failure: Callable[[BaseException], bool],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kind = query.kind
        self._namespace = query.namespace
        self._target = Target("watch", query.kind.crd_name, query.namespace, query.name)
        self._field_selector = f"metadata.name={query.name}" if query.name else None
        self._label_selector = query.label_selector
        self._resource_version = query.resource_version or None
        self._must_list = self._resource_version is None
        self._retry = retry
        self._is_connection_failure = is_connection_failure
        self._clock = clock
        timeout = query.timeout_seconds
        self._deadline = None if timeout is None else clock() + timeout
        self._known: dict[str, KubeObject] = {}  # what the consumer has been told, by namespace/name
        self._failures = 0  # consecutive dropped streams that delivered nothing
        self._pause = 0.0

    @property
    def resource_version(self) -> str | None:
        return self._resource_version

    def _remaining(self) -> float:
        return math.inf if self._deadline is None else self._deadline - self._clock()

    def next_request(self) -> KubeRequest | None:
        """The next call to make, or None when the overall timeout has elapsed."""
        remaining = self._remaining()
        if remaining <= 0:
            return None
        if self._must_list or self._resource_version is None:
            return list_request(
                self._kind, self._namespace, label_selector=self._label_selector, field_selector=self._field_selector
            )
        per_request = min(remaining, MAX_WATCH_REQUEST_SECONDS)
        return watch_request(
            self._kind,
            self._namespace,
            resource_version=self._resource_version,
            server_timeout=per_request,
            # Near the deadline, reading times out exactly at it; otherwise allow the server its timeout.
            read_timeout=min(remaining, per_request + READ_GRACE_SECONDS),
            label_selector=self._label_selector,
            field_selector=self._field_selector,
        )

    def take_pause(self) -> float:
        """Seconds to wait before the next request (backoff after failed reconnects)."""
        pause, self._pause = self._pause, 0.0
        return max(0.0, min(pause, self._remaining()))

    def on_list(self, listing: KubeObject) -> list[WatchEvent]:
        """Reconcile a (re)list with what the consumer saw; return the events that bring it up to date."""
        self._must_list = False
        self._resource_version = str((listing.get("metadata") or {}).get("resourceVersion") or "") or None
        items = [item for item in listing.get("items") or [] if isinstance(item, dict)]
        events: list[WatchEvent] = []
        current = {_key(item): item for item in items}
        for key, item in current.items():
            seen = self._known.get(key)
            if seen is None:
                events.append(WatchEvent("ADDED", item))
            elif _version(seen) != _version(item):
                events.append(WatchEvent("MODIFIED", item))
        events.extend(WatchEvent("DELETED", obj) for key, obj in self._known.items() if key not in current)
        self._known = current
        return events

    def on_line(self, line: bytes) -> list[WatchEvent]:
        """Decode one line of a watch stream into at most one event for the consumer."""
        self._failures = 0
        event = json.loads(line)
        event_type, obj = event.get("type"), event.get("object") or {}
        if event_type == "ERROR":
            raise self._error_event(obj)
        version = _version(obj)
        if version:
            self._resource_version = version
        if event_type == "BOOKMARK":
            return []
        key = _key(obj)
        if event_type == "DELETED":
            self._known.pop(key, None)
        elif key in self._known and _version(self._known[key]) == version:
            return []  # already emitted (e.g. by a relist)
        else:
            self._known[key] = obj
        return [WatchEvent(str(event_type), obj)]

    def _error_event(self, status: KubeObject) -> KubeApiError:
        code = status.get("code")
        return error_from_response(code if isinstance(code, int) else None, "", status, self._target)

    def on_stream_end(self) -> None:
        """The server closed the stream cleanly (its timeoutSeconds): resume from the last version."""
        self._failures = 0

    def handle_stream_failure(self, exc: BaseException) -> None:
        """Return when the watch can go on after ``exc``; raise when it cannot."""
        if isinstance(exc, ResourceExpiredError):
            self._must_list = True
            return
        if not self._is_connection_failure(exc):
            raise exc
        if self._remaining() <= 0:
            return  # the read timed out at our own deadline
        self._failures += 1
        if self._failures >= self._retry.max_attempts:
            raise ApiUnavailableError(
                f"the watch on {self._kind.crd_name} {self._target.where} kept failing: {self._failures} "
                f"reconnects in a row delivered nothing; last failure: {describe_failure(exc)}",
                target=self._target,
                attempts=self._failures,
            ) from exc
        self._pause = backoff_seconds(self._retry, self._failures)


S = TypeVar("S", covariant=True)


class Tracker(Protocol, Generic[S]):
    """One object's watch events in, what a wait awaits out (None while still waiting); its timeout
    error when the watch ends first. ``core.lifecycle.StateTracker`` (RayJob),
    ``core.clusters.ClusterTracker`` and ``core.services.ServiceTracker``; the sync and async waits
    (``sync_client.wait_tracked``, ``async_lifecycle.wait_tracked``) feed them the same way."""

    namespace: str
    name: str
    timeout: float | None

    def observe(self, event: WatchEvent) -> S | None: ...

    def timed_out(self) -> Exception: ...
