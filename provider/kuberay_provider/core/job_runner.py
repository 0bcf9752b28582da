"""Running one ``RayJobRequest`` from start to finish, synchronously: the whole of a task's work.

The adapters (an Airflow operator, a Prefect task) build the request, hand over where log lines and
status lines go, and translate the outcome (or ``RayJobFailed``) into their orchestrator's terms. A
deferrable adapter uses the pieces: ``launch``, ``submit_if_waiting`` and ``conclude``, with the async
wait (core.async_lifecycle) in between.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from kuberay_provider.core.dashboard import raycluster_head_service, rayjob_head_service
from kuberay_provider.core.errors import KubeRayProviderError
from kuberay_provider.core.job_request import RayJobRequest
from kuberay_provider.core.lifecycle import (
    AdmissionTimeout,
    ClusterNotFoundError,
    Launch,
    RayJobLifecycle,
    RayJobTimeout,
)
from kuberay_provider.core.log_follower import FollowedRayJob, JobsFor, LogFollower, ReceivedLog, tail_lines
from kuberay_provider.core.ray_jobs import RayJobsClient
from kuberay_provider.core.resources import RAYCLUSTER
from kuberay_provider.core.status import JobStatus, RayJobState, WaitTarget

log = logging.getLogger(__name__)
LOG_DRAIN_SECONDS = 30.0  # after the job ends, how long the log stream may take to deliver its last lines
QUEUE_REPORT_SECONDS = 60.0  # while Kueue holds a RayJob, a "still queued" line this often


@dataclass(frozen=True)
class RayJobOutcome:
    """What a finished task reports (an Airflow XCom, a Prefect result): plain, JSON-safe values."""

    namespace: str
    rayjob_name: str
    job_id: str
    cluster_name: str
    deployment_status: str
    job_status: str
    succeeded: bool
    reason: str = ""
    message: str = ""
    dashboard_url: str = ""

    @classmethod
    def from_state(cls, state: RayJobState, dashboard_url: str = "") -> RayJobOutcome:
        return cls(
            namespace=state.namespace,
            rayjob_name=state.name,
            job_id=state.job_id,
            cluster_name=state.cluster_name,
            deployment_status=_wire(state.deployment_status),
            job_status=_wire(state.job_status),
            succeeded=state.succeeded_job,
            reason=state.reason,
            message=state.message,
            dashboard_url=dashboard_url,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _launch_verb(launch: Launch) -> str:
    if launch.replaced:
        return "Replaced the failed earlier try's"
    return "Created" if launch.created else "Re-attached to"


def _wire(value: Any) -> str:
    return str(getattr(value, "value", value) or "")


class RayJobFailed(KubeRayProviderError):
    """The Ray job ended without succeeding: KubeRay's reason and message, and the log's last lines."""

    def __init__(self, summary: str, outcome: RayJobOutcome, log_tail: str = "") -> None:
        text = summary
        if log_tail:
            text += f"\n--- last lines of the Ray job's log ({outcome.job_id}) ---\n{log_tail}"
        super().__init__(text)
        self.outcome = outcome
        self.log_tail = log_tail


def _shorter(first: float | None, second: float | None) -> float | None:
    """The smaller of two optional limits (None: no limit)."""
    limits = [limit for limit in (first, second) if limit is not None]
    return min(limits) if limits else None


class _Deadline:
    def __init__(self, timeout: float | None) -> None:
        self._end = None if timeout is None else time.monotonic() + timeout

    def remaining(self) -> float | None:
        return None if self._end is None else max(0.0, self._end - time.monotonic())


class AdmissionWait:
    """The bookkeeping of a wait for Kueue's admission, shared by the sync and async runners: the wait
    goes in chunks so the task log says "still queued" now and then, and a RayJob not admitted in time
    is withdrawn (deleted): left queued, it would start later with no task following it."""

    def __init__(self, runner: RayJobRunner, request: RayJobRequest, timeout: float | None) -> None:
        self.runner, self.request, self.timeout = runner, request, timeout
        self.started, self.deadline = time.monotonic(), _Deadline(timeout)
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


@dataclass
class RayJobRunner:
    """Drives a RayJob (or a Ray job on an existing cluster) through a ``RayJobLifecycle``.

    ``log_line`` receives the Ray job's log line by line while it runs; ``status_line`` each change of
    the RayJob's status, as one readable line.
    """

    lifecycle: RayJobLifecycle
    log_line: Callable[[str], None] = field(default=log.info)
    status_line: Callable[[str], None] = field(default=log.info)
    on_started: Callable[[RayJobState], None] = field(default=lambda state: None)  # e.g. to publish the job's link
    stream_logs: bool = True
    log_tail_lines: int = 50

    # --- steps ----------------------------------------------------------------------------------------

    def launch(self, request: RayJobRequest) -> Launch:
        """Validate (KubeRay's rules, the cluster's CRD schema), check a selected cluster exists, then
        create the RayJob (after a server dry run) or re-attach to the one a previous try created."""
        manifest = request.manifest()
        self.lifecycle.validate(manifest)
        self._require_selected_cluster(request)
        launch = self.lifecycle.create_or_attach(manifest, result_in_log=request.result_in_log)
        anew = (
            f". Running the job anew: the task's earlier RayJob was replaced because {launch.superseded}"
            if launch.superseded
            else ""
        )
        self.status_line(f"{_launch_verb(launch)} RayJob {request.resolved_namespace}/{request.rayjob_name}{anew}")
        return launch

    def _require_selected_cluster(self, request: RayJobRequest) -> None:
        cluster = request.selected_cluster
        if cluster and self.lifecycle.kube.find(RAYCLUSTER, request.resolved_namespace, cluster) is None:
            raise ClusterNotFoundError(
                f"RayCluster {request.resolved_namespace}/{cluster} named by cluster_selector does not exist"
            )

    def submit_if_waiting(self, request: RayJobRequest, state: RayJobState) -> None:
        """SDK mode: once KubeRay waits for the submission (InteractiveMode), submit and set spec.jobId."""
        if request.submits_itself and state.is_waiting_for_submission:
            self.lifecycle.submit_interactive(state, request.submission())

    def wait(self, request: RayJobRequest, target: WaitTarget, timeout: float | None) -> RayJobState:
        return self.lifecycle.wait(
            request.resolved_namespace,
            request.rayjob_name,
            until=target.reached,
            timeout=timeout,
            on_change=lambda state: self.status_line(state.describe()),
        )

    def first_wait_target(self, request: RayJobRequest) -> WaitTarget:
        return WaitTarget.READY_FOR_SUBMISSION if request.submits_itself else WaitTarget.STARTED

    def wait_for_admission(self, request: RayJobRequest, timeout: float | None) -> RayJobState:
        """While Kueue holds the RayJob (suspended on its LocalQueue): say so, and how long it has waited,
        until Kueue admits it. ``timeout``: ``admission_timeout`` and what the whole wait has left."""
        admission = AdmissionWait(self, request, timeout)
        while True:
            chunk = admission.next_chunk()
            try:
                state = self.lifecycle.wait(
                    request.resolved_namespace,
                    request.rayjob_name,
                    until=WaitTarget.ADMITTED.reached,
                    timeout=chunk,
                    on_change=admission.report,
                )
            except RayJobTimeout:
                admission.still_queued()
                continue
            return admission.admitted(state)

    def withdraw(self, namespace: str, name: str, why: str) -> None:
        """Delete a RayJob that must not run any more (it waited too long in its queue)."""
        deleted = self.lifecycle.delete(namespace, name)
        self.status_line(
            f"Deleted RayJob {namespace}/{name}: {why}" if deleted else f"RayJob {namespace}/{name} was already gone"
        )

    # --- whole flows ----------------------------------------------------------------------------------

    def run(self, request: RayJobRequest, timeout: float | None = None) -> RayJobOutcome:
        """Everything, blocking: returns the outcome of a succeeded job, raises RayJobFailed otherwise."""
        if request.runs_without_rayjob:
            return self.run_on_cluster(request, timeout)
        self.launch(request)
        return self.follow(request, timeout)

    def start(self, request: RayJobRequest, timeout: float | None = None) -> RayJobState:
        """After ``launch``: wait for Kueue's admission, then until the job started (SDK mode: submitting it
        once KubeRay waits for the submission); the state then."""
        deadline = _Deadline(timeout)
        if request.kueue_queue:
            self.wait_for_admission(request, _shorter(request.admission_timeout, deadline.remaining()))
        state = self.wait(request, self.first_wait_target(request), deadline.remaining())
        if request.submits_itself and state.is_waiting_for_submission:
            self.submit_if_waiting(request, state)
            state = self.wait(request, WaitTarget.STARTED, deadline.remaining())
        return state

    def follow(self, request: RayJobRequest, timeout: float | None = None) -> RayJobOutcome:
        """After ``launch``: ``start``, stream the log while waiting by watch, conclude."""
        deadline = _Deadline(timeout)
        state = self.start(request, deadline.remaining())
        self.on_started(state)
        followed = FollowedRayJob(state)
        follower = self._follow(self._rayjob_jobs_for, followed) if not state.is_terminal else None

        def on_change(changed: RayJobState) -> None:
            followed.update(changed)  # a backoffLimit retry brings a new job id on a new cluster
            self.status_line(changed.describe())

        try:
            state = self.lifecycle.wait(
                request.resolved_namespace,
                request.rayjob_name,
                until=WaitTarget.TERMINAL.reached,
                timeout=deadline.remaining(),
                on_change=on_change,
            )
            followed.update(state)
        finally:
            if follower is not None:
                follower.join(LOG_DRAIN_SECONDS)
                follower.stop()
        return self.conclude(state, follower)

    def _rayjob_jobs_for(self, state: RayJobState | None) -> RayJobsClient:
        if state is None:
            raise ValueError("a RayJob's log needs the RayJob's state")
        return self.lifecycle.rayjob_jobs_client(state)

    def run_on_cluster(self, request: RayJobRequest, timeout: float | None = None) -> RayJobOutcome:
        """Straight to an existing Ray head through the Jobs SDK, no RayJob created: a RayCluster's
        (``cluster_selector``) or one no RayCluster describes (``head_service`` / ``volcano_job``).

        The job's status decides the outcome (polled: there is no RayJob to watch); the log tail only
        shows the log, and is resumed when it ends early."""
        namespace = request.resolved_namespace
        submission = request.submission()
        if not request.on_bare_head:
            self.lifecycle.validate(request.manifest())
        service, cluster, where = self.direct_target(request)
        jobs = self.lifecycle.jobs_client(namespace, service, cluster)
        job_id = submission.submission_id
        started = jobs.submit(**submission.submit_arguments())
        self.status_line(f"{'Submitted' if started else 'Re-attached to'} Ray job {job_id} on {where}")
        followed = FollowedRayJob.fixed(job_id)
        follower = self._follow(lambda _state: jobs, followed, required=True)
        try:
            info = jobs.wait_until_ended(
                job_id,
                timeout=timeout,
                wake=followed.tail_ended,
                on_status=lambda now: self.status_line(f"Ray job {job_id} is {now.status.value}"),
            )
            if info is None:
                raise RayJobTimeout(
                    f"Ray job {job_id} on {where} did not finish within {timeout} s (a longer wait "
                    "timeout lets it; a re-run re-attaches to the same job)",
                    None,
                )
            followed.finish()
            follower.join(LOG_DRAIN_SECONDS)
        finally:
            follower.stop()
        outcome = RayJobOutcome(
            namespace=namespace,
            rayjob_name="",
            job_id=info.job_id,
            cluster_name=cluster,
            deployment_status="",
            job_status=info.status.value,
            succeeded=info.status == JobStatus.SUCCEEDED,
            message=info.message,
            dashboard_url=self.lifecycle.dashboard_link(namespace, service, cluster, info.job_id),
        )
        if not outcome.succeeded:
            summary = f"Ray job {info.job_id} on {where} ended {info.status.value}: {info.message}"
            raise RayJobFailed(summary, outcome, follower.tail(self.log_tail_lines))
        return outcome

    def direct_target(self, request: RayJobRequest) -> tuple[str, str, str]:
        """Where a job without a RayJob runs: (head Service, RayCluster name or "", a readable name)."""
        namespace = request.resolved_namespace
        if request.on_bare_head:
            service = self.lifecycle.bare_head_service(namespace, request.head_service, request.volcano_job)
            return service, "", f"Service {namespace}/{service}"
        cluster = str(request.selected_cluster)
        return self.lifecycle.head_service_of_cluster(namespace, cluster), cluster, f"RayCluster {namespace}/{cluster}"

    def _follow(self, jobs_for: JobsFor, followed: FollowedRayJob, *, required: bool = False) -> LogFollower:
        sink = self.log_line if (self.stream_logs or required) else (lambda line: None)
        return LogFollower(jobs_for, followed, line_sink=sink, keep_lines=max(self.log_tail_lines, 1)).start()

    # --- the end --------------------------------------------------------------------------------------

    def dashboard_url(self, state: RayJobState) -> str:
        try:
            service = self.lifecycle.head_service(state)
            return self.lifecycle.dashboard_link(state.namespace, service, state.cluster_name, state.job_id)
        except Exception as exc:
            log.debug("no dashboard link for %s: %s", state.name, exc)
            return ""

    def dashboard_url_of(self, request: RayJobRequest) -> str:
        """The dashboard of a RayJob before it runs: its cluster's head service is not known yet, so the
        stable ``<rayjob>-head-svc`` (or, on an existing cluster, that cluster's)."""
        service = (
            raycluster_head_service({"metadata": {"name": request.selected_cluster}})
            if request.selected_cluster
            else rayjob_head_service(request.rayjob_name)
        )
        return self.lifecycle.dashboard_link(request.resolved_namespace, service, request.selected_cluster or "")

    def replay_log(self, state: RayJobState) -> None:
        """Send a finished job's whole log to ``log_line`` (after a wait that did not stream it)."""
        if not state.job_id:
            return
        try:
            text = self.lifecycle.rayjob_jobs_client(state).logs(state.job_id)
        except Exception as exc:
            self.status_line(f"The Ray job's log is no longer available: {exc}")
            return
        for line in text.splitlines():
            self.log_line(line)

    def conclude(self, state: RayJobState, follower: ReceivedLog | None = None) -> RayJobOutcome:
        """The outcome of a terminal RayJob; raises RayJobFailed (reason, message, log tail) unless it succeeded."""
        outcome = RayJobOutcome.from_state(state, self.dashboard_url(state))
        if outcome.succeeded:
            return outcome
        self.release_stopped_cluster(state)
        tail = follower.tail(self.log_tail_lines) if follower is not None and follower.received else ""
        if not tail and state.job_id:
            tail = self._tail_after_the_fact(state)
        raise RayJobFailed(state.failure_summary(), outcome, tail)

    def _tail_after_the_fact(self, state: RayJobState) -> str:
        """The log's end read once the job is over, or a line saying why it cannot be read: with
        shutdownAfterJobFinishes and no TTL, KubeRay deletes the cluster (and its log) right away."""
        try:
            text = self.lifecycle.rayjob_jobs_client(state).logs(state.job_id)
        except Exception as exc:
            log.info("no log tail for %s: %s", state.name, exc)
            if state.cluster_name and self.lifecycle.kube.find(RAYCLUSTER, state.namespace, state.cluster_name) is None:
                return (
                    f"(the log is gone: KubeRay deleted RayCluster {state.namespace}/{state.cluster_name} when the job "
                    "ended; to read logs after the fact keep the cluster a while, e.g. cleanup='delete_cluster_after:300')"
                )
            return f"(the log could not be read: {exc})"
        return tail_lines(text, self.log_tail_lines) or "(the Ray job's log is empty)"

    def release_stopped_cluster(self, state: RayJobState) -> bool:
        """KubeRay's deletion rules match only SUCCEEDED / FAILED jobs and Failed RayJobs, so a Ray job that
        was stopped (Complete, STOPPED) would keep its cluster until the RayJob is deleted. When the rules
        ask for the cluster to go (``cleanup="delete_workers_then_cluster:..."``), delete it now."""
        if state.job_status != JobStatus.STOPPED or not state.deletes_cluster_by_rule or not state.cluster_name:
            return False
        deleted = self.lifecycle.kube.delete(RAYCLUSTER, state.namespace, state.cluster_name)
        if deleted:
            self.status_line(
                f"Deleted RayCluster {state.namespace}/{state.cluster_name}: the Ray job was stopped, "
                "and KubeRay's deletion rules match no STOPPED job"
            )
        return bool(deleted)

    def cleanup(
        self, namespace: str, name: str, *, succeeded: bool, delete_on_success: bool, delete_on_failure: bool
    ) -> bool:
        """Delete the RayJob (and so its cluster) when the task's cleanup options ask for it."""
        if (succeeded and delete_on_success) or (not succeeded and delete_on_failure):
            deleted = self.lifecycle.delete(namespace, name)
            self.status_line(
                f"Deleted RayJob {namespace}/{name}" if deleted else f"RayJob {namespace}/{name} was already gone"
            )
            return deleted
        return False
