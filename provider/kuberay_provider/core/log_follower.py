"""Following a RayJob's Ray job log while the RayJob is watched: one implementation, two ways to run it.

``JobLog.stream`` is the one coroutine. It follows the Ray job that the RayJob's latest watched state
names (``FollowedRayJob``), and copes with what the real KubeRay does:

- K8sJobMode / SidecarMode go Running *before* the submitter has submitted the job: Ray answers 404 for
  the id for seconds. The stream waits for the job to appear (backing off, not giving up on a 404).
- A ``backoffLimit`` retry deletes the cluster and starts a new one with a new job id: the stream moves
  on to the new id (and the new cluster's dashboard) and says so in the log.
- A tail that ends while the job still runs (a dropped websocket, a dashboard error) is resumed where it
  stopped, without repeating a line: the stream's end never decides the job's end, the status does.
- A job that writes progress bars (``\r``, no ``\n``) or one endless line: ``\r`` breaks a line too, and
  a line longer than ``MAX_LINE_CHARS`` is handed on in pieces, so memory stays bounded.

``JobLog.start`` runs it as a task beside the RayJob's wait on the same event loop (``core.async_runner``;
sync callers reach that through ``core.sync_bridge``); ``LogFollower`` runs it on a thread of its own for a
synchronous caller that blocks on something else meanwhile. What arrived is one ``ReceivedLog``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from kuberay_provider.core.functions import is_marker_line
from kuberay_provider.core.ray_jobs import RayJobsClient
from kuberay_provider.core.status import RayJobState

log = logging.getLogger(__name__)
# Ray has no watch for jobs: while the submitter has not submitted yet, ask again after these delays.
APPEAR_POLL_FIRST_SECONDS = 0.5
APPEAR_POLL_MAX_SECONDS = 4.0
# Between a Ray job's end and the RayJob's next state (a retry's new id, or the end) the stream checks
# the watched state, which the watch updates in memory, this often.
STATE_CHECK_SECONDS = 0.2
# A tail that ended while the job runs is resumed after this, doubling up to the max while resumes bring nothing.
RESUME_FIRST_SECONDS = 0.5
RESUME_MAX_SECONDS = 8.0
# A line is handed on once this long even without its end, marked as continued.
MAX_LINE_CHARS = 64 * 1024
CONTINUED = " [line continues]"
FEED_PIECE_CHARS = 1024 * 1024
_BREAK = re.compile(r"\r\n|\r|\n")


class ReceivedLog:
    """What arrived of a Ray job's log, the one record every caller keeps and reports: how many characters
    (``received``), the last ``keep`` lines (the tail a failed task reports, even after the cluster, and
    with it the log, is gone) and the function marker lines (a shipped function's result, read back).

    ``feed`` turns chunks into whole lines: ``\n``, ``\r\n`` and a lone ``\r`` (a progress bar redrawing
    itself) each end a line; a ``\r`` that ends nothing (at a line's start) is dropped. A partial line is
    handed on in pieces of ``max_line`` characters, so memory stays bounded."""

    def __init__(self, keep: int = 200, max_line: int = MAX_LINE_CHARS) -> None:
        self._partial = ""
        self._after_cr = False  # the last chunk ended in "\r": a "\n" starting the next one belongs to it
        self.max_line = max_line
        self.received = 0
        self.last_lines: deque[str] = deque(maxlen=max(keep, 1))
        self.markers: list[str] = []

    def feed(self, chunk: str) -> list[str]:
        """The lines ``chunk`` completes (kept, and counted in ``received``)."""
        self.received += len(chunk)
        if self._after_cr and chunk.startswith("\n"):
            chunk, self._after_cr = chunk[1:], False
        if chunk:
            self._after_cr = chunk.endswith("\r")
        text, lines, start = self._partial + chunk, [], 0
        for found in _BREAK.finditer(text):
            if found.start() > start or found.group() != "\r":
                lines.append(text[start : found.start()])
            start = found.end()
        while len(text) - start > self.max_line:
            lines.append(text[start : start + self.max_line] + CONTINUED)
            start += self.max_line
        self._partial = text[start:]
        self._keep(lines)
        return lines

    def flush(self) -> list[str]:
        """The partial last line, if any, as a line of its own."""
        rest, self._partial = self._partial, ""
        lines = [rest] if rest else []
        self._keep(lines)
        return lines

    def _keep(self, lines: list[str]) -> None:
        self.last_lines.extend(lines)
        self.markers.extend(line for line in lines if is_marker_line(line))

    def tail(self, lines: int = 50) -> str:
        return "\n".join(list(self.last_lines)[-lines:]) if lines > 0 else ""

    def to_payload(self, last_lines: str | None = None) -> dict[str, Any]:
        """JSON-safe, for a stream that ran elsewhere (a deferred task's trigger); ``last_lines``: the tail as
        it should travel (e.g. capped, markers shrunk), else the whole kept tail."""
        return {
            "received": self.received,
            "last_lines": self.tail(len(self.last_lines)) if last_lines is None else last_lines,
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any] | None) -> ReceivedLog | None:
        if not payload:
            return None
        text = str(payload.get("last_lines") or "")
        restored = cls(keep=max(text.count("\n") + 1, 1))
        restored.received = int(payload.get("received") or 0)
        restored._keep(text.rstrip("\n").splitlines())
        return restored


def tail_lines(text: str, lines: int) -> str:
    """The last ``lines`` lines of ``text`` ("" for none)."""
    return "\n".join(text.rstrip("\n").splitlines()[-lines:]) if lines > 0 else ""


class FollowedRayJob:
    """The Ray job a log stream follows: a RayJob's, as its watch reports it (``update`` on each change),
    or one submitted straight to a head (``fixed``), whose status poller calls ``finish`` at its end.

    Written by the watching side and read by the stream, possibly on another thread: each attribute is
    replaced whole, never mutated, so a reader sees an old or a new value, never a torn one.
    ``tail_ended`` is set by the stream whenever a tail of the log ends: a hint for a status poller that
    the job may have ended, so it looks at once instead of after its backoff.
    """

    def __init__(self, state: RayJobState | None = None, *, job_id: str = "", finished: bool = False) -> None:
        self.state = state
        self.job_id = job_id or (state.job_id if state is not None else "")
        self.finished = finished or (state is not None and state.is_terminal)
        self.tail_ended = threading.Event()

    @classmethod
    def fixed(cls, job_id: str) -> FollowedRayJob:
        """A Ray job submitted straight to a head (no RayJob, so no retry): followed until ``finish``."""
        return cls(job_id=job_id)

    def update(self, state: RayJobState) -> None:
        if state.job_id:  # a retry clears the id before KubeRay sets the next one
            self.state, self.job_id = state, state.job_id
        self.finished = state.is_terminal

    def finish(self) -> None:
        """The job ended (its status says so): the stream delivers the rest of the log and stops."""
        self.finished = True


JobsFor = Callable[["RayJobState | None"], RayJobsClient]  # the Jobs API of the cluster a state names


class JobLog:
    """Following a Ray job's log: each line into ``line_sink`` as it arrives, and all of it recorded in
    ``received_log`` (``ReceivedLog``). ``stream`` is the one coroutine; ``start`` runs it as a task on the
    running loop (``finish`` ends it), ``LogFollower`` on a private loop for synchronous callers."""

    def __init__(self, line_sink: Callable[[str], None] | None = None, keep_lines: int = 200) -> None:
        self.line_sink = line_sink
        self.received_log = ReceivedLog(keep_lines)
        self.followed_ids: list[str] = []
        self._task: asyncio.Task[None] | None = None

    @property
    def received(self) -> int:
        return self.received_log.received

    def tail(self, lines: int = 50) -> str:
        return self.received_log.tail(lines)

    def start(self, followed: FollowedRayJob, jobs_for: JobsFor) -> JobLog:
        """``stream`` as a task on the running loop."""
        self._task = asyncio.create_task(self.stream(followed, jobs_for), name=f"ray-log-{followed.job_id}")
        return self

    async def finish(self, drain_seconds: float) -> None:
        """Give the started stream ``drain_seconds`` to deliver the job's last lines, then stop it."""
        if self._task is None:
            return
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(self._task), drain_seconds)
        if not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _deliver(self, lines: list[str]) -> None:
        if self.line_sink is not None:
            for line in lines:
                self.line_sink(line)

    def _feed(self, chunk: str) -> None:
        # Ray may send one huge message (a long line without a newline): split in pieces, the lines of
        # one piece at a time are all that is held beside it.
        for at in range(0, len(chunk), FEED_PIECE_CHARS):
            self._deliver(self.received_log.feed(chunk[at : at + FEED_PIECE_CHARS]))

    async def stream(self, followed: FollowedRayJob, jobs_for: JobsFor) -> None:
        """Follow the Ray job ``followed`` names, and the next one after a retry, until the RayJob ends."""
        try:
            while True:
                job_id, state = followed.job_id, followed.state
                if job_id and job_id not in self.followed_ids:
                    if self.followed_ids:
                        self._deliver(self.received_log.flush())
                        self._deliver([f"--- KubeRay retried the RayJob: following its new Ray job {job_id} ---"])
                    self.followed_ids.append(job_id)
                    await self._follow_one(jobs_for, state, job_id, followed)
                    continue
                if followed.finished:
                    return
                await asyncio.sleep(STATE_CHECK_SECONDS)
        finally:
            self._deliver(self.received_log.flush())

    async def _follow_one(
        self, jobs_for: JobsFor, state: RayJobState | None, job_id: str, followed: FollowedRayJob
    ) -> None:
        try:
            jobs = await asyncio.to_thread(jobs_for, state)
            if not await self._until_submitted(jobs, job_id, followed):
                return
            await self._tail_until_ended(jobs, job_id, followed)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("stopped following the log of Ray job %s: %s", job_id, exc)

    async def _tail_until_ended(self, jobs: RayJobsClient, job_id: str, followed: FollowedRayJob) -> None:
        """Tail the log until Ray says the job ended and a tail ran to its end. A tail that ends otherwise
        is resumed where it stopped; once the job is over (by Ray or by ``followed``), one last try."""
        received, delay, last_try = 0, RESUME_FIRST_SECONDS, False
        while True:
            before, broken = received, None
            try:
                tail = jobs.tail(job_id, start=received)
                async with contextlib.aclosing(tail) as chunks:
                    async for chunk in chunks:
                        received += len(chunk)
                        self._feed(chunk)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                broken = exc
            followed.tail_ended.set()
            if followed.job_id != job_id:
                return  # a retry moved on to a new job
            ended = await self._ended(jobs, job_id)
            if last_try or (ended and broken is None):
                return
            last_try = bool(ended) or followed.finished
            log.info(
                "the log of Ray job %s ended early (%s); resuming at character %d",
                job_id,
                broken or "the stream closed",
                received,
            )
            delay = RESUME_FIRST_SECONDS if received > before else delay
            await asyncio.sleep(delay)
            delay = min(delay * 2, RESUME_MAX_SECONDS)

    @staticmethod
    async def _ended(jobs: RayJobsClient, job_id: str) -> bool | None:
        """Whether Ray says the job ended (None: it cannot say, e.g. the cluster is gone)."""
        try:
            info = await asyncio.to_thread(jobs.find, job_id)
        except Exception:
            return None
        return None if info is None else info.status.is_terminal

    @staticmethod
    async def _until_submitted(jobs: RayJobsClient, job_id: str, followed: FollowedRayJob) -> bool:
        """Wait until Ray knows ``job_id``; False if the RayJob moved on (a retry, its end) first."""
        delay = APPEAR_POLL_FIRST_SECONDS
        while True:
            try:
                if await asyncio.to_thread(jobs.find, job_id) is not None:
                    return True
            except Exception as exc:
                log.debug("Ray job %s not readable yet: %s", job_id, exc)
            if followed.job_id != job_id or followed.finished:
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, APPEAR_POLL_MAX_SECONDS)


class LogFollower:
    """``JobLog.stream`` for a synchronous caller that blocks on something else meanwhile: on a thread and
    a private event loop of its own. The caller passes each state it sees to ``followed.update``."""

    def __init__(
        self,
        jobs_for: JobsFor,
        followed: FollowedRayJob,
        *,
        line_sink: Callable[[str], None] | None = None,
        keep_lines: int = 200,
    ) -> None:
        self.jobs_for, self.followed = jobs_for, followed
        self.log = JobLog(line_sink, keep_lines)
        self._thread = threading.Thread(target=self._run, name=f"ray-log-{followed.job_id}", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def received(self) -> int:
        return self.log.received

    def tail(self, lines: int = 50) -> str:
        return self.log.tail(lines)

    def start(self) -> LogFollower:
        self._thread.start()
        return self

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._task = self._loop.create_task(self.log.stream(self.followed, self.jobs_for))
            self._loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        finally:
            self._loop.close()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the stream to end by itself (the RayJob finished); True if it did."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        loop, task = self._loop, self._task
        if loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: the stream had already ended
                loop.call_soon_threadsafe(task.cancel)
        self._thread.join(timeout)
