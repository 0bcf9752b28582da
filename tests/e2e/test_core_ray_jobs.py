"""A real Ray job through the core's Ray Jobs access, on the session's real local Ray head."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from kuberay_provider.core.ray_jobs import DashboardEndpoint, RayJobsClient, RayJobsError
from kuberay_provider.core.status import JobStatus

pytestmark = pytest.mark.ray


def _wait_terminal(client: RayJobsClient, job_id: str, timeout: float = 120) -> JobStatus:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.status(job_id)
        if status.is_terminal:
            return status
        time.sleep(0.5)
    raise AssertionError(f"{job_id} still running after {timeout} s")


@pytest.fixture
def jobs(ray_dashboard_url: str) -> RayJobsClient:
    return RayJobsClient(DashboardEndpoint.direct(ray_dashboard_url))


def test_job_runs_and_its_logs_come_back(jobs: RayJobsClient):
    job_id = f"core-it-{uuid.uuid4().hex[:8]}"
    entrypoint = "python -c \"import ray, os; ray.init(); print('answer', ray.get(ray.remote(lambda: 6 * 7).remote()), os.environ['GREETING'])\""
    assert jobs.submit(
        submission_id=job_id,
        entrypoint=entrypoint,
        runtime_env={"env_vars": {"GREETING": "hello"}},
        metadata={"owner": "tests"},
    )
    # Submitting again under the same id re-attaches instead of starting a second job.
    assert jobs.submit(submission_id=job_id, entrypoint=entrypoint) is False
    assert _wait_terminal(jobs, job_id) is JobStatus.SUCCEEDED
    assert "answer 42 hello" in jobs.logs(job_id)
    assert jobs.stop(job_id) is False  # already finished


def test_tail_follows_a_running_job(jobs: RayJobsClient):
    job_id = f"core-tail-{uuid.uuid4().hex[:8]}"
    jobs.submit(
        submission_id=job_id,
        entrypoint="python -c \"import time\nfor i in range(3): print('tick', i, flush=True); time.sleep(0.5)\"",
    )

    async def collect() -> str:
        return "".join([chunk async for chunk in jobs.tail(job_id)])

    text = asyncio.run(asyncio.wait_for(collect(), timeout=120))
    assert all(f"tick {i}" in text for i in range(3))
    assert jobs.status(job_id) is JobStatus.SUCCEEDED


def test_failing_job_reports_failed_with_its_error(jobs: RayJobsClient):
    job_id = f"core-fail-{uuid.uuid4().hex[:8]}"
    jobs.submit(submission_id=job_id, entrypoint="python -c \"raise SystemExit('bad input partition')\"")
    assert _wait_terminal(jobs, job_id) is JobStatus.FAILED
    info = jobs.info(job_id)
    assert info.driver_exit_code == 1 or "exit" in info.message.lower()
    assert "bad input partition" in jobs.logs(job_id)


def test_stop_a_running_job(jobs: RayJobsClient):
    job_id = f"core-stop-{uuid.uuid4().hex[:8]}"
    jobs.submit(submission_id=job_id, entrypoint='python -c "import time; time.sleep(120)"')
    deadline = time.monotonic() + 60
    while jobs.status(job_id) is not JobStatus.RUNNING and time.monotonic() < deadline:
        time.sleep(0.3)
    assert jobs.stop(job_id) is True
    assert _wait_terminal(jobs, job_id) is JobStatus.STOPPED


def test_unknown_job_and_unreachable_dashboard(jobs: RayJobsClient):
    assert jobs.find("no-such-job") is None
    assert jobs.stop("no-such-job") is False
    dead = RayJobsClient(
        DashboardEndpoint.direct("http://127.0.0.1:9", headers={"Authorization": "Bearer s3cr3t-token"})
    )
    with pytest.raises(RayJobsError) as caught:
        dead.status("x")
    assert "s3cr3t-token" not in str(caught.value)
    assert "s3cr3t-token" not in repr(dead.endpoint)
