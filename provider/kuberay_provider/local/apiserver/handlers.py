"""HTTP routes: discovery, OpenAPI, the resource verbs, watch and the service proxy."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

import aiohttp
from aiohttp import web

from . import discovery
from .errors import ApiError, bad_request, method_not_allowed, resource_not_found
from .patching import PATCH_TYPES, parse_document
from .protobuf import PROTOBUF, decode_object
from .proxy import backend_url, forward, parse_service_reference
from .rbac import DEFAULT_TOKEN_SECONDS, Tokens
from .registry import ResourceType
from .resources import Cluster, DeleteOptions, WriteOptions, WriteResult
from .selectors import make_matcher
from .tables import to_table, wants_table
from .watch import WatchRequest, serve_watch

JSON = "application/json"
# Without timeoutSeconds a real server closes a watch after 30 to 60 minutes.
DEFAULT_WATCH_TIMEOUT_SECONDS = 1800.0
FIELD_VALIDATION_DIRECTIVES = ("Strict", "Warn", "Ignore")
PATH_SAFE_CHARACTERS = "/:@!$&'()*+,;=-._~"


@dataclass(frozen=True)
class Route:
    """A parsed resource URL: ``rtype`` [in ``namespace``] [``name`` [``subresource`` [``rest``]]]."""

    rtype: ResourceType
    namespace: str
    name: str
    subresource: str
    rest: str  # the path after the subresource (for the proxy), decoded then re-encoded as the API server does


def parse_route(cluster: Cluster, raw_path: str) -> Route | None:
    """None for discovery paths (``/api/v1``, ``/apis/G/V``); raises 404 for paths naming no resource."""
    segments = [unquote(s) for s in raw_path.strip("/").split("/")]
    raw_segments = raw_path.lstrip("/").split("/")  # keeps a trailing slash for the proxied path
    if segments[0] == "api" and len(segments) >= 2:
        group, version, offset = "", segments[1], 2
    elif segments[0] == "apis" and len(segments) >= 3:
        group, version, offset = segments[1], segments[2], 3
    else:
        return None
    rest = segments[offset:]
    if not rest:
        return None
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 3:
        candidate = cluster.registry.lookup(group, version, rest[2])
        if candidate is not None and candidate.namespaced:
            namespace, rest, offset = rest[1], rest[2:], offset + 2
    rtype = cluster.registry.lookup(group, version, rest[0]) or discovery.review_type(group, version, rest[0])
    if rtype is None:
        raise resource_not_found()
    return Route(
        rtype,
        namespace,
        rest[1] if len(rest) > 1 else "",
        rest[2] if len(rest) > 2 else "",
        quote(unquote("/".join(raw_segments[offset + 3 :])), safe=PATH_SAFE_CHARACTERS),
    )


def _json_response(body: Any, status: int = 200, warnings: list[str] | tuple[str, ...] = ()) -> web.Response:
    response = web.Response(status=status, body=json.dumps(body, separators=(",", ":")), content_type=JSON)
    for warning in warnings:
        # RFC 7234 warn-text is a quoted string; JSON string quoting is a valid form of it.
        response.headers.add("Warning", f"299 - {json.dumps(warning)}")
    return response


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("true", "1")


def _is_dry_run(request: web.Request, body_values: list[str] | None = None) -> bool:
    values = request.query.getall("dryRun", []) + list(body_values or [])
    for value in values:
        if value != "All":
            raise bad_request(f'dryRun: Unsupported value: "{value}": supported values: "All"')
    return bool(values)


def _write_options(request: web.Request) -> WriteOptions:
    directive = request.query.get("fieldValidation", "Warn")
    if directive not in FIELD_VALIDATION_DIRECTIVES:
        raise bad_request(
            f'fieldValidation: Unsupported value: "{directive}": supported values: "Ignore", "Strict", "Warn"'
        )
    return WriteOptions(
        dry_run=_is_dry_run(request), field_validation=directive, field_manager=request.query.get("fieldManager", "")
    )


async def read_object(request: web.Request) -> Any:
    content_type = request.content_type
    raw = await request.read()
    if not raw:
        raise bad_request("the request body is empty")
    if content_type == PROTOBUF:
        return decode_object(raw)
    return parse_document(raw, allow_yaml="yaml" in content_type)


def _page(items: list[dict[str, Any]], request: web.Request) -> tuple[list[dict[str, Any]], str, int]:
    """``limit`` / ``continue`` paging; the token is the offset of the next item."""
    start = 0
    token = request.query.get("continue", "")
    if token:
        try:
            start = int(json.loads(base64.urlsafe_b64decode(token.encode()))["start"])
        except (ValueError, KeyError, TypeError):
            raise ApiError(410, "Expired", "the provided continue parameter is too old or malformed") from None
    limit = int(request.query.get("limit", "0") or 0)
    if limit <= 0 or start + limit >= len(items):
        return items[start:], "", 0
    following = base64.urlsafe_b64encode(json.dumps({"start": start + limit}).encode()).decode()
    return items[start : start + limit], following, len(items) - start - limit


# Answers a POST of a review kind (access_review.py, which needs the authorizer and the request's user).
ReviewHandler = Callable[[web.Request, ResourceType], Awaitable[web.StreamResponse]]


class ApiHandlers:
    def __init__(
        self,
        cluster: Cluster,
        stopping: asyncio.Event,
        bookmark_interval: float,
        tokens: Tokens,
        reviews: ReviewHandler | None = None,
    ) -> None:
        self.cluster = cluster
        self.tokens = tokens
        self.reviews = reviews
        self.stopping = stopping
        self.bookmark_interval = bookmark_interval
        self.openapi = discovery.OpenApiV3(cluster.registry)
        self.session: aiohttp.ClientSession | None = None

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/version", self.version)
        app.router.add_get("/version/", self.version)  # what the Python clients' VersionApi asks for
        for probe in ("/healthz", "/readyz", "/livez"):
            app.router.add_get(probe, self.healthy)
        app.router.add_get("/openapi/v3", self.openapi_root)
        app.router.add_get("/openapi/v3/{key:.+}", self.openapi_document)
        app.router.add_route("*", "/api", self.dispatch)
        app.router.add_route("*", "/apis", self.dispatch)
        app.router.add_route("*", "/api/{tail:.*}", self.dispatch)
        app.router.add_route("*", "/apis/{tail:.*}", self.dispatch)

    # --- discovery ------------------------------------------------------------------------------------

    async def version(self, _: web.Request) -> web.Response:
        return _json_response(discovery.SERVER_VERSION)

    async def healthy(self, _: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def openapi_root(self, _: web.Request) -> web.Response:
        return _json_response(self.openapi.root())

    async def openapi_document(self, request: web.Request) -> web.Response:
        document = self.openapi.document(request.match_info["key"])
        if document is None:
            raise resource_not_found()
        return web.Response(body=document, content_type=JSON, headers={"Cache-Control": "public, immutable"})

    def _discovery(self, request: web.Request) -> web.Response:
        registry = self.cluster.registry
        segments = request.path.strip("/").split("/")
        if request.method != "GET":
            raise method_not_allowed(request.method)
        if segments == ["api"]:
            return _json_response(discovery.api_versions(request.host))
        if segments == ["apis"]:
            return _json_response(discovery.api_group_list(registry))
        found: dict[str, Any] | None = None
        if segments[0] == "api" and len(segments) == 2:
            found = discovery.api_resource_list(registry, "", segments[1])
        elif segments[0] == "apis" and len(segments) == 2:
            found = discovery.api_group(registry, segments[1])
        elif segments[0] == "apis" and len(segments) == 3:
            found = discovery.api_resource_list(registry, segments[1], segments[2])
        if found is None:
            raise resource_not_found()
        return _json_response(found)

    # --- resources ------------------------------------------------------------------------------------

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        route = parse_route(self.cluster, request.rel_url.raw_path)
        if route is None:
            return self._discovery(request)
        if route.subresource == "proxy" and route.rtype.kind == "Service" and route.namespace:
            return await self._proxy(request, route)
        if route.subresource == "token" and route.rtype.kind == "ServiceAccount" and route.namespace:
            return await self._token_request(request, route)
        if route.rtype in discovery.REVIEW_TYPES:
            if route.name or self.reviews is None:
                raise resource_not_found()
            return await self.reviews(request, route.rtype)
        if route.subresource and not (route.subresource == "status" and route.rtype.has_status):
            raise resource_not_found()
        if route.rtype.namespaced and not route.namespace and (route.name or request.method != "GET"):
            raise resource_not_found() if route.name else method_not_allowed(request.method)
        if route.name:
            return await self._item(request, route)
        return await self._collection(request, route)

    def _render(self, request: web.Request, rtype: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        if wants_table(request.headers.get("Accept", "")):
            return to_table(
                rtype,
                [self.cluster.present(rtype, obj)],
                obj["metadata"].get("resourceVersion", ""),
                request.query.get("includeObject", "Metadata"),
            )
        return self.cluster.present(rtype, obj)

    def _written(self, request: web.Request, rtype: ResourceType, result: WriteResult) -> web.Response:
        return _json_response(self._render(request, rtype, result.obj), 201 if result.created else 200, result.warnings)

    async def _collection(self, request: web.Request, route: Route) -> web.StreamResponse:
        rtype, namespace = route.rtype, route.namespace
        if request.method == "POST":
            result = self.cluster.create(rtype, namespace, await read_object(request), _write_options(request))
            return self._written(request, rtype, result)
        matches = make_matcher(request.query.get("labelSelector"), request.query.get("fieldSelector"))
        if request.method == "DELETE":
            options = await self._delete_options(request)
            deleted = [
                self.cluster.delete(rtype, obj["metadata"].get("namespace", ""), obj["metadata"]["name"], options)
                for obj in self.cluster.list(rtype, namespace, matches)
            ]
            return _json_response(self._list_body(rtype, deleted, "", 0))
        if request.method != "GET":
            raise method_not_allowed(request.method)
        if _flag(request, "watch"):
            return await self._watch(request, route, matches)
        items, following, remaining = _page(self.cluster.list(rtype, namespace, matches), request)
        if wants_table(request.headers.get("Accept", "")):
            presented = [self.cluster.present(rtype, obj) for obj in items]
            table = to_table(
                rtype,
                presented,
                str(self.cluster.store.resource_version),
                request.query.get("includeObject", "Metadata"),
                following,
            )
            return _json_response(table)
        return _json_response(self._list_body(rtype, items, following, remaining))

    def _list_body(
        self, rtype: ResourceType, items: list[dict[str, Any]], following: str, remaining: int
    ) -> dict[str, Any]:
        metadata: dict[str, Any] = {"resourceVersion": str(self.cluster.store.resource_version)}
        if following:
            metadata.update({"continue": following, "remainingItemCount": remaining})
        return {
            "kind": f"{rtype.kind}List",
            "apiVersion": rtype.api_version,
            "metadata": metadata,
            "items": [self.cluster.present(rtype, obj) for obj in items],
        }

    async def _watch(self, request: web.Request, route: Route, matches: Any) -> web.StreamResponse:
        watch = WatchRequest(
            rtype=route.rtype,
            namespace=route.namespace or None,
            matches=matches,
            render=lambda obj: self._render(request, route.rtype, obj),
            resource_version=request.query.get("resourceVersion", ""),
            timeout_seconds=float(request.query.get("timeoutSeconds") or DEFAULT_WATCH_TIMEOUT_SECONDS),
            bookmarks=_flag(request, "allowWatchBookmarks"),
            send_initial_events=_flag(request, "sendInitialEvents"),
        )
        return await serve_watch(
            request,
            self.cluster.store,
            watch,
            lambda: self.cluster.list(route.rtype, route.namespace, matches),
            self.stopping,
            self.bookmark_interval,
        )

    async def _item(self, request: web.Request, route: Route) -> web.StreamResponse:
        rtype, namespace, name = route.rtype, route.namespace, route.name
        if request.method == "GET":
            return _json_response(self._render(request, rtype, self.cluster.get(rtype, namespace, name)))
        if request.method == "PUT":
            result = self.cluster.update(
                rtype, namespace, name, await read_object(request), _write_options(request), route.subresource
            )
            return self._written(request, rtype, result)
        if request.method == "PATCH":
            if request.content_type not in PATCH_TYPES:
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    f"the body of the request was in an unknown format - "
                    f"accepted media types include: {', '.join(PATCH_TYPES)}",
                )
            options = _write_options(request)
            result = self.cluster.patch(
                rtype, namespace, name, request.content_type, await request.read(), options, route.subresource
            )
            return self._written(request, rtype, result)
        if request.method == "DELETE" and not route.subresource:
            deleted = self.cluster.delete(rtype, namespace, name, await self._delete_options(request))
            pending = (
                bool(deleted["metadata"].get("deletionTimestamp"))
                and self.cluster.store.get(rtype.storage_key, namespace, name) is not None
            )
            return _json_response(self.cluster.present(rtype, deleted), 202 if pending else 200)
        raise method_not_allowed(request.method)

    async def _delete_options(self, request: web.Request) -> DeleteOptions:
        raw = await request.read()
        body = parse_document(raw, allow_yaml=False) if raw.strip() else {}
        if not isinstance(body, dict):
            raise bad_request("DeleteOptions must be a JSON object")
        policy = request.query.get("propagationPolicy") or body.get("propagationPolicy")
        orphan = body.get("orphanDependents", request.query.get("orphanDependents", "").lower() == "true")
        preconditions = body.get("preconditions") or {}
        return DeleteOptions(
            dry_run=_is_dry_run(request, body.get("dryRun")),
            propagation_policy=policy or ("Orphan" if orphan is True else "Background"),
            precondition_uid=preconditions.get("uid") or "",
            precondition_resource_version=preconditions.get("resourceVersion") or "",
        )

    # --- TokenRequest (kubectl create token) ---------------------------------------------------------

    async def _token_request(self, request: web.Request, route: Route) -> web.Response:
        if request.method != "POST":
            raise method_not_allowed(request.method)
        account = self.cluster.get(route.rtype, route.namespace, route.name)
        body = await read_object(request)
        spec = dict(body.get("spec") or {}) if isinstance(body, dict) else {}
        seconds = int(spec.get("expirationSeconds") or DEFAULT_TOKEN_SECONDS)
        if seconds < self.tokens.min_seconds:
            shortest = "10 minutes" if self.tokens.min_seconds == 600 else f"{self.tokens.min_seconds} seconds"
            raise bad_request(f"spec.expirationSeconds: Invalid value: may not specify a duration less than {shortest}")
        token, expires_at = self.tokens.issue(account, seconds)
        expiration = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires_at))
        return _json_response(
            {
                "kind": "TokenRequest",
                "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"name": route.name, "namespace": route.namespace, "creationTimestamp": None},
                "spec": {
                    "audiences": spec.get("audiences") or ["https://kubernetes.default.svc"],
                    "expirationSeconds": seconds,
                    "boundObjectRef": spec.get("boundObjectRef"),
                },
                "status": {"token": token, "expirationTimestamp": expiration},
            },
            201,
        )

    # --- service proxy --------------------------------------------------------------------------------

    async def _proxy(self, request: web.Request, route: Route) -> web.StreamResponse:
        service_name, port = parse_service_reference(route.name)
        service = self.cluster.get(route.rtype, route.namespace, service_name)
        assert self.session is not None, "the proxy session is opened on startup"
        return await forward(request, self.session, backend_url(service, port), route.rest)
