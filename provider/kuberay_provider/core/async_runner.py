"""Running a ``RayJobRequest``: the waiting part of a task's work, written once, for asyncio.

``AsyncRayJobRunner`` waits for Kueue's admission and the job's start, follows the Ray job's log while
it watches the RayJob to its end (``follow``), or submits straight to an existing head and polls the
job's status (``run_on_cluster``). The one-shot steps (validate and create, submit, conclude, delete)
are ``RayJobRunner``'s, run in a worker thread so they never block the loop. ``RayJobRunner``'s own
``follow``, ``start`` and ``run_on_cluster`` run these coroutines on a private loop (``core.sync_bridge``)
for synchronous callers; an async adapter (a Prefect task, a deferrable trigger) awaits them directly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kuberay_provider.core.async_lifecycle import AdmissionTimeout, ObjectWatcher, RayJobTimeout, wait_for_rayjob
from kuberay_provider.core.deadline import Deadline, shorter
from kuberay_provider.core.job_outcome import RayJobFailed, RayJobOutcome
from kuberay_provider.core.job_request import RayJobRequest
from kuberay_provider.core.log_follower import FollowedRayJob, JobLog, JobsFor
from kuberay_provider.core.status import JobStatus, RayJobState, WaitTarget
from kuberay_provider.core.sync_bridge import in_daemon_thread

if TYPE_CHECKING:
    from kuberay_provider.core.job_runner import RayJobRunner
    from kuberay_provider.core.lifecycle import Launch

log = logging.getLogger(__name__)
LOG_DRAIN_SECONDS = 30.0  # after the job ends, how long the log stream may take to deliver its last lines
QUEUE_REPORT_SECONDS = 60.0  # while Kueue holds a RayJob, a "still queued" line this often


class AdmissionWait:
    """The bookkeeping of a wait for Kueue's admission: the wait
    goes in chunks so the task log says "still queued" now and then, and a RayJob not admitted in time
    is withdrawn (deleted): left queued, it would start later with no task following it."""

    def __init__(self, runner: RayJobRunner, request: RayJobRequest, timeout: float | None) -> None:
        self.runner, self.request, self.timeout = runner, request, timeout
        self.started, self.deadline = time.monotonic(), Deadline(timeout)
        self._last_line = ""

    @property
    def subject(self) -> str:
        return f"RayJob {self.request.resolved_namespace}/{self.request.rayjob_name}"

    @property
    def queue(self) -> str:
        return f"Kueue LocalQueue {self.request.kueue_queue!r}"

    def waited(self) -> float:
        return time.monotonic() - self.started

    def next_chunk(self) -> float:
        """How long the next watch may last; AdmissionTimeout (after withdrawing the RayJob) when time is up."""
        remaining = self.deadline.remaining()
        if remaining == 0.0:
            self.runner.withdraw(
                self.request.resolved_namespace,
                self.request.rayjob_name,
                f"not admitted by {self.queue} within {self.waited():.0f} s",
            )
            raise AdmissionTimeout(
                f"{self.subject} was not admitted by {self.queue} within {self.timeout} s; it was deleted "
                "so it cannot start later with no task following it",
                None,
            )
        return QUEUE_REPORT_SECONDS if remaining is None else min(QUEUE_REPORT_SECONDS, remaining)

    def report(self, state: RayJobState) -> None:
        line = state.describe()
        if line != self._last_line:
            self.runner.status_line(line)
            self._last_line = line

    def still_queued(self) -> None:
        if self.deadline.remaining() != 0.0:
            self.runner.status_line(
                f"{self.subject} still queued for admission on {self.queue} ({self.waited():.0f} s)"
            )

    def admitted(self, state: RayJobState) -> RayJobState:
        if not state.is_terminal:
            self.runner.status_line(f"{self.subject} admitted by {self.queue} after {self.waited():.1f} s")
        return state


async def wait_streaming_log(
    kube: ObjectWatcher,
    namespace: str,
    name: str,
    *,
    jobs_for: JobsFor | None,
    line_sink: Callable[[str], None] | None,
    timeout: float | None = None,
    on_change: Callable[[RayJobState], None] | None = None,
    keep_lines: int = 200,
    started: RayJobState | None = None,
) -> tuple[RayJobState, JobLog | None]:
    """Wait for the RayJob's end (first for its start, unless ``started`` says it did), following its Ray
    job's log into ``line_sink`` (None: kept, not shown) from the moment the job runs; ``jobs_for`` finds
    its Jobs API, called in a thread (None: no log is followed). The terminal state, and the ``JobLog``
    whose ``received_log`` tells what arrived."""
    deadline = Deadline(timeout)
    if started is None:
        started = await wait_for_rayjob(
            kube, namespace, name, WaitTarget.STARTED, timeout=deadline.remaining(), on_change=on_change
        )
    followed = FollowedRayJob(started)
    stream = None
    if jobs_for is not None and not started.is_terminal:
        stream = JobLog(line_sink, max(keep_lines, 1)).start(followed, jobs_for)

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
            await stream.finish(LOG_DRAIN_SECONDS)
    return state, stream


@dataclass
class AsyncRayJobRunner:
    """``RayJobRunner``'s waiting steps on the event loop, each callable on its own (one task each);
    ``kube`` is where the RayJob is watched (an async client, shared watches, or a sync client's)."""

    runner: RayJobRunner
    kube: ObjectWatcher

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
        """While Kueue holds the RayJob (suspended on its LocalQueue): say so, and how long it has waited,
        until Kueue admits it. ``timeout``: ``admission_timeout`` and what the whole wait has left."""
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

    async def start(self, request: RayJobRequest, timeout: float | None = None) -> RayJobState:
        """After ``launch``: wait for Kueue's admission, then until the job started (SDK mode: submitting it
        once KubeRay waits for the submission); the state then."""
        deadline = Deadline(timeout)
        if request.kueue_queue:
            await self.wait_for_admission(request, shorter(request.admission_timeout, deadline.remaining()))
        state = await self.wait(request, self.runner.first_wait_target(request), deadline.remaining())
        if request.submits_itself and state.is_waiting_for_submission:
            await asyncio.to_thread(self.runner.submit_if_waiting, request, state)
            state = await self.wait(request, WaitTarget.STARTED, deadline.remaining())
        return state

    async def follow(self, request: RayJobRequest, timeout: float | None = None) -> RayJobOutcome:
        """After ``launch``: ``start``, follow the log while watching the RayJob to its end, conclude.
        Raises ``RayJobFailed`` unless the job succeeded."""
        runner, deadline = self.runner, Deadline(timeout)
        state = await self.start(request, deadline.remaining())
        runner.on_started(state)
        state, stream = await wait_streaming_log(
            self.kube,
            request.resolved_namespace,
            request.rayjob_name,
            jobs_for=runner.rayjob_jobs_for,
            line_sink=runner.log_line if runner.stream_logs else None,
            timeout=deadline.remaining(),
            on_change=lambda changed: runner.status_line(changed.describe()),
            keep_lines=runner.log_tail_lines,
            started=state,
        )
        runner.received_log = stream.received_log if stream is not None else None
        return await asyncio.to_thread(runner.conclude, state, runner.received_log)

    async def run_on_cluster(self, request: RayJobRequest, timeout: float | None = None) -> RayJobOutcome:
        """Straight to an existing Ray head through the Jobs SDK, no RayJob created: a RayCluster's
        (``cluster_selector``) or one no RayCluster describes (``head_service`` / ``volcano_job``).

        The job's status decides the outcome (polled: there is no RayJob to watch); the log tail only
        shows the log, and is resumed when it ends early."""
        runner, namespace, submission = self.runner, request.resolved_namespace, request.submission()
        if not request.on_bare_head:
            await asyncio.to_thread(runner.lifecycle.validate, request.manifest())
        service, cluster, where = await asyncio.to_thread(runner.direct_target, request)
        jobs = await asyncio.to_thread(runner.lifecycle.jobs_client, namespace, service, cluster)
        job_id = submission.submission_id
        started = await asyncio.to_thread(lambda: jobs.submit(**submission.submit_arguments()))
        runner.status_line(f"{'Submitted' if started else 'Re-attached to'} Ray job {job_id} on {where}")
        followed = FollowedRayJob.fixed(job_id)
        stream = JobLog(runner.log_line, max(runner.log_tail_lines, 1)).start(followed, lambda _state: jobs)
        runner.received_log = stream.received_log
        try:
            # A daemon thread: a poll still running when the task is killed must not hold the process.
            info = await in_daemon_thread(
                lambda: jobs.wait_until_ended(
                    job_id,
                    timeout=timeout,
                    wake=followed.tail_ended,
                    on_status=lambda now: runner.status_line(f"Ray job {job_id} is {now.status.value}"),
                )
            )
            if info is None:
                raise RayJobTimeout(
                    f"Ray job {job_id} on {where} did not finish within {timeout} s (a longer wait "
                    "timeout lets it; a re-run re-attaches to the same job)",
                    None,
                )
            followed.finish()
            await stream.finish(LOG_DRAIN_SECONDS)
        finally:
            await stream.finish(0.0)  # stops it at once when the wait failed
        dashboard_url = await asyncio.to_thread(runner.lifecycle.dashboard_link, namespace, service, cluster, job_id)
        outcome = RayJobOutcome(
            namespace=namespace,
            rayjob_name="",
            job_id=info.job_id,
            cluster_name=cluster,
            deployment_status="",
            job_status=info.status.value,
            succeeded=info.status == JobStatus.SUCCEEDED,
            message=info.message,
            dashboard_url=dashboard_url,
        )
        if not outcome.succeeded:
            summary = f"Ray job {info.job_id} on {where} ended {info.status.value}: {info.message}"
            raise RayJobFailed(summary, outcome, stream.tail(runner.log_tail_lines))
        return outcome

    async def run(self, request: RayJobRequest, timeout: float | None = None) -> RayJobOutcome:
        """Everything, awaited: returns the outcome of a succeeded job, raises RayJobFailed otherwise."""
        if request.runs_without_rayjob:
            return await self.run_on_cluster(request, timeout)
        await self.launch(request)
        return await self.follow(request, timeout)

    async def delete(self, namespace: str, name: str) -> bool:
        return await asyncio.to_thread(self.runner.lifecycle.delete, namespace, name)
