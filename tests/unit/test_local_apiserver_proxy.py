"""The local API server over TLS: kubeconfig, both official clients, and the service proxy (Ray Jobs SDK)."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import stat
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from kuberay_provider.local.kubeconfig import read_kubeconfig
from kuberay_provider.local.plane import LocalControlPlane

NS = "default"
ENDPOINTS_ANNOTATION = "local.kuberay-provider.io/endpoints"
STREAM_PAUSE_SECONDS = 1.0


def fake_dashboard() -> web.Application:
    """Just enough of the Ray dashboard's Jobs API, plus echo and streaming endpoints."""
    jobs: dict[str, dict[str, Any]] = {}

    async def version(_: web.Request) -> web.Response:
        return web.json_response({"version": "4", "ray_version": "2.60.0", "ray_commit": "test", "session_name": "s"})

    async def submit(request: web.Request) -> web.Response:
        body = await request.json()
        submission_id = body.get("submission_id") or "raysubmit_test"
        jobs[submission_id] = {
            "type": "SUBMISSION",
            "job_id": None,
            "submission_id": submission_id,
            "status": "RUNNING",
            "entrypoint": body["entrypoint"],
            "metadata": {},
        }
        return web.json_response({"job_id": submission_id, "submission_id": submission_id})

    async def job(request: web.Request) -> web.Response:
        found = jobs.get(request.match_info["job_id"])
        return web.json_response(found) if found else web.json_response({"error": "not found"}, status=404)

    async def tail(request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        for line in ("line 1\n", "line 2\n"):
            await socket.send_str(line)
        await socket.close()
        return socket

    async def echo(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "method": request.method,
                "path": request.path,
                "query": dict(request.query),
                "headers": dict(request.headers),
                "body": (await request.read()).decode(),
            }
        )

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b"first\n")
        await asyncio.sleep(STREAM_PAUSE_SECONDS)
        await response.write(b"second\n")
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/api/version", version)
    app.router.add_post("/api/jobs/", submit)
    app.router.add_get("/api/jobs/{job_id}", job)
    app.router.add_get("/api/jobs/{job_id}/logs/tail", tail)
    app.router.add_route("*", "/echo/{tail:.*}", echo)
    app.router.add_get("/stream", stream)
    return app


@pytest.fixture(scope="module")
def dashboard_url() -> Iterator[str]:
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(fake_dashboard())
    started = threading.Event()
    address: list[str] = []

    async def start() -> None:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        address.append(f"http://127.0.0.1:{runner.addresses[0][1]}")
        started.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(start()), loop.run_forever()), daemon=True)
    thread.start()
    started.wait(10)
    yield address[0]
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


@pytest.fixture(scope="module")
def plane() -> Iterator[LocalControlPlane]:
    with LocalControlPlane(controller=False, tls=True) as running:
        yield running


@pytest.fixture(scope="module")
def core(plane: LocalControlPlane) -> Iterator[client.CoreV1Api]:
    with plane.api_client() as api_client:
        yield client.CoreV1Api(api_client)


@pytest.fixture(scope="module")
def head_service(core: client.CoreV1Api, dashboard_url: str) -> str:
    endpoints = {"dashboard": dashboard_url, "8265": dashboard_url}
    core.create_namespaced_service(
        NS,
        {
            "metadata": {"name": "x-head-svc", "annotations": {ENDPOINTS_ANNOTATION: json.dumps(endpoints)}},
            "spec": {"ports": [{"name": "dashboard", "port": 8265}]},
        },
    )
    return "x-head-svc"


def _https(
    plane: LocalControlPlane, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> urllib.request.Request:
    all_headers = {"Authorization": f"Bearer {plane.token}", **(headers or {})}
    return urllib.request.Request(f"{plane.url}{path}", data=body, method=method, headers=all_headers)


def _context(plane: LocalControlPlane) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(plane.ca_path))


# --- TLS, kubeconfig, clients --------------------------------------------------------------------------


def test_kubeconfig_is_private_and_works_with_the_official_loader(plane: LocalControlPlane) -> None:
    assert plane.url.startswith("https://127.0.0.1:")
    assert stat.S_IMODE(os.stat(plane.kubeconfig_path).st_mode) == 0o600
    access = read_kubeconfig(plane.kubeconfig_path)
    assert access.server_url == plane.url and access.token == plane.token and access.ca_pem
    with config.new_client_from_config(config_file=str(plane.kubeconfig_path)) as api_client:
        names = {ns.metadata.name for ns in client.CoreV1Api(api_client).list_namespace().items}
    assert "default" in names


