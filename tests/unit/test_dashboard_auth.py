"""Credentials on the way to a Ray dashboard (#18 item 5): the API server's token is asked for anew for every
request through the service proxy (REST and the log websocket), a dashboard token (Ray's token
authentication) reaches the dashboard, and neither appears in a repr, a log or an error."""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections.abc import Iterator
from typing import Any

import kubernetes.client
import pytest
from aiohttp import web

from kuberay_provider.core.dashboard import DashboardAccess
from kuberay_provider.core.kube.sync_client import RayObjectsClient
from kuberay_provider.core.lifecycle import RayJobLifecycle
from kuberay_provider.core.ray_jobs import RayJobsError
from kuberay_provider.core.status import JobStatus

RAY_TOKEN = "ray-dashboard-s3cret-token"
JOB = {
    "type": "SUBMISSION",
    "submission_id": "job-1",
    "status": "SUCCEEDED",
    "entrypoint": "python x.py",
    "message": "",
}


class Dashboard:
    """A Ray dashboard stand-in behind any path prefix (a service proxy or none), on a thread of its own.
    It records every request's credentials; ``refuse`` answers 401 to an Authorization it lists, and a
    wrong Ray token gets 403 with the token quoted back, as a careless server might."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []  # (path, Authorization, X-Ray-Authorization)
        self.refuse: set[str] = set()
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self.url = ""

    def _check(self, request: web.Request) -> web.Response | None:
        authorization, ray = request.headers.get("Authorization", ""), request.headers.get("X-Ray-Authorization", "")
        self.seen.append((request.path, authorization, ray))
        if authorization in self.refuse:
            return web.json_response({"kind": "Status", "code": 401, "reason": "Unauthorized"}, status=401)
        if ray and ray != f"Bearer {RAY_TOKEN}":
            return web.Response(status=403, text=f"Forbidden: invalid token {ray}")
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if (refused := self._check(request)) is not None:
            return refused
        if request.path.endswith("/api/version"):
            return web.json_response({"version": "4", "ray_version": "2.60.0", "ray_commit": "x"})
        if request.path.endswith("/logs/tail"):
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            await ws.send_str("hello from the job\n")
            await ws.close()
            return ws
        if request.path.endswith("/logs"):
            return web.json_response({"logs": "hello from the job\n"})
        return web.json_response(JOB)

    def __enter__(self) -> Dashboard:
        ready = threading.Event()

        async def start() -> None:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
            ready.set()

        threading.Thread(target=self._loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(start(), self._loop)
        assert ready.wait(10)
        return self

    def __exit__(self, *_: Any) -> None:
        assert self._runner is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)


@pytest.fixture
def dashboard() -> Iterator[Dashboard]:
    with Dashboard() as running:
        yield running


def rotating_configuration(host: str) -> kubernetes.client.Configuration:
    """A Configuration whose refresh hook hands out a new token every time it runs, as an exec plugin's
    token within its client's refresh margin does."""
    tokens = (f"kube-token-{n}" for n in itertools.count(1))
    configuration = kubernetes.client.Configuration()
    configuration.host = host
    configuration.api_key = {"BearerToken": next(tokens)}
    configuration.api_key_prefix = {"BearerToken": "Bearer"}
    configuration.refresh_api_key_hook = lambda c: c.api_key.update(BearerToken=next(tokens))
    return configuration


def collect_tail(jobs: Any, job_id: str) -> str:
    async def tail() -> str:
        return "".join([chunk async for chunk in jobs.tail(job_id)])

    return asyncio.run(asyncio.wait_for(tail(), timeout=30))


def test_through_the_service_proxy_every_request_carries_the_current_token(dashboard: Dashboard) -> None:
    lifecycle = RayJobLifecycle(
        RayObjectsClient(kubernetes.client.ApiClient(rotating_configuration(dashboard.url))),
        dashboard=DashboardAccess(token=RAY_TOKEN),
    )
    jobs = lifecycle.jobs_client("ns", "svc")
    assert jobs.info("job-1").status is JobStatus.SUCCEEDED
    assert jobs.info("job-1").status is JobStatus.SUCCEEDED
    assert "hello from the job" in collect_tail(jobs, "job-1")

    proxied = [seen for seen in dashboard.seen if "/services/svc:dashboard/proxy/" in seen[0]]
    paths = [path.rsplit("/proxy", 1)[1] for path, _, _ in proxied]
    assert paths[0] == "/api/version" and paths[-3:] == [
        "/api/jobs/job-1",
        "/api/jobs/job-1",
        "/api/jobs/job-1/logs/tail",
    ]
    tokens = [authorization for _, authorization, _ in proxied]
    assert len(set(tokens)) == len(tokens), f"a token was sent twice: {tokens}"  # each request asked anew
    # Ray's token rides in X-Ray-Authorization: through the proxy, Authorization is the API server's.
    assert {ray for _, _, ray in proxied} == {f"Bearer {RAY_TOKEN}"}


def test_a_refused_token_says_the_api_server_rejected_it_and_never_shows_it(
    dashboard: Dashboard, caplog: pytest.LogCaptureFixture
) -> None:
    configuration = rotating_configuration(dashboard.url)
    configuration.refresh_api_key_hook = None  # the token never changes, and has expired
    dashboard.refuse.add("Bearer kube-token-1")
    jobs = RayJobLifecycle(RayObjectsClient(kubernetes.client.ApiClient(configuration))).jobs_client("ns", "svc")
    with caplog.at_level(logging.DEBUG), pytest.raises(RayJobsError) as refused:
        jobs.info("job-1")
    assert "the Kubernetes API server rejected the credentials" in str(refused.value)
    assert "kube-token-1" not in str(refused.value) + caplog.text


def test_a_dashboard_token_reaches_a_direct_dashboard_and_stays_secret(
    dashboard: Dashboard, caplog: pytest.LogCaptureFixture
) -> None:
    access = DashboardAccess(url_template=dashboard.url, token=RAY_TOKEN)
    jobs = RayJobLifecycle(RayObjectsClient(kubernetes.client.ApiClient()), dashboard=access).jobs_client("ns", "svc")
    with caplog.at_level(logging.DEBUG):
        assert jobs.info("job-1").status is JobStatus.SUCCEEDED
        assert "hello from the job" in collect_tail(jobs, "job-1")
    assert {ray for _, _, ray in dashboard.seen} == {f"Bearer {RAY_TOKEN}"}
    for text in (repr(access), str(access), repr(jobs.endpoint), str(jobs.endpoint), caplog.text):
        assert RAY_TOKEN not in text

    wrong = DashboardAccess(url_template=dashboard.url, token="wrong-s3cret-token")
    jobs = RayJobLifecycle(RayObjectsClient(kubernetes.client.ApiClient()), dashboard=wrong).jobs_client("ns", "svc")
    with caplog.at_level(logging.DEBUG), pytest.raises(RayJobsError) as refused:
        jobs.info("job-1")
    assert "the Ray dashboard refused these credentials" in str(refused.value)
    assert "wrong-s3cret-token" not in str(refused.value) + caplog.text
