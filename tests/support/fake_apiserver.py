"""A small fake of the Kubernetes API server for unit tests of the kube clients.

It runs an aiohttp app in a background thread on 127.0.0.1 (random port) and serves just enough of
the API for ray.io/v1 custom objects — create (incl. generateName and dryRun=All), get, list, merge
and JSON patch, delete, watch (resourceVersions, BOOKMARKs, timeoutSeconds, fieldSelector
metadata.name, equality labelSelector, a short event history so an old resourceVersion gets 410) —
plus a Service GET, a CRD GET and an echoing service proxy (``.../services/{svc}:{port}/proxy/...``).
Every request needs ``Authorization: Bearer <token>``.

``inject`` arms faults for the next N matching requests: ``503``/``429`` (with ``Retry-After: 0``),
``500``, ``400``, ``reset`` (connection reset before the request is handled), ``reset_after`` (the
request takes effect, then the connection is reset: a lost response), ``gone`` (HTTP 410) and
``drop_watch`` (a watch stream is cut after ``after_events`` events).

This is a unit-test boundary fake, not a control plane: no admission, no finalizers, no controllers.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import re
import secrets
import socket
import struct
import threading
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiohttp import web

from kuberay_provider.local.apiserver.patching import merge_patch  # RFC 7386, as the local API server applies it

DEFAULT_TOKEN = "fake-apiserver-token-7f3a9c2e51"
RAY_PLURALS = {"rayjobs": "RayJob", "rayclusters": "RayCluster", "rayservices": "RayService"}
FAULT_KINDS = frozenset({"503", "429", "500", "400", "reset", "reset_after", "gone", "drop_watch"})
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
T = TypeVar("T")
Obj = dict[str, Any]


class StatusError(Exception):
    """Answered as a Kubernetes ``Status`` object."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        causes: list[Obj] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.causes = code, reason, message, causes
        self.headers = headers or {}

    def response(self) -> web.Response:
        status: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.causes is not None:
            status["details"] = {"causes": self.causes}
        return web.json_response(status, status=self.code, headers=self.headers)


@dataclass
class Fault:
    kind: str
    times: int
    method: str | None = None
    watch: bool | None = None  # True: only watch requests; False: never watch requests; None: any
    after_events: int = 0
    on_trigger: Callable[[Store], None] | None = None  # runs in the server loop when the fault fires

    def matches(self, method: str, is_watch: bool) -> bool:
        return (self.method in (None, method)) and (self.watch in (None, is_watch))


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    content_type: str
    body: Any


@dataclass(frozen=True)
class Event:
    resource_version: int
    plural: str
    type: str
    object: Obj


def _labels_match(obj: Obj, selector: str | None) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for term in filter(None, (selector or "").split(",")):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        else:
            key, value = re.split(r"==?", term, maxsplit=1)
            if labels.get(key.strip()) != value.strip():
                return False
    return True


def _json_patch(document: Obj, operations: list[Obj]) -> Obj:
    """RFC 6902 JSON patch (add, replace, remove, test) on dict/list paths."""
    document = copy.deepcopy(document)
    for operation in operations:
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in operation["path"].split("/")[1:]]
        node: Any = document
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key: Any = int(last) if isinstance(node, list) and last != "-" else last
        op = operation["op"]
        if op == "test" and node.get(key) != operation["value"]:
            raise StatusError(422, "Invalid", f"test operation failed at {operation['path']}")
        if op in ("add", "replace"):
            if isinstance(node, list) and op == "add":
                node.insert(len(node) if key == "-" else key, operation["value"])
            else:
                node[key] = operation["value"]
        elif op == "remove":
            del node[key]
    return document


