"""Following a RayJob's log as the real KubeRay runs it: the Ray job appears seconds after Running, and a
backoffLimit retry moves to a new job id on a new cluster. The Jobs API is faked at its client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from kuberay_provider.core import log_follower
from kuberay_provider.core.log_follower import CONTINUED, FollowedRayJob, JobLog, LogFollower, ReceivedLog
from kuberay_provider.core.ray_jobs import RayJobInfo
from kuberay_provider.core.status import JobDeploymentStatus, JobStatus, RayJobState


class FakeJobs:
    """One cluster's Jobs API: a job id is unknown (404) until ``appears_at``, then its log streams; the
    job is RUNNING until a tail has delivered its whole log (Ray closes the stream at the job's end)."""

    def __init__(self, logs: dict[str, list[str]], appears_after: float = 0.0) -> None:
        self.logs = logs
        self.appears_at = time.monotonic() + appears_after
        self.finds = 0
        self.ended: set[str] = set()

    def find(self, job_id: str) -> RayJobInfo | None:
        self.finds += 1
        if job_id not in self.logs or time.monotonic() < self.appears_at:
            return None
        return RayJobInfo(job_id, JobStatus.SUCCEEDED if job_id in self.ended else JobStatus.RUNNING)

    async def tail(self, job_id: str, start: int = 0) -> AsyncIterator[str]:
        if job_id not in self.logs or time.monotonic() < self.appears_at:
            raise RuntimeError(f"Request failed with status code 404: Job {job_id} does not exist.")
        for chunk in self.logs[job_id]:
            await asyncio.sleep(0.01)
            yield chunk
        self.ended.add(job_id)


def state(
    job_id: str,
    cluster: str,
    deployment: JobDeploymentStatus = JobDeploymentStatus.RUNNING,
    job_status: JobStatus | str = "",
) -> RayJobState:
    return RayJobState(
        name="daily",
        namespace="ns",
        job_status=job_status,
        deployment_status=deployment,
        job_id=job_id,
        cluster_name=cluster,
    )


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(log_follower, "APPEAR_POLL_FIRST_SECONDS", 0.05)
    monkeypatch.setattr(log_follower, "APPEAR_POLL_MAX_SECONDS", 0.2)
    monkeypatch.setattr(log_follower, "STATE_CHECK_SECONDS", 0.02)
    monkeypatch.setattr(log_follower, "RESUME_FIRST_SECONDS", 0.02)
    monkeypatch.setattr(log_follower, "RESUME_MAX_SECONDS", 0.1)


async def test_the_stream_waits_for_a_job_the_submitter_has_not_submitted_yet() -> None:
    """KubeRay writes Running before the submitter submits: the first look at the job is a 404."""
    jobs = FakeJobs({"daily-abcde": ["scoring partition 1\n", "done\n"]}, appears_after=1.0)
    followed = FollowedRayJob(state("daily-abcde", "daily-c1"))
    lines: list[str] = []
    stream = asyncio.create_task(JobLog(lines.append).stream(followed, lambda _s: jobs))  # type: ignore[arg-type,return-value]
    await asyncio.sleep(1.6)
    followed.update(state("daily-abcde", "daily-c1", JobDeploymentStatus.COMPLETE, JobStatus.SUCCEEDED))
    await asyncio.wait_for(stream, 5)
    assert lines == ["scoring partition 1", "done"]
    assert jobs.finds > 1  # it asked again after the 404, backing off


async def test_a_backoff_limit_retry_is_followed_to_its_new_job_on_its_new_cluster() -> None:
    clusters = {
        "daily-c1": FakeJobs({"daily-aaaaa": ["attempt 1 failed\n"]}),
        "daily-c2": FakeJobs({"daily-bbbbb": ["attempt 2 ok\n"]}),
    }
    followed = FollowedRayJob(state("daily-aaaaa", "daily-c1"))
    asked: list[str] = []

    def jobs_for(s: RayJobState | None) -> FakeJobs:
        assert s is not None
        asked.append(s.cluster_name)
        return clusters[s.cluster_name]

    lines: list[str] = []
    job_log = JobLog(lines.append)
    stream = asyncio.create_task(job_log.stream(followed, jobs_for))  # type: ignore[arg-type]
    await asyncio.sleep(0.3)
    followed.update(state("", "", JobDeploymentStatus.RETRYING))  # KubeRay clears the id while retrying
    followed.update(state("daily-bbbbb", "daily-c2"))
    await asyncio.sleep(0.3)
    followed.update(state("daily-bbbbb", "daily-c2", JobDeploymentStatus.COMPLETE, JobStatus.SUCCEEDED))
    await asyncio.wait_for(stream, 5)
    assert asked == ["daily-c1", "daily-c2"]
    assert lines == [
        "attempt 1 failed",
        "--- KubeRay retried the RayJob: following its new Ray job daily-bbbbb ---",
        "attempt 2 ok",
    ]
    assert job_log.followed_ids == ["daily-aaaaa", "daily-bbbbb"]


async def test_a_job_that_never_appears_does_not_hold_the_stream_once_the_rayjob_ended() -> None:
    jobs = FakeJobs({}, appears_after=0)
    followed = FollowedRayJob(state("daily-abcde", "daily-c1"))
    stream = asyncio.create_task(JobLog().stream(followed, lambda _s: jobs))  # type: ignore[arg-type,return-value]
    await asyncio.sleep(0.2)
    followed.update(state("daily-abcde", "daily-c1", JobDeploymentStatus.FAILED, ""))  # SubmissionFailed
    await asyncio.wait_for(stream, 2)


def test_the_synchronous_follower_runs_the_same_stream_on_its_own_thread() -> None:
    jobs = FakeJobs({"daily-abcde": ["a\nb\n", "c"]}, appears_after=0.5)
    followed = FollowedRayJob(state("daily-abcde", "daily-c1"))
    lines: list[str] = []
    follower = LogFollower(lambda _s: jobs, followed, line_sink=lines.append, keep_lines=2).start()  # type: ignore[arg-type,return-value]
    time.sleep(1.0)
    followed.update(state("daily-abcde", "daily-c1", JobDeploymentStatus.COMPLETE, JobStatus.SUCCEEDED))
    assert follower.join(5)
    assert lines == ["a", "b", "c"]
    assert follower.tail(5) == "b\nc" and follower.received == 5


# --- a tail that ends while the job runs ------------------------------------------------------------


class FlakyJobs:
    """A Jobs API whose log stream drops: the first tails break (raise, or close as if the job had ended)
    after ``per_tail`` chunks, while the job is still RUNNING. Each tail starts from the log's beginning,
    as Ray's does, and skips ``start`` characters."""

    def __init__(self, chunks: list[str], per_tail: int, drops: list[str]) -> None:
        self.chunks, self.per_tail, self.drops = chunks, per_tail, list(drops)
        self.starts: list[int] = []
        self.status = JobStatus.RUNNING

    def find(self, job_id: str) -> RayJobInfo | None:
        return RayJobInfo(job_id, self.status)

    async def tail(self, job_id: str, start: int = 0) -> AsyncIterator[str]:
        self.starts.append(start)
        drop = self.drops.pop(0) if self.drops else ""
        sent, skip = 0, start
        for chunk in self.chunks:
            piece, skip = chunk[skip:], max(0, skip - len(chunk))
            if not piece:
                continue
            if drop and sent == self.per_tail:
                if drop == "raise":
                    raise RuntimeError("WebSocket connection closed unexpectedly with close code 1006")
                return  # closed cleanly, mid-job
            await asyncio.sleep(0.005)
            sent += 1
            yield piece
        self.status = JobStatus.SUCCEEDED


async def test_a_tail_that_ends_while_the_job_runs_is_resumed_where_it_stopped() -> None:
    chunks = [f"line {n}\n" for n in range(6)]
    jobs = FlakyJobs(chunks, per_tail=2, drops=["raise", "close"])
    followed = FollowedRayJob.fixed("sdk-job")
    lines: list[str] = []
    stream = asyncio.create_task(JobLog(lines.append).stream(followed, lambda _s: jobs))  # type: ignore[arg-type,return-value]
    for _ in range(200):
        if jobs.status is JobStatus.SUCCEEDED:
            break
        await asyncio.sleep(0.02)
    followed.finish()  # what the status poller does once Ray says SUCCEEDED
    await asyncio.wait_for(stream, 5)
    assert lines == [f"line {n}" for n in range(6)]  # every line once, in order
    assert jobs.starts == [0, 14, 28]  # each resume starts where the last tail stopped
    assert followed.tail_ended.is_set()


# --- hostile output -----------------------------------------------------------------------------------


def test_carriage_returns_break_lines_and_crlf_is_one_break_even_across_chunks() -> None:
    buffer = ReceivedLog()
    got = buffer.feed("\r 10%|#  |\r 50%|## |") + buffer.feed("\r100%|###|\r") + buffer.feed("\ndone\r\n\nnext")
    assert got == [" 10%|#  |", " 50%|## |", "100%|###|", "done", ""]
    assert buffer.flush() == ["next"]


async def test_an_endless_line_is_handed_on_in_pieces_and_memory_stays_bounded() -> None:
    jobs = FlakyJobs(["x" * 1_000_000] * 20, per_tail=0, drops=[])  # 20 MB without a newline
    followed = FollowedRayJob.fixed("sdk-job")
    delivered: list[int] = []
    job_log = JobLog(lambda line: delivered.append(len(line)), keep_lines=3)
    stream = asyncio.create_task(job_log.stream(followed, lambda _s: jobs))  # type: ignore[arg-type,return-value]
    cut = log_follower.MAX_LINE_CHARS
    while jobs.status is not JobStatus.SUCCEEDED:
        await asyncio.sleep(0.02)
        assert not delivered or max(delivered) == cut + len(CONTINUED)  # never more than one cut at a time
    followed.finish()
    await asyncio.wait_for(stream, 5)
    assert delivered == [cut + len(CONTINUED)] * (20_000_000 // cut) + [20_000_000 % cut]
    assert job_log.received == 20_000_000 and len(job_log.tail(10).splitlines()) == 3
