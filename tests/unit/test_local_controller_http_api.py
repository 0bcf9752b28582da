"""HttpClusterAPI against a tiny aiohttp stand-in of the Kubernetes API (paths, verbs, errors, watch)."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from aiohttp import web
from kubernetes_asyncio.client import ApiClient, Configuration

from kuberay_provider.local.controller import HttpClusterAPI
from kuberay_provider.local.controller.api import RAYJOBS, ConflictError

Store = dict[str, dict[str, Any]]


def make_app(store: Store, seen: list[tuple[str, str, str]]) -> web.Application:
    base = "/apis/ray.io/v1"

    async def collection(request: web.Request) -> web.StreamResponse:
        seen.append((request.method, request.path, request.query_string))
        if request.method == "POST":
            body = await request.json()
            body["metadata"].update(namespace=request.match_info["ns"], resourceVersion="1", uid="u")
            store[body["metadata"]["name"]] = body
            return web.json_response(body, status=201)
        if request.query.get("watch") == "true":
            response = web.StreamResponse()
            await response.prepare(request)
            for obj in store.values():
                await response.write(json.dumps({"type": "MODIFIED", "object": obj}).encode() + b"\n")
            return response
        wanted = request.query.get("labelSelector")
        items = [o for o in store.values() if not wanted or wanted == "a=b"]
        return web.json_response({"kind": "RayJobList", "metadata": {"resourceVersion": "7"}, "items": items})

    async def item(request: web.Request) -> web.Response:
        seen.append((request.method, request.path, request.query_string))
        name = request.match_info["name"]
        if name not in store:
            return web.json_response(
                {"kind": "Status", "reason": "NotFound", "message": "nope", "code": 404}, status=404
            )
        if request.method == "PUT":
            body = await request.json()
            if body["metadata"].get("resourceVersion") != store[name]["metadata"]["resourceVersion"]:
                return web.json_response(
                    {"kind": "Status", "reason": "Conflict", "message": "stale", "code": 409}, status=409
                )
            store[name] = body
        if request.method == "DELETE":
            return web.json_response(store.pop(name))
        return web.json_response(store[name])

    app = web.Application()
    app.router.add_route("*", base + "/namespaces/{ns}/rayjobs", collection)
    app.router.add_route("*", base + "/rayjobs", collection)
    app.router.add_route("*", base + "/namespaces/{ns}/rayjobs/{name}", item)
    app.router.add_route("*", base + "/namespaces/{ns}/rayjobs/{name}/status", item)
    return app


@contextlib.asynccontextmanager
async def served_api():
    """The stand-in served on 127.0.0.1 and an HttpClusterAPI pointed at it (all on the test's loop)."""
    store: Store = {}
    seen: list[tuple[str, str, str]] = []
    runner = web.AppRunner(make_app(store, seen))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with ApiClient(Configuration(host=f"http://127.0.0.1:{port}")) as client:
            yield HttpClusterAPI(client), store, seen
    finally:
        await runner.cleanup()


async def test_http_cluster_api_round_trip() -> None:
    async with served_api() as (api, _store, seen):
        await _round_trip(api, seen)


async def _round_trip(api: HttpClusterAPI, seen: list[tuple[str, str, str]]) -> None:
    assert await api.get(RAYJOBS, "ns", "missing") is None
    created = await api.create(
        RAYJOBS,
        "ns",
        {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": "j", "labels": {"a": "b"}}, "spec": {}},
    )
    assert created["metadata"]["namespace"] == "ns"
    listed = await api.list(RAYJOBS, "ns", {"a": "b"})
    assert [o["metadata"]["name"] for o in listed] == ["j"]
    assert ("GET", "/apis/ray.io/v1/namespaces/ns/rayjobs", "labelSelector=a%3Db") in seen
    await api.replace_status(RAYJOBS, {**created, "status": {"jobDeploymentStatus": "Initializing"}})
    assert ("PUT", "/apis/ray.io/v1/namespaces/ns/rayjobs/j/status", "") in seen
    with pytest.raises(ConflictError):
        await api.replace_status(RAYJOBS, {**created, "metadata": {**created["metadata"], "resourceVersion": "0"}})
    events = [e async for e in api.watch(RAYJOBS)]
    assert [(e.type, e.object["metadata"]["name"]) for e in events] == [("ADDED", "j"), ("MODIFIED", "j")]
    assert await api.delete(RAYJOBS, "ns", "j") is True
    assert await api.delete(RAYJOBS, "ns", "j") is False
