"""Running one ``RayJobRequest`` from start to finish, synchronously: the whole of a task's work.

The adapters (an Airflow operator, a Prefect task) build the request, hand over where log lines and
status lines go, and translate the outcome (or ``RayJobFailed``) into their orchestrator's terms. A
deferrable adapter uses the pieces: ``launch``, ``submit_if_waiting`` and ``conclude``, with the async
wait (core.async_lifecycle) in between.

The one-shot steps are here; the waiting ones (``wait``, ``start``, ``follow``, ``run_on_cluster``) are
``core.async_runner``'s coroutines, run on a private event loop (``core.sync_bridge``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from kuberay_provider.core.async_runner import AsyncRayJobRunner
from kuberay_provider.core.dashboard import raycluster_head_service, rayjob_head_service
from kuberay_provider.core.errors import ClusterNotFoundError

# RayJobOutcome, RayJobFailed: defined with the outcome, still importable from here.
from kuberay_provider.core.job_outcome import RayJobFailed as RayJobFailed
from kuberay_provider.core.job_outcome import RayJobOutcome as RayJobOutcome
from kuberay_provider.core.job_request import RayJobRequest
from kuberay_provider.core.lifecycle import Launch, RayJobLifecycle
from kuberay_provider.core.log_follower import ReceivedLog, tail_lines
from kuberay_provider.core.ray_jobs import RayJobsClient
from kuberay_provider.core.resources import RAYCLUSTER
from kuberay_provider.core.status import JobStatus, RayJobState, WaitTarget
from kuberay_provider.core.sync_bridge import ThreadedWatches, run_sync

log = logging.getLogger(__name__)


def _launch_verb(launch: Launch) -> str:
    if launch.replaced:
        return "Replaced the failed earlier try's"
    return "Created" if launch.created else "Re-attached to"


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
    # What arrived of the last job's log (lines, tail, function markers); set by ``follow`` / ``run_on_cluster``.
    received_log: ReceivedLog | None = field(default=None, init=False)

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

    @property
    def received_markers(self) -> list[str]:
        """The function marker lines that arrived of the last job's log (none before a job ran)."""
        return self.received_log.markers if self.received_log is not None else []

    def waiting(self) -> AsyncRayJobRunner:
        """The waiting steps, watching through this runner's own (synchronous) Kubernetes client."""
        return AsyncRayJobRunner(self, ThreadedWatches(lambda: self.lifecycle.kube))

    def wait(self, request: RayJobRequest, target: WaitTarget, timeout: float | None) -> RayJobState:
        return run_sync(self.waiting().wait(request, target, timeout))

    def first_wait_target(self, request: RayJobRequest) -> WaitTarget:
        return WaitTarget.READY_FOR_SUBMISSION if request.submits_itself else WaitTarget.STARTED

    def wait_for_admission(self, request: RayJobRequest, timeout: float | None) -> RayJobState:
        """While Kueue holds the RayJob (suspended on its LocalQueue): say so, and how long it has waited,
        until Kueue admits it. ``timeout``: ``admission_timeout`` and what the whole wait has left."""
        return run_sync(self.waiting().wait_for_admission(request, timeout))

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
        return run_sync(self.waiting().start(request, timeout))

    def follow(self, request: RayJobRequest, timeout: float | None = None) -> RayJobOutcome:
        """After ``launch``: ``start``, stream the log while waiting by watch, conclude."""
        return run_sync(self.waiting().follow(request, timeout))

    def rayjob_jobs_for(self, state: RayJobState | None) -> RayJobsClient:
        """The Jobs API of the cluster a RayJob's ``state`` names (the log follower's ``JobsFor``)."""
        if state is None:
            raise ValueError("a RayJob's log needs the RayJob's state")
        return self.lifecycle.rayjob_jobs_client(state)

    def run_on_cluster(self, request: RayJobRequest, timeout: float | None = None) -> RayJobOutcome:
        """Straight to an existing Ray head through the Jobs SDK, no RayJob created (``cluster_selector``,
        ``head_service`` / ``volcano_job``): ``AsyncRayJobRunner.run_on_cluster``, blocking."""
        return run_sync(self.waiting().run_on_cluster(request, timeout))

    def direct_target(self, request: RayJobRequest) -> tuple[str, str, str]:
        """Where a job without a RayJob runs: (head Service, RayCluster name or "", a readable name)."""
        namespace = request.resolved_namespace
        if request.on_bare_head:
            service = self.lifecycle.bare_head_service(namespace, request.head_service, request.volcano_job)
            return service, "", f"Service {namespace}/{service}"
        cluster = str(request.selected_cluster)
        return self.lifecycle.head_service_of_cluster(namespace, cluster), cluster, f"RayCluster {namespace}/{cluster}"

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

    def conclude(self, state: RayJobState, received: ReceivedLog | None = None) -> RayJobOutcome:
        """The outcome of a terminal RayJob; raises RayJobFailed (reason, message, log tail) unless it succeeded."""
        outcome = RayJobOutcome.from_state(state, self.dashboard_url(state))
        if outcome.succeeded:
            return outcome
        self.release_stopped_cluster(state)
        tail = received.tail(self.log_tail_lines) if received is not None and received.received else ""
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
