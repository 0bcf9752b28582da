"""Running a ``RayJobRequest`` from asyncio code (a Prefect task, any async adapter).

The waiting is asynchronous: the RayJob is watched through an ``AsyncRayObjectsClient`` and the Ray job's
log streams on the caller's own event loop. The one-shot steps (validate and create, submit, conclude,
delete) are the synchronous ``RayJobRunner``'s, run in a worker thread so they never block the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from kuberay_provider.core.async_lifecycle import ObjectWatcher, wait_for_rayjob
from kuberay_provider.core.job_request import RayJobRequest
from kuberay_provider.core.job_runner import (
    LOG_DRAIN_SECONDS,
    AdmissionWait,
    RayJobOutcome,
    RayJobRunner,
    _Deadline,
    _shorter,
)
from kuberay_provider.core.kube.async_client import AsyncRayObjectsClient
from kuberay_provider.core.lifecycle import Launch, RayJobTimeout
from kuberay_provider.core.log_follower import FollowedRayJob, JobLog, JobsFor
from kuberay_provider.core.status import RayJobState, WaitTarget

log = logging.getLogger(__name__)


class AsyncLogStream:
    """``JobLog.stream`` as a task on the running loop: the async twin of ``LogFollower`` (same
    ``tail()`` and ``received``, so ``RayJobRunner.conclude`` can report the tail of a job whose cluster
    is already gone)."""

    def __init__(
        self, jobs_for: JobsFor, followed: FollowedRayJob, line_sink: Callable[[str], None], keep_lines: int = 200
    ) -> None:
        self.jobs_for = jobs_for
        self.followed = followed
        self.log = JobLog(line_sink, keep_lines)
        self._task: asyncio.Task[None] | None = None

    @property
    def received(self) -> int:
        return self.log.received

    def start(self) -> AsyncLogStream:
        self._task = asyncio.create_task(
            self.log.stream(self.followed, self.jobs_for), name=f"ray-log-{self.followed.job_id}"
        )
        return self

    async def finish(self, drain_seconds: float = LOG_DRAIN_SECONDS) -> None:
        """Give the stream ``drain_seconds`` to deliver the job's last lines, then stop it."""
        if self._task is None:
            return
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(self._task), drain_seconds)
        if not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def tail(self, lines: int = 50) -> str:
        return self.log.tail(lines)


async def wait_streaming_log(
    kube: ObjectWatcher,
    namespace: str,
    name: str,
    *,
    jobs_for: JobsFor | None,
    line_sink: Callable[[str], None],
    timeout: float | None = None,
    on_change: Callable[[RayJobState], None] | None = None,
    keep_lines: int = 200,
) -> tuple[RayJobState, AsyncLogStream | None]:
    """Wait for the RayJob's end, streaming its Ray job's log into ``line_sink`` from the moment the job
    runs (``jobs_for`` finds its Jobs API, called in a thread; None streams nothing). Returns the
    terminal state and the stream, whose ``tail()`` and ``received`` tell what arrived."""
    deadline = _Deadline(timeout)
    state = await wait_for_rayjob(
        kube, namespace, name, WaitTarget.STARTED, timeout=deadline.remaining(), on_change=on_change
    )
    followed = FollowedRayJob(state)
    stream = None
    if jobs_for is not None and not state.is_terminal:
        stream = AsyncLogStream(jobs_for, followed, line_sink, max(keep_lines, 1)).start()

    def changed(new_state: RayJobState) -> None:
        followed.update(new_state)  # a backoffLimit retry brings a new job id on a new cluster
        if on_change is not None:
            on_change(new_state)

    try:
        state = await wait_for_rayjob(
            kube, namespace, name, WaitTarget.TERMINAL, timeout=deadline.remaining(), on_change=changed
        )
        followed.update(state)
    finally:
        if stream is not None:
            await stream.finish()
    return state, stream


@dataclass
class AsyncRayJobRunner:
    """The async twin of ``RayJobRunner.run``, in steps an adapter can call one by one (one task each)."""

    runner: RayJobRunner
    kube: AsyncRayObjectsClient

    async def launch(self, request: RayJobRequest) -> Launch:
        return await asyncio.to_thread(self.runner.launch, request)

    async def wait(self, request: RayJobRequest, target: WaitTarget, timeout: float | None = None) -> RayJobState:
        return await wait_for_rayjob(
            self.kube,
            request.resolved_namespace,
            request.rayjob_name,
            target,
            timeout=timeout,
            on_change=lambda state: self.runner.status_line(state.describe()),
        )

    async def wait_for_admission(self, request: RayJobRequest, timeout: float | None) -> RayJobState:
        """``RayJobRunner.wait_for_admission`` on the event loop."""
        admission = AdmissionWait(self.runner, request, timeout)
        while True:
            chunk = await asyncio.to_thread(admission.next_chunk)  # withdrawing the RayJob is a blocking call
            try:
                state = await wait_for_rayjob(
                    self.kube,
                    request.resolved_namespace,
                    request.rayjob_name,
                    WaitTarget.ADMITTED,
                    timeout=chunk,
                    on_change=admission.report,
                )
            except RayJobTimeout:
                admission.still_queued()
                continue
            return admission.admitted(state)

    async def submit(self, request: RayJobRequest, timeout: float | None = None) -> RayJobState:
        """SDK mode: once KubeRay waits for the submission, submit and set ``spec.jobId``. Safe to repeat:
        a job already submitted (or already started) is left as it is."""
        state = await self.wait(request, WaitTarget.READY_FOR_SUBMISSION, timeout)
        await asyncio.to_thread(self.runner.submit_if_waiting, request, state)
        return state

    async def follow(self, request: RayJobRequest, timeout: float | None = None) -> RayJobOutcome:
        """After ``launch``: submit (SDK mode), stream the log while watching the RayJob, conclude.
        Raises ``RayJobFailed`` unless the job succeeded."""
        deadline = _Deadline(timeout)
        if request.kueue_queue:
            await self.wait_for_admission(request, _shorter(request.admission_timeout, deadline.remaining()))
        if request.submits_itself:
            await self.submit(request, deadline.remaining())
        state, stream = await wait_streaming_log(
            self.kube,
            request.resolved_namespace,
            request.rayjob_name,
            jobs_for=self.runner.lifecycle.rayjob_jobs_client if self.runner.stream_logs else None,
            line_sink=self.runner.log_line,
            timeout=deadline.remaining(),
            on_change=lambda s: self.runner.status_line(s.describe()),
            keep_lines=self.runner.log_tail_lines,
        )
        return await asyncio.to_thread(self.runner.conclude, state, stream)

    async def run(self, request: RayJobRequest, timeout: float | None = None) -> RayJobOutcome:
        """Everything: launch and follow, or (SDK straight to an existing cluster) ``run_on_cluster``."""
        if request.runs_without_rayjob:
            return await asyncio.to_thread(self.runner.run_on_cluster, request, timeout)
        await self.launch(request)
        return await self.follow(request, timeout)

    async def delete(self, namespace: str, name: str) -> bool:
        return await asyncio.to_thread(self.runner.lifecycle.delete, namespace, name)
