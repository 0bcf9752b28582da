"""The SDK path straight to an existing head (``RayJobRunner.run_on_cluster``) and the Jobs API reads under
it: the job's status decides its end, the log tail is resumed when it ends early, every read is bounded.

The runner tests fake the Jobs API at ``RayJobsClient``'s own methods (so its status polling is the real
one); the tail and timeout tests run a small fake Ray dashboard (aiohttp) on a local port."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web

from kuberay_provider.core import async_runner, job_runner, log_follower, ray_jobs
from kuberay_provider.core.job_request import RayJobRequest, RunIdentity
from kuberay_provider.core.job_runner import RayJobRunner
from kuberay_provider.core.lifecycle import RayJobTimeout
from kuberay_provider.core.ray_jobs import DashboardEndpoint, RayJobInfo, RayJobsClient, RayJobsError
from kuberay_provider.core.status import JobStatus


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    for module, name, value in [
        (ray_jobs, "STATUS_POLL_FIRST_SECONDS", 0.02),
        (ray_jobs, "STATUS_POLL_MAX_SECONDS", 0.1),
        (ray_jobs, "STATUS_OUTAGE_SECONDS", 1.0),
        (ray_jobs, "POLL_FIRST_SECONDS", 0.05),
        (ray_jobs, "POLL_MAX_SECONDS", 0.4),
        (log_follower, "RESUME_FIRST_SECONDS", 0.02),
        (log_follower, "RESUME_MAX_SECONDS", 0.1),
        (log_follower, "STATE_CHECK_SECONDS", 0.02),
        (async_runner, "LOG_DRAIN_SECONDS", 1.0),
    ]:
        monkeypatch.setattr(module, name, value)


# --- run_on_cluster -----------------------------------------------------------------------------------


class ScriptedJobs(RayJobsClient):
    """A Ray job that runs ``runs_for`` seconds, printing ``lines`` spread over that time. ``tail`` plays
    ``tails`` in turn (each a function of the tail's ``start``); status reads fail ``failing_reads`` times."""

    def __init__(
        self,
        lines: list[str],
        runs_for: float,
        tails: list[Callable[[int], AsyncIterator[str]]] | None = None,
        failing_reads: int = 0,
        ends: JobStatus = JobStatus.SUCCEEDED,
    ) -> None:
        super().__init__(DashboardEndpoint.direct("http://head.test:8265"))
        self.lines, self.runs_for, self.tails, self.ends = lines, runs_for, list(tails or []), ends
        self.failing_reads = failing_reads
        self.started_at = 0.0
        self.starts: list[int] = []

    def submit(self, **_: Any) -> bool:
        self.started_at = time.monotonic()
        return True

    def _elapsed(self) -> float:
        return time.monotonic() - self.started_at

    def find(self, job_id: str) -> RayJobInfo | None:
        if self.failing_reads:
            self.failing_reads -= 1
            raise RayJobsError(f"reading Ray job {job_id} failed: 502 Bad Gateway")
        return RayJobInfo(job_id, self.ends if self._elapsed() >= self.runs_for else JobStatus.RUNNING, "done")

    def written(self) -> str:
        share = min(1.0, self._elapsed() / self.runs_for)
        return "".join(self.lines[: int(len(self.lines) * share)])

    async def tail(self, job_id: str, *, start: int = 0) -> AsyncIterator[str]:
        self.starts.append(start)
        play = self.tails.pop(0) if self.tails else self.faithful
        async for chunk in play(start):
            yield chunk

    async def faithful(self, start: int) -> AsyncIterator[str]:
        """Ray's tail: the log from its beginning (less ``start``), following it until the job ends."""
        sent = start
        while True:
            ended, text = self._elapsed() >= self.runs_for, self.written()
            if len(text) > sent:
                yield text[sent:]
                sent = len(text)
            if ended:
                return
            await asyncio.sleep(0.02)

    def dropping_after(self, seconds: float, how: str) -> Callable[[int], AsyncIterator[str]]:
        """A tail that goes well for ``seconds``, then closes ("close") or breaks ("raise") mid-job."""

        async def play(start: int) -> AsyncIterator[str]:
            until = time.monotonic() + seconds
            async for chunk in self.faithful(start):
                yield chunk
                if time.monotonic() >= until:
                    if how == "raise":
                        raise RayJobsError("the log stream broke: Cannot connect to host head.test:8265")
                    return

        return play


async def half_open(start: int) -> AsyncIterator[str]:
    """A connection that went silent: no data, no close, ever."""
    await asyncio.Event().wait()
    yield ""


class Lifecycle:
    def __init__(self, jobs: RayJobsClient) -> None:
        self.jobs = jobs

    def bare_head_service(self, namespace: str, service: str | None = None, volcano_job: str | None = None) -> str:
        return str(service)

    def jobs_client(self, namespace: str, service: str, cluster: str = "") -> RayJobsClient:
        return self.jobs

    def dashboard_link(self, namespace: str, service: str, cluster: str = "", job_id: str = "") -> str:
        return f"http://head.test:8265/#/jobs/{job_id}"


REQUEST = RayJobRequest(
    RunIdentity("dag", "task", "run"),
    head_service="ray-head",
    submit_via="sdk",
    spec_params={"entrypoint": "python job.py"},
)
JOB_ID = REQUEST.submission_id


def run(jobs: RayJobsClient, timeout: float | None = 30) -> tuple[Any, list[str], list[str]]:
    """``run_on_cluster`` in a thread (so a hang fails the test instead of blocking it): its result or error,
    the log lines and the status lines."""
    lines: list[str] = []
    statuses: list[str] = []
    runner = RayJobRunner(Lifecycle(jobs), log_line=lines.append, status_line=statuses.append)  # type: ignore[arg-type]
    result: list[Any] = []

    def target() -> None:
        try:
            result.append(runner.run_on_cluster(REQUEST, timeout))
        except Exception as exc:
            result.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(20)
    assert result, "run_on_cluster did not return"
    return result[0], lines, statuses


def numbered(count: int) -> list[str]:
    return [f"step {n}\n" for n in range(count)]


@pytest.mark.parametrize("how", ["close", "raise"])
def test_a_log_stream_that_ends_mid_job_is_resumed_and_the_status_decides(how: str) -> None:
    jobs = ScriptedJobs(numbered(40), runs_for=1.0)
    jobs.tails = [jobs.dropping_after(0.2, how), jobs.dropping_after(0.2, how)]
    outcome, lines, statuses = run(jobs)
    assert not isinstance(outcome, Exception), outcome  # before: "ended RUNNING" when the stream ended
    assert outcome.succeeded and outcome.job_status == "SUCCEEDED"
    assert lines == [f"step {n}" for n in range(40)]  # every line, once, in order
    assert len(jobs.starts) >= 3 and jobs.starts == sorted(jobs.starts) and jobs.starts[1] > 0
    assert statuses[-2:] == [f"Ray job {JOB_ID} is RUNNING", f"Ray job {JOB_ID} is SUCCEEDED"]


def test_a_half_open_log_stream_does_not_hold_the_task_once_the_job_ended() -> None:
    jobs = ScriptedJobs(numbered(3), runs_for=0.3, tails=[half_open, half_open])
    started = time.monotonic()
    outcome, _lines, _ = run(jobs)
    assert not isinstance(outcome, Exception), outcome
    assert outcome.succeeded and time.monotonic() - started < 5  # the status, then the bounded drain


def test_transient_status_errors_are_ridden_out_and_a_failure_still_reports_the_log() -> None:
    jobs = ScriptedJobs(numbered(5), runs_for=0.3, failing_reads=3, ends=JobStatus.FAILED)
    error, _lines, _ = run(jobs)
    assert isinstance(error, job_runner.RayJobFailed) and "ended FAILED" in str(error)
    assert error.log_tail.splitlines() == [f"step {n}" for n in range(5)]


def test_a_dashboard_gone_for_longer_than_the_outage_limit_fails_with_what_to_do() -> None:
    jobs = ScriptedJobs(numbered(3), runs_for=60, failing_reads=10_000)
    started = time.monotonic()
    error, _, _ = run(jobs)
    assert isinstance(error, RayJobsError) and "for over 1 s" in str(error)
    assert "re-running the task re-attaches" in str(error) and time.monotonic() - started < 10


def test_the_wait_timeout_ends_the_wait() -> None:
    error, _, _ = run(ScriptedJobs(numbered(3), runs_for=60), timeout=0.5)
    assert isinstance(error, RayJobTimeout) and "did not finish within 0.5 s" in str(error)


# --- the tail and the REST calls against a fake dashboard ------------------------------------------------


class Dashboard:
    """Ray's dashboard, the parts the provider reads. ``socket`` plays the log websocket: "silent" never
    answers pings (a half-open connection), "none" refuses the upgrade (a proxy without websockets)."""

    def __init__(self, log: str, socket: str = "ok", status: str = "RUNNING", slow_info: float = 0.0) -> None:
        self.log, self.socket, self.status, self.slow_info = log, socket, status, slow_info
        self.log_reads: list[float] = []
        self.url = ""
        self.closing = asyncio.Event()
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> Dashboard:
        app = web.Application()
        app.router.add_get("/api/version", self.version)
        app.router.add_get("/api/jobs/{id}", self.info)
        app.router.add_get("/api/jobs/{id}/logs", self.logs)
        app.router.add_get("/api/jobs/{id}/logs/tail", self.tail)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._runner is not None
        self.closing.set()
        await self._runner.cleanup()

    async def version(self, _request: web.Request) -> web.Response:
        return web.json_response({"version": "4", "ray_version": "2.60.0", "ray_commit": "x"})

    async def info(self, request: web.Request) -> web.Response:
        await asyncio.sleep(self.slow_info)
        return web.json_response(
            {
                "type": "SUBMISSION",
                "submission_id": request.match_info["id"],
                "status": self.status,
                "entrypoint": "python job.py",
                "message": "",
            }
        )

    async def logs(self, _request: web.Request) -> web.Response:
        self.log_reads.append(time.monotonic())
        return web.json_response({"logs": self.log})

    async def tail(self, request: web.Request) -> web.StreamResponse:
        if self.socket == "none":
            return web.Response(status=400, text="websocket upgrade not supported here")
        ws = web.WebSocketResponse(autoping=self.socket != "silent")
        await ws.prepare(request)
        for line in self.log.splitlines(keepends=True):
            await ws.send_str(line)
        if self.socket == "silent":
            await self.closing.wait()
        return ws


async def collect(tail: AsyncIterator[str], within: float) -> list[str]:
    async def read() -> list[str]:
        return [chunk async for chunk in tail]

    return await asyncio.wait_for(read(), within)


async def test_a_resumed_tail_skips_what_was_delivered() -> None:
    async with Dashboard("ab\ncd\nef\n", status="SUCCEEDED") as dashboard:
        jobs = RayJobsClient(DashboardEndpoint.direct(dashboard.url))
        assert "".join(await collect(jobs.tail(JOB_ID, start=4), 5)) == "d\nef\n"


async def test_a_half_open_log_socket_is_detected_by_its_heartbeat(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ray_jobs, "TAIL_HEARTBEAT_SECONDS", 0.3)
    async with Dashboard("first\n", socket="silent") as dashboard:
        jobs = RayJobsClient(DashboardEndpoint.direct(dashboard.url))
        got: list[str] = []

        async def read() -> None:
            async for chunk in jobs.tail(JOB_ID):
                got.append(chunk)

        with pytest.raises(RayJobsError, match="log stream of Ray job"):
            await asyncio.wait_for(read(), 5)  # before: Ray's tail_job_logs waited forever
        assert got == ["first\n"]


async def test_polling_without_a_websocket_backs_off_while_nothing_is_new() -> None:
    async with Dashboard("x" * 200_000 + "\n", socket="none") as dashboard:
        jobs = RayJobsClient(DashboardEndpoint.direct(dashboard.url))
        await asyncio.to_thread(lambda: jobs.client)  # Ray's import and version check, out of the timing
        chunks: list[str] = []

        async def read() -> None:
            async for chunk in jobs.tail(JOB_ID):
                chunks.append(chunk)

        reader = asyncio.create_task(read())
        await asyncio.sleep(2.0)
        dashboard.status = "SUCCEEDED"
        await asyncio.wait_for(reader, 5)
        assert "".join(chunks) == dashboard.log and max(map(len, chunks)) <= ray_jobs.POLL_PIECE_CHARS
        gaps = [later - earlier for earlier, later in zip(dashboard.log_reads, dashboard.log_reads[1:], strict=False)]
        assert len(dashboard.log_reads) <= 10 and gaps[-2] > 3 * gaps[0]  # before: every second, whatever came


async def test_a_status_read_from_a_dashboard_that_does_not_answer_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ray_jobs, "REQUEST_TIMEOUT", (2.0, 0.3))
    async with Dashboard("", slow_info=1.5) as dashboard:
        jobs = RayJobsClient(DashboardEndpoint.direct(dashboard.url))
        await asyncio.to_thread(lambda: jobs.client)  # Ray's import and version check, out of the timing
        started = time.monotonic()
        with pytest.raises(RayJobsError, match="timed out"):
            await asyncio.to_thread(jobs.find, JOB_ID)  # before: waited for the answer, however late
        assert time.monotonic() - started < 1.2