class Store:
    """All server state. Touched only from the server's event loop."""

    def __init__(self, history_limit: int) -> None:
        self.history_limit = history_limit
        self.reset()

    def reset(self) -> None:
        self.objects: dict[tuple[str, str, str], Obj] = {}
        self.services: dict[tuple[str, str], Obj] = {}
        self.forbidden: set[tuple[str, str, str]] = set()  # (verb, plural, namespace)
        self.history: deque[Event] = deque()
        self.resource_version = 100
        self.compacted_through = 0
        self.subscribers: set[asyncio.Queue[Event]] = set()
        self.delete_options: list[Obj] = []

    # -- mutations (each one is an event) --------------------------------------------------------
    def _emit(self, plural: str, event_type: str, obj: Obj) -> None:
        event = Event(self.resource_version, plural, event_type, copy.deepcopy(obj))
        self.history.append(event)
        while len(self.history) > self.history_limit:
            self.compacted_through = self.history.popleft().resource_version
        for queue in self.subscribers:
            queue.put_nowait(event)

    def _next_version(self, obj: Obj) -> None:
        self.resource_version += 1
        obj["metadata"]["resourceVersion"] = str(self.resource_version)

    def create(self, plural: str, namespace: str, obj: Obj, *, dry_run: bool = False) -> Obj:
        obj = copy.deepcopy(obj)
        metadata = obj.setdefault("metadata", {})
        if not metadata.get("name") and metadata.get("generateName"):
            metadata["name"] = metadata["generateName"] + secrets.token_hex(3)[:5]
        self._validate(plural, namespace, obj)
        key = (plural, namespace, metadata["name"])
        if key in self.objects:
            raise StatusError(409, "AlreadyExists", f'{plural}.ray.io "{metadata["name"]}" already exists')
        metadata.update(
            namespace=namespace,
            uid=str(uuid.uuid4()),
            generation=1,
            creationTimestamp=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        if dry_run:
            return obj
        self._next_version(obj)
        self.objects[key] = obj
        self._emit(plural, "ADDED", obj)
        return copy.deepcopy(obj)

    def _validate(self, plural: str, namespace: str, obj: Obj) -> None:
        if obj.get("apiVersion") != "ray.io/v1" or obj.get("kind") != RAY_PLURALS[plural]:
            raise StatusError(400, "BadRequest", f"the body is not a ray.io/v1 {RAY_PLURALS[plural]}")
        if obj["metadata"].get("namespace", namespace) != namespace:
            raise StatusError(400, "BadRequest", "the namespace of the object does not match the request")
        causes = []
        name = obj["metadata"].get("name") or ""
        if not name:
            causes.append({"reason": "FieldValueRequired", "message": "Required value", "field": "metadata.name"})
        elif not _DNS1123_SUBDOMAIN.match(name) or len(name) > 253:
            causes.append(
                {
                    "reason": "FieldValueInvalid",
                    "message": f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of ...',
                    "field": "metadata.name",
                }
            )
        if not isinstance(obj.get("spec"), dict):
            causes.append({"reason": "FieldValueRequired", "message": "Required value", "field": "spec"})
        if causes:
            message = f'{RAY_PLURALS[plural]}.ray.io "{name}" is invalid: ' + ", ".join(c["field"] for c in causes)
            raise StatusError(422, "Invalid", message, causes=causes)

    def get(self, plural: str, namespace: str, name: str) -> Obj:
        try:
            return self.objects[(plural, namespace, name)]
        except KeyError:
            raise StatusError(404, "NotFound", f'{plural}.ray.io "{name}" not found') from None

    def patch(self, plural: str, namespace: str, name: str, patched: Callable[[Obj], Obj]) -> Obj:
        current = self.get(plural, namespace, name)
        new = patched(copy.deepcopy(current))
        wanted_version = (new.get("metadata") or {}).get("resourceVersion")
        if wanted_version not in (None, current["metadata"]["resourceVersion"]):
            raise StatusError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {plural}.ray.io "{name}": the object has been modified; '
                "please apply your changes to the latest version and try again",
            )
        new["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        if new == current:
            return copy.deepcopy(current)  # a no-op patch does not bump the resourceVersion
        if new.get("spec") != current.get("spec"):
            new["metadata"]["generation"] = current["metadata"].get("generation", 1) + 1
        self._next_version(new)
        self.objects[(plural, namespace, name)] = new
        self._emit(plural, "MODIFIED", new)
        return copy.deepcopy(new)

    def delete(self, plural: str, namespace: str, name: str) -> Obj:
        obj = self.get(plural, namespace, name)
        del self.objects[(plural, namespace, name)]
        self._next_version(obj)
        self._emit(plural, "DELETED", obj)
        return copy.deepcopy(obj)

    def compact(self) -> None:
        """Forget all history: a watch from any older resourceVersion now gets 410 Gone."""
        self.history.clear()
        self.compacted_through = self.resource_version

    def push_bookmark(self, plural: str) -> None:
        bookmark = {"apiVersion": "ray.io/v1", "kind": RAY_PLURALS[plural], "metadata": {}}
        bookmark["metadata"]["resourceVersion"] = str(self.resource_version)
        for queue in self.subscribers:
            queue.put_nowait(Event(self.resource_version, plural, "BOOKMARK", bookmark))

    def listing(self, plural: str, namespace: str, selects: Callable[[Obj], bool]) -> list[Obj]:
        return [
            copy.deepcopy(obj)
            for (p, ns, _), obj in sorted(self.objects.items())
            if p == plural and ns == namespace and selects(obj)
        ]


def _verb(request: web.Request) -> str:
    if request.method == "GET":
        if "name" in request.match_info:
            return "get"
        return "watch" if request.query.get("watch") in ("true", "1") else "list"
    return {"POST": "create", "PATCH": "patch", "DELETE": "delete"}.get(request.method, request.method.lower())


def _reset_connection(request: web.Request) -> None:
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is not None:
        # SO_LINGER 0: close with a TCP RST, as a crashed proxy or apiserver would.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    if request.transport:
        request.transport.abort()
    raise asyncio.CancelledError


class FakeApiServer:
    def __init__(self, *, token: str = DEFAULT_TOKEN, history_limit: int = 50) -> None:
        self.token = token
        self.store = Store(history_limit)
        self.requests: list[RecordedRequest] = []
        self._faults: list[Fault] = []
        self._hooks: list[list[Any]] = []  # [kind, skip, fn]
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeApiServer:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name="fake-apiserver", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fake API server did not start")
        return self

    def _serve(self, ready: threading.Event) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._runner = web.AppRunner(
            # handler_cancellation: a watch handler ends as soon as its client goes away.
            self._app(),
            access_log=None,
            shutdown_timeout=0.5,
            handler_cancellation=True,
        )
        loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        ready.set()
        loop.run_forever()
        loop.run_until_complete(self._runner.cleanup())
        loop.close()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> FakeApiServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- test controls (thread-safe) -------------------------------------------------------------
    def call(self, fn: Callable[[Store], T]) -> T:
        """Run ``fn(store)`` in the server loop and return its result."""

        async def run() -> T:
            return fn(self.store)

        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    def later(self, delay: float, fn: Callable[[Store], Any]) -> None:
        """Run ``fn(store)`` in the server loop after ``delay`` seconds (e.g. to mutate during a watch)."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._loop.call_later, delay, fn, self.store)

    def on_next(self, kind: str, fn: Callable[[Store], Any], *, skip: int = 0) -> None:
        """Run ``fn(store)`` when the next (after ``skip``) ``"list"`` is answered or ``"watch"`` is
        established: changes made then reach that watch (or the watch after that list) with no sleeps."""
        with self._lock:
            self._hooks.append([kind, skip, fn])

    def _run_hooks(self, kind: str) -> None:
        with self._lock:
            due = []
            for hook in list(self._hooks):
                if hook[0] == kind:
                    if hook[1] == 0:
                        self._hooks.remove(hook)
                        due.append(hook[2])
                    hook[1] -= 1
        for fn in due:
            fn(self.store)

    def reset(self) -> None:
        with self._lock:
            self._faults.clear()
            self._hooks.clear()
        self.requests.clear()
        self.call(Store.reset)

    def inject(
        self,
        kind: str,
        times: int = 1,
        *,
        method: str | None = None,
        watch: bool | None = None,
        after_events: int = 0,
        on_trigger: Callable[[Store], None] | None = None,
    ) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {sorted(FAULT_KINDS)}")
        if kind in ("drop_watch", "gone") and watch is None:
            watch = True
        with self._lock:
            self._faults.append(Fault(kind, times, method, watch, after_events, on_trigger))

    def _take_fault(self, method: str, is_watch: bool, kinds: frozenset[str]) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.kind in kinds and fault.matches(method, is_watch):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def requests_to(self, method: str, *, watch: bool | None = None) -> list[RecordedRequest]:
        return [
            r
            for r in self.requests
            if r.method == method and (watch is None or (r.query.get("watch") == "true") == watch)
        ]

    # -- HTTP ------------------------------------------------------------------------------------
    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        ray = "/apis/ray.io/v1/namespaces/{namespace}/{plural}"
        app.router.add_get(ray, self._list_or_watch)
        app.router.add_post(ray, self._create)
        app.router.add_get(ray + "/{name}", self._get)
        app.router.add_patch(ray + "/{name}", self._patch)
        app.router.add_delete(ray + "/{name}", self._delete)
        app.router.add_get("/api/v1/namespaces/{namespace}/services/{name}", self._service)
        app.router.add_get("/api/v1/namespaces/{namespace}/services/{name}/proxy/{tail:.*}", self._service_proxy)
        app.router.add_get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}", self._crd)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable[[web.Request], Awaitable[Any]]) -> Any:
        body = await request.read()
        self.requests.append(
            RecordedRequest(
                request.method,
                request.path,
                dict(request.query),
                request.headers.get("Content-Type", ""),
                json.loads(body) if body else None,
            )
        )
        is_watch = request.query.get("watch") in ("true", "1")
        try:
            self._fail_on_purpose(request, is_watch)
            if request.headers.get("Authorization") != f"Bearer {self.token}":
                raise StatusError(401, "Unauthorized", "Unauthorized")
            plural = request.match_info.get("plural")
            if plural is not None and plural not in RAY_PLURALS:
                return web.Response(status=404, text="404 page not found")
            self._check_rbac(request, plural or "services")
            fault = self._take_fault(request.method, is_watch, frozenset({"reset_after"}))
            response = await handler(request)
            if fault is not None:
                _reset_connection(request)  # the request took effect; its response is lost
            return response
        except StatusError as error:
            return error.response()

    def _fail_on_purpose(self, request: web.Request, is_watch: bool) -> None:
        fault = self._take_fault(request.method, is_watch, frozenset({"503", "429", "500", "400", "reset", "gone"}))
        if fault is None:
            return
        if fault.on_trigger is not None:
            fault.on_trigger(self.store)
        if fault.kind == "reset":
            _reset_connection(request)
        if fault.kind in ("503", "429"):
            reason = "ServiceUnavailable" if fault.kind == "503" else "TooManyRequests"
            raise StatusError(int(fault.kind), reason, "try again later", headers={"Retry-After": "0"})
        reasons = {"500": (500, "InternalError"), "400": (400, "BadRequest"), "gone": (410, "Expired")}
        code, reason = reasons[fault.kind]
        raise StatusError(code, reason, f"injected {fault.kind}")

    def _check_rbac(self, request: web.Request, plural: str) -> None:
        namespace = request.match_info.get("namespace", "")
        verb = _verb(request)
        if (verb, plural, namespace) in self.store.forbidden:
            group = "ray.io" if plural in RAY_PLURALS else ""
            raise StatusError(
                403,
                "Forbidden",
                f'{plural}.{group} is forbidden: User "system:serviceaccount:test:runner" cannot {verb} '
                f'resource "{plural}" in API group "{group}" in the namespace "{namespace}"',
            )

    def _selector(self, request: web.Request) -> Callable[[Obj], bool]:
        field_selector = request.query.get("fieldSelector", "")
        wanted_name = field_selector.split("=", 1)[1] if field_selector.startswith("metadata.name=") else None
        labels = request.query.get("labelSelector")

        def selects(obj: Obj) -> bool:
            name_ok = wanted_name is None or (obj.get("metadata") or {}).get("name") == wanted_name
            return name_ok and _labels_match(obj, labels)

        return selects

    async def _create(self, request: web.Request) -> web.Response:
        dry_run = request.query.get("dryRun") == "All"
        info = request.match_info
        created = self.store.create(info["plural"], info["namespace"], await request.json(), dry_run=dry_run)
        return web.json_response(created, status=201)

    async def _get(self, request: web.Request) -> web.Response:
        info = request.match_info
        return web.json_response(self.store.get(info["plural"], info["namespace"], info["name"]))

    async def _patch(self, request: web.Request) -> web.Response:
        info = request.match_info
        body, content_type = await request.json(), request.content_type
        appliers: dict[str, Callable[[Obj], Obj]] = {
            "application/merge-patch+json": lambda obj: merge_patch(obj, body),
            "application/json-patch+json": lambda obj: _json_patch(obj, body),
        }
        if content_type not in appliers:
            # As the real apiserver: strategic merge patch is not supported for custom resources.
            message = f"the body of the request was in an unknown format: {content_type}"
            raise StatusError(415, "UnsupportedMediaType", message)
        patched = self.store.patch(info["plural"], info["namespace"], info["name"], appliers[content_type])
        return web.json_response(patched)

    async def _delete(self, request: web.Request) -> web.Response:
        info = request.match_info
        options = dict(request.query)
        if request.body_exists:
            options.update(await request.json())
        deleted = self.store.delete(info["plural"], info["namespace"], info["name"])
        self.store.delete_options.append(options)
        return web.json_response(deleted)

    async def _service(self, request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        service = self.store.services.get((namespace, name))
        if service is None:
            raise StatusError(404, "NotFound", f'services "{name}" not found')
        return web.json_response(service)

    async def _service_proxy(self, request: web.Request) -> web.Response:
        """Stands in for the proxied service (e.g. the Ray dashboard): echoes what it was asked."""
        info = request.match_info
        return web.json_response({"namespace": info["namespace"], "service": info["name"], "path": info["tail"]})

    async def _crd(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        plural, _, group = name.partition(".")
        if group != "ray.io" or plural not in RAY_PLURALS:
            raise StatusError(404, "NotFound", f'customresourcedefinitions.apiextensions.k8s.io "{name}" not found')
        version = {"name": "v1", "served": True, "storage": True}
        names = {"kind": RAY_PLURALS[plural], "plural": plural}
        spec = {"group": "ray.io", "names": names, "scope": "Namespaced", "versions": [version]}
        crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "spec": spec}
        crd["metadata"] = {"name": name}
        return web.json_response(crd)

    async def _list_or_watch(self, request: web.Request) -> web.StreamResponse:
        plural, namespace = request.match_info["plural"], request.match_info["namespace"]
        selects = self._selector(request)
        if request.query.get("watch") not in ("true", "1"):
            items = self.store.listing(plural, namespace, selects)
            metadata = {"resourceVersion": str(self.store.resource_version)}
            kind = RAY_PLURALS[plural] + "List"
            self._run_hooks("list")
            return web.json_response({"apiVersion": "ray.io/v1", "kind": kind, "metadata": metadata, "items": items})
        return await self._watch(request, plural, namespace, selects)

    def _initial_events(self, plural: str, namespace: str, selects: Callable[[Obj], bool], since: str) -> list[Event]:
        if since in ("", "0"):
            # No resourceVersion: synthetic ADDED events for what exists now, then live events.
            objects = self.store.listing(plural, namespace, selects)
            return [Event(int(o["metadata"]["resourceVersion"]), plural, "ADDED", o) for o in objects]
        if int(since) < self.store.compacted_through:
            expired = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Expired", "code": 410}
            expired["message"] = f"too old resource version: {since} ({self.store.compacted_through})"
            return [Event(0, plural, "ERROR", expired)]
        return [e for e in self.store.history if e.resource_version > int(since)]

    async def _watch(
        self, request: web.Request, plural: str, namespace: str, selects: Callable[[Obj], bool]
    ) -> web.StreamResponse:
        def wanted(event: Event) -> bool:
            if event.plural != plural:
                return False
            if event.type in ("ERROR", "BOOKMARK"):
                return True
            return event.object["metadata"].get("namespace") == namespace and selects(event.object)

        drop = self._take_fault("GET", True, frozenset({"drop_watch"}))
        deadline = asyncio.get_running_loop().time() + float(request.query.get("timeoutSeconds", 1800))
        queue: asyncio.Queue[Event] = asyncio.Queue()
        self.store.subscribers.add(queue)  # before the replay, with no await in between: no gap
        pending: list[Event] | None = self._initial_events(
            plural, namespace, selects, request.query.get("resourceVersion", "")
        )
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        self._run_hooks("watch")
        sent = itertools.count(1)
        try:
            if drop is not None and drop.after_events == 0:
                return self._drop(request, response, queue, drop)
            while pending is not None:
                for event in filter(wanted, pending):
                    await self._write_event(response, event)
                    if drop is not None and next(sent) >= drop.after_events:
                        return self._drop(request, response, queue, drop)
                    if event.type == "ERROR":
                        return await self._finish(response)
                pending = await self._next_events(queue, deadline)
            if request.query.get("allowWatchBookmarks") == "true":
                # As the apiserver does when a watch times out: tell the client how far it got.
                metadata = {"resourceVersion": str(self.store.resource_version)}
                bookmark = {"apiVersion": "ray.io/v1", "kind": RAY_PLURALS[plural], "metadata": metadata}
                await self._write_event(response, Event(self.store.resource_version, plural, "BOOKMARK", bookmark))
            return await self._finish(response)
        finally:
            self.store.subscribers.discard(queue)

    @staticmethod
    async def _next_events(queue: asyncio.Queue[Event], deadline: float) -> list[Event] | None:
        """The next live event, or None when the watch's timeoutSeconds is up."""
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            return None
        try:
            return [await asyncio.wait_for(queue.get(), remaining)]
        except TimeoutError:
            return None

    @staticmethod
    async def _write_event(response: web.StreamResponse, event: Event) -> None:
        await response.write((json.dumps({"type": event.type, "object": event.object}) + "\n").encode())

    async def _finish(self, response: web.StreamResponse) -> web.StreamResponse:
        await response.write_eof()
        return response

    def _drop(
        self, request: web.Request, response: web.StreamResponse, queue: asyncio.Queue[Event], fault: Fault
    ) -> web.StreamResponse:
        self.store.subscribers.discard(queue)
        if fault.on_trigger is not None:
            fault.on_trigger(self.store)
        assert request.transport is not None
        request.transport.close()  # flushes what was written, then FIN mid-stream: an incomplete body
        return response
