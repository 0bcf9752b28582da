"""The service proxy: ``/api/v1/namespaces/NS/services/[https:]NAME[:PORT]/proxy/PATH``.

Where a Service really listens is written by the local controller in the annotation
``local.kuberay-provider.io/endpoints``: a JSON object from port name and port number (as strings) to a
base URL. Requests (any method, streaming both ways, websockets included) are forwarded there.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from aiohttp import web

from .errors import ApiError

ENDPOINTS_ANNOTATION = "local.kuberay-provider.io/endpoints"
# Never forwarded: the caller's credentials for this API server, and per-connection headers.
DROPPED_REQUEST_HEADERS = frozenset(
    {
        "authorization",
        "host",
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
DROPPED_RESPONSE_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
STREAM_CHUNK_BYTES = 64 * 1024


def parse_service_reference(reference: str) -> tuple[str, str]:
    """``[scheme:]name[:port]`` to (name, port); the port is "" when not given."""
    parts = reference.split(":")
    if parts[0] in ("http", "https") and len(parts) > 1:
        parts = parts[1:]
    return parts[0], parts[1] if len(parts) > 1 else ""


def no_endpoints(name: str) -> ApiError:
    return ApiError(503, "ServiceUnavailable", f'no endpoints available for service "{name}"', name, "", "services")


def backend_url(service: dict[str, Any], port: str) -> str:
    """The base URL behind ``port`` (a name or a number) of the Service, or a 503 ApiError."""
    name = service["metadata"]["name"]
    try:
        endpoints = json.loads((service["metadata"].get("annotations") or {}).get(ENDPOINTS_ANNOTATION, "{}"))
    except ValueError:
        endpoints = {}
    if not isinstance(endpoints, dict):
        endpoints = {}
    candidates = [port] if port else []
    if not port:
        # No port named: the Service's first port, as the real proxy does for single-port services.
        for declared in (service.get("spec") or {}).get("ports") or []:
            candidates += [str(declared.get("name", "")), str(declared.get("port", ""))]
    for candidate in candidates:
        if candidate and isinstance(endpoints.get(candidate), str):
            url: str = endpoints[candidate]
            return url.rstrip("/")
    raise no_endpoints(name)


def _forwarded_headers(headers: Any, dropped: frozenset[str]) -> dict[str, str]:
    forwarded: dict[str, str] = {}
    for key, value in headers.items():
        if key.lower() not in dropped:
            forwarded[key] = value
    return forwarded


async def forward(request: web.Request, session: aiohttp.ClientSession, base_url: str, path: str) -> web.StreamResponse:
    """Forward ``request`` to ``base_url + path`` and stream the answer back."""
    target = f"{base_url}/{path.lstrip('/')}"
    if request.query_string:
        target += f"?{request.query_string}"
    headers = _forwarded_headers(request.headers, DROPPED_REQUEST_HEADERS)
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return await _forward_websocket(request, session, target, headers)
    body = request.content if request.body_exists else None
    try:
        async with session.request(
            request.method, target, headers=headers, data=body, allow_redirects=False
        ) as upstream:
            response = web.StreamResponse(
                status=upstream.status,
                reason=upstream.reason,
                headers=_forwarded_headers(upstream.headers, DROPPED_RESPONSE_HEADERS),
            )
            if "Content-Length" not in upstream.headers:
                response.enable_chunked_encoding()
            await response.prepare(request)
            async for chunk in upstream.content.iter_chunked(STREAM_CHUNK_BYTES):
                await response.write(chunk)
            await response.write_eof()
            return response
    except aiohttp.ClientConnectionError as error:
        raise ApiError(503, "ServiceUnavailable", f"error trying to reach service: {error}") from None


async def _pump(source: Any, destination: Any) -> None:
    async for message in source:
        if message.type == aiohttp.WSMsgType.TEXT:
            await destination.send_str(message.data)
        elif message.type == aiohttp.WSMsgType.BINARY:
            await destination.send_bytes(message.data)
        else:
            break


async def _forward_websocket(
    request: web.Request, session: aiohttp.ClientSession, target: str, headers: dict[str, str]
) -> web.StreamResponse:
    for key in [k for k in headers if k.lower().startswith("sec-websocket")]:
        del headers[key]  # the client side of the upstream connection negotiates its own handshake
    try:
        upstream = await session.ws_connect(target, headers=headers)
    except aiohttp.ClientError as error:
        raise ApiError(503, "ServiceUnavailable", f"error trying to reach service: {error}") from None
    downstream = web.WebSocketResponse()
    await downstream.prepare(request)
    async with upstream:
        pumps = [asyncio.ensure_future(_pump(downstream, upstream)), asyncio.ensure_future(_pump(upstream, downstream))]
        _, pending = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
    await downstream.close()
    return downstream