def test_the_certificate_is_checked(plane: LocalControlPlane) -> None:
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(_https(plane, "GET", "/version"), timeout=5)
    with urllib.request.urlopen(_https(plane, "GET", "/version"), timeout=5, context=_context(plane)) as response:
        assert response.status == 200


async def test_kubernetes_asyncio_client_as_the_controller_uses_it(plane: LocalControlPlane) -> None:
    from kubernetes_asyncio import client as async_client

    async with plane.async_api_client() as api_client:
        namespaces = await async_client.CoreV1Api(api_client).list_namespace()
    assert "default" in {ns.metadata.name for ns in namespaces.items}


# --- service proxy ---------------------------------------------------------------------------------------


def test_proxy_forwards_method_query_headers_and_body(plane: LocalControlPlane, head_service: str) -> None:
    request = _https(
        plane,
        "POST",
        f"/api/v1/namespaces/{NS}/services/{head_service}:dashboard/proxy/echo/a/b?x=1&y=2",
        body=b'{"hello": "world"}',
        headers={"Content-Type": "application/json", "X-Custom": "kept"},
    )
    with urllib.request.urlopen(request, timeout=5, context=_context(plane)) as response:
        echoed = json.loads(response.read())
    assert echoed["method"] == "POST" and echoed["path"] == "/echo/a/b" and echoed["query"] == {"x": "1", "y": "2"}
    assert echoed["body"] == '{"hello": "world"}' and echoed["headers"]["X-Custom"] == "kept"
    assert "Authorization" not in echoed["headers"]  # the API server's token never reaches the backend


@pytest.mark.parametrize("reference", ["x-head-svc:8265", "x-head-svc", "https:x-head-svc:dashboard"])
def test_proxy_service_reference_forms(core: client.CoreV1Api, head_service: str, reference: str) -> None:
    answer = core.connect_get_namespaced_service_proxy_with_path(reference, NS, "api/version")
    assert "2.60.0" in str(answer)


def test_proxy_streams_responses(plane: LocalControlPlane, head_service: str) -> None:
    started = time.monotonic()
    request = _https(plane, "GET", f"/api/v1/namespaces/{NS}/services/{head_service}:dashboard/proxy/stream")
    with urllib.request.urlopen(request, timeout=5, context=_context(plane)) as response:
        first = response.readline()
        first_at = time.monotonic() - started
        rest = response.read()
    assert first == b"first\n" and rest == b"second\n"
    assert first_at < STREAM_PAUSE_SECONDS * 0.8  # the first chunk arrived before the backend finished


def test_proxy_without_endpoints_is_503(plane: LocalControlPlane, core: client.CoreV1Api, head_service: str) -> None:
    core.create_namespaced_service(NS, {"metadata": {"name": "no-endpoints"}, "spec": {"ports": [{"port": 80}]}})
    for reference in ("no-endpoints:80", f"{head_service}:9999"):
        with pytest.raises(urllib.error.HTTPError) as unavailable:
            urllib.request.urlopen(
                _https(plane, "GET", f"/api/v1/namespaces/{NS}/services/{reference}/proxy/"),
                timeout=5,
                context=_context(plane),
            )
        status = json.loads(unavailable.value.read())
        assert unavailable.value.code == 503 and "no endpoints available for service" in status["message"]
    with pytest.raises(ApiException) as missing:
        core.connect_get_namespaced_service_proxy_with_path("missing-svc:80", NS, "x")
    assert missing.value.status == 404


def test_ray_job_submission_client_through_the_proxy(plane: LocalControlPlane, head_service: str) -> None:
    from ray.job_submission import JobStatus, JobSubmissionClient

    address = f"{plane.url}/api/v1/namespaces/{NS}/services/{head_service}:dashboard/proxy"
    jobs = JobSubmissionClient(
        address=address, headers={"Authorization": f"Bearer {plane.token}"}, verify=str(plane.ca_path)
    )
    submission_id = jobs.submit_job(entrypoint="python -c 'print(1)'", submission_id="proxied-job")
    assert submission_id == "proxied-job"
    assert jobs.get_job_status(submission_id) == JobStatus.RUNNING

    async def tail() -> list[str]:
        return [line async for line in jobs.tail_job_logs(submission_id)]

    assert asyncio.run(tail()) == ["line 1\n", "line 2\n"]  # websocket through the proxy
