"""The RayJob state machine of KubeRay v1.7.0 (RayJobReconciler.Reconcile), as a pure function.

``reconcile_rayjob(observation, settings)`` takes what the controller observed (the RayJob, its
RayCluster, the head Service, the Ray job's info, the submitter's state, the time) and returns an
Outcome: actions, the status to write and when to look again. Function names in comments are KubeRay's.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Mapping

import yaml

from kuberay_provider.local.ray_backend.base import TERMINAL_JOB_STATUSES, JobInfo, JobRequest

from . import kuberay as k
from .actions import (
    AddFinalizer,
    CreateRayCluster,
    DeleteRayCluster,
    DeleteSubmitter,
    EnsureOwnerHeadService,
    EventSpec,
    Outcome,
    RemoveFinalizer,
    StartSubmitter,
    StopRayJob,
    SubmitJob,
)
from .clock import format_time, from_millis, parse_time
from .conditions import inconsistent_cluster_status
from .deletion import handle_finished_rayjob
from .raycluster import owned_cluster_body
from .services import build_owner_head_service, port_of
from .validation import validate_rayjob


def _env_int(name: str, default: int) -> int:
    try:
        value = int(os.environ.get(name, ""))
    except ValueError:
        return default
    return value if value > 0 else default


@dataclass(frozen=True)
class RayJobSettings:
    """Timing knobs. KubeRay's defaults, except the requeue, which is shorter because the local backend
    answers at once (KubeRay: RayJobDefaultRequeueDuration = 3 s)."""

    requeue_seconds: float = 1.0
    # While waiting for a deletion the API server finishes immediately (KubeRay waits for pods).
    deletion_poll_seconds: float = 0.1
    transition_grace_period_seconds: int = field(
        default_factory=lambda: _env_int("RAYJOB_DEPLOYMENT_STATUS_TRANSITION_GRACE_PERIOD_SECONDS", 300)
    )
    status_check_timeout_seconds: int = field(
        default_factory=lambda: _env_int("RAYJOB_STATUS_CHECK_TIMEOUT_SECONDS", 300)
    )
    submitter_finished_timeout_seconds: int = 30  # DefaultSubmitterFinishedTimeout
    delete_rayjob_after_job_finishes: bool = field(
        default_factory=lambda: os.environ.get("DELETE_RAYJOB_CR_AFTER_JOB_FINISHES", "").lower() == "true"
    )
    deletion_policy_feature_gate: bool = True  # RayJobDeletionPolicy is Beta, on by default in v1.7.0


@dataclass(frozen=True)
class SubmitterState:
    """The submitter K8s Job (K8sJobMode) or sidecar container (SidecarMode), kept by the controller."""

    failed: bool = False
    failure_reason: str = ""
    failure_message: str = ""
    finished_at: datetime | None = None


@dataclass(frozen=True)
class JobInfoError:
    """GetJobInfo failed for another reason than "not found" (dashboard unreachable...)."""

    message: str


@dataclass(frozen=True)
class RayJobObservation:
    rayjob: Mapping[str, Any]
    now: datetime
    cluster: Mapping[str, Any] | None = None  # the RayCluster named status.rayClusterName
    cluster_head_service: Mapping[str, Any] | None = None  # that cluster's head Service
    head_pod_present: bool = False
    job_info: JobInfo | JobInfoError | None = None  # None: Ray does not know the job id
    submitter: SubmitterState | None = None  # None: no submitter exists
    owner_head_service: Mapping[str, Any] | None = None  # <rayjob>-head-svc


def submission_mode(spec: Mapping[str, Any]) -> str:
    return spec.get("submissionMode") or "K8sJobMode"  # the CRD's default


def has_submitter(spec: Mapping[str, Any]) -> bool:
    """utils.HasSubmitter."""
    return submission_mode(spec) in ("K8sJobMode", "SidecarMode")


def is_job_terminal(job_status: str | None) -> bool:
    return (job_status or "") in TERMINAL_JOB_STATUSES


def managed_by_other_controller(spec: Mapping[str, Any]) -> bool:
    """utils.ManagedByExternalController."""
    managed_by = spec.get("managedBy")
    return managed_by is not None and managed_by != "ray.io/kuberay-operator"


def job_request(rayjob: Mapping[str, Any], job_id: str) -> JobRequest:
    """dashboardclient.ConvertRayJobToReq."""
    spec = rayjob.get("spec") or {}
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"]) if spec.get("runtimeEnvYAML") else None
    resources = json.loads(spec["entrypointResources"]) if spec.get("entrypointResources") else None
    return JobRequest(
        job_id=job_id,
        entrypoint=spec.get("entrypoint", ""),
        runtime_env=runtime_env or None,
        num_cpus=spec.get("entrypointNumCpus") or None,
        num_gpus=spec.get("entrypointNumGpus") or None,
        resources=resources,
        metadata=spec.get("metadata") or None,
    )


def build_cluster_for_rayjob(rayjob: Mapping[str, Any], cluster_name: str) -> dict[str, Any]:
    """constructRayClusterForRayJob: SidecarMode adds the submitter container to the head Pod."""
    spec = rayjob["spec"]
    mode = submission_mode(spec)
    sidecar = mode == "SidecarMode"
    body = owned_cluster_body(
        rayjob,
        k.CRD_RAYJOB,
        cluster_name,
        spec["rayClusterSpec"],
        extra_labels={k.RAY_JOB_SUBMISSION_MODE_LABEL: mode},
        extra_annotations={k.DISABLE_PROVISIONED_HEAD_RESTART_ANNOTATION: "true"} if sidecar else None,
    )
    if sidecar:
        pod_spec = body["spec"]["headGroupSpec"]["template"]["spec"]
        pod_spec["containers"].append(_submitter_container(rayjob, pod_spec["containers"][0]))
        pod_spec["restartPolicy"] = "Never"
    return body


def _submitter_container(rayjob: Mapping[str, Any], head: Mapping[str, Any]) -> dict[str, Any]:
    """getSubmitterContainer (SidecarMode), shortened: the same image running ``ray job submit``."""
    status = rayjob.get("status") or {}
    spec = rayjob["spec"]
    address = "http://127.0.0.1:8265"
    command = f"ray job submit --address {address} --submission-id {status.get('jobId', '')} -- {spec.get('entrypoint', '').strip()}"
    return {
        "name": k.SUBMITTER_CONTAINER_NAME,
        "image": head.get("image", ""),
        "command": ["/bin/bash", "-ce", "--"],
        "args": [command],
        "env": [
            {"name": "PYTHONUNBUFFERED", "value": "1"},
            {"name": "RAY_DASHBOARD_ADDRESS", "value": status.get("dashboardURL", "")},
            {"name": "RAY_JOB_SUBMISSION_ID", "value": status.get("jobId", "")},
        ],
    }


class _Reconcile:
    """One pass of RayJobReconciler.Reconcile over an observation. ``status`` is mutated in place."""

    def __init__(self, obs: RayJobObservation, settings: RayJobSettings) -> None:
        self.obs = obs
        self.settings = settings
        self.rayjob = obs.rayjob
        self.meta = obs.rayjob["metadata"]
        self.spec: Mapping[str, Any] = obs.rayjob.get("spec") or {}
        self.old_status: dict[str, Any] = copy.deepcopy(obs.rayjob.get("status") or {})
        self.status: dict[str, Any] = copy.deepcopy(self.old_status)
        self.outcome = Outcome(requeue_after=settings.requeue_seconds)
        self.now = obs.now

    # -- helpers -------------------------------------------------------------------------------
    def _set(self, **fields: Any) -> None:
        """Write status fields; empty values are dropped, as Go's omitempty does on the wire."""
        for key, value in fields.items():
            if value in (None, "", {}):
                self.status.pop(key, None)
            else:
                self.status[key] = value

    def _fail(self, reason: str, message: str, job_status: str | None = None) -> None:
        self._set(jobDeploymentStatus="Failed", reason=reason, message=message)
        if job_status is not None:
            self._set(jobStatus=job_status)

    def _event(self, type_: str, reason: str, action: str, message: str) -> None:
        self.outcome.events.append(EventSpec(type_, reason, action, message))

    def _requeue_only(self) -> Outcome:
        """``return ctrl.Result{RequeueAfter: ...}`` before the status update."""
        return Outcome(actions=self.outcome.actions, events=self.outcome.events, requeue_after=self.settings.requeue_seconds)

    def _done(self) -> Outcome:
        """``return ctrl.Result{}, nil`` before the status update."""
        return Outcome(actions=self.outcome.actions, events=self.outcome.events, requeue_after=None)

    def _start_time(self) -> datetime:
        return parse_time(self.status.get("startTime")) or self.now

    @property
    def cluster_selector_mode(self) -> bool:
        return bool(self.spec.get("clusterSelector"))

    @property
    def cluster_name(self) -> str:
        return self.status.get("rayClusterName", "")

    # -- entry ---------------------------------------------------------------------------------
    def run(self) -> Outcome:
        if managed_by_other_controller(self.spec):
            return self._done()
        if self.meta.get("deletionTimestamp"):
            return self._being_deleted()
        failure = validate_rayjob(self.rayjob)
        if failure is not None:
            self._event("Warning", failure.event_reason, "Validate", f"{self.meta.get('namespace')}/{self.meta['name']}: {failure.message}")
            self._set(jobDeploymentStatus="ValidationFailed", reason="ValidationFailed", message=failure.message)
            self.outcome.requeue_after = None
            return self._finish(apply_backoff=False)
        handler = {
            "": self._new,
            "Initializing": self._initializing,
            "Waiting": self._waiting,
            "Running": self._running,
            "Suspending": self._releasing_resources,
            "Retrying": self._releasing_resources,
            "Suspended": self._suspended,
            "Complete": self._finished,
            "Failed": self._finished,
        }.get(self.status.get("jobDeploymentStatus", ""))
        if handler is None:
            return self._requeue_only()
        early = handler()
        if early is not None:
            return early
        return self._finish(apply_backoff=True)

    def _being_deleted(self) -> Outcome:
        """The deletionTimestamp branch: stop a possibly running Ray job, then drop the finalizer."""
        if not is_job_terminal(self.status.get("jobStatus")) and self.status.get("jobId"):
            self.outcome.actions.append(StopRayJob(self.cluster_name, self.status["jobId"]))
        self.outcome.actions.append(RemoveFinalizer(k.RAYJOB_FINALIZER))
        return self._requeue_only()

    # -- states --------------------------------------------------------------------------------
    def _new(self) -> Outcome | None:
        if k.RAYJOB_FINALIZER not in (self.meta.get("finalizers") or []):
            self.outcome.actions.append(AddFinalizer(k.RAYJOB_FINALIZER))
        self._init_status()
        return None

    def _init_status(self) -> None:
        """initRayJobStatusIfNeed."""
        status = self.status
        if status.get("jobId") and status.get("rayClusterName") and status.get("jobStatus"):
            return
        if submission_mode(self.spec) != "InteractiveMode" and not status.get("jobId"):
            self._set(jobId=self.spec.get("jobId") or k.generate_ray_job_id(self.meta["name"]))
        if not status.get("rayClusterName"):
            selected = (self.spec.get("clusterSelector") or {}).get(k.CLUSTER_SELECTOR_KEY)
            self._set(rayClusterName=selected or k.generate_ray_cluster_name(self.meta["name"]))
        self._set(jobDeploymentStatus="Initializing", startTime=format_time(self.now))

    def _initializing(self) -> Outcome | None:
        if self._suspending_if_needed() or self._active_deadline_exceeded() or self._pre_running_deadline_exceeded():
            return None
        cluster = self._get_or_create_cluster()
        if cluster is None:
            return self._requeue_only()
        if not self.status.get("dashboardURL"):
            if (cluster.get("status") or {}).get("state") != "ready":
                self.status["rayClusterStatus"] = copy.deepcopy(cluster.get("status") or {})
                return None
            url = self._dashboard_url()
            if not url:
                return self._requeue_only()
            self.status["dashboardURL"] = url
        mode = submission_mode(self.spec)
        if mode == "InteractiveMode":
            self._set(jobDeploymentStatus="Waiting")
            return None
        if mode in ("K8sJobMode", "SidecarMode") and self.obs.submitter is None:
            self.outcome.actions.append(self._start_submitter())
        self._set(jobDeploymentStatus="Running")
        return None

    def _waiting(self) -> Outcome | None:
        if self._pre_running_deadline_exceeded():
            return None
        if not self.spec.get("jobId"):
            return self._requeue_only()
        self._set(jobId=self.spec["jobId"], jobDeploymentStatus="Running")
        return None

    def _running(self) -> Outcome | None:
        if (
            self._suspending_if_needed()
            or self._active_deadline_exceeded()
            or self._transition_grace_period_exceeded()
            or self._status_check_timeout_exceeded()
        ):
            return None
        cluster = self._get_or_create_cluster()
        if cluster is None:
            return self._requeue_only()
        self._reconcile_owner_head_service(cluster)
        finished_at: datetime | None = None
        if has_submitter(self.spec):
            if self.obs.submitter is None:
                # The submitter lives in the controller's memory (there is no batch/v1 Job here): after a
                # controller restart re-create it; like KubeRay's, it finds the Ray job already submitted.
                self.outcome.actions.append(self._start_submitter())
                return self._requeue_only()
            should_update, finished_at = self._check_submitter(self.obs.submitter)
            if self._submitter_finished_timeout_exceeded(finished_at) or should_update:
                return None
        info = self.obs.job_info
        if isinstance(info, JobInfoError):
            return None if self._record_status_check_failure() else self._requeue_only()
        if info is None:
            return self._job_not_found(finished_at)
        self.status.pop("jobStatusCheckFailureStartTime", None)
        self._apply_job_info(info, cluster, finished_at)
        return None

    def _releasing_resources(self) -> Outcome | None:
        """Suspending / Retrying: delete the cluster and the submitter, then reset the status."""
        cluster_deleted = self._delete_cluster_resources()
        submitter_deleted = True
        if submission_mode(self.spec) == "K8sJobMode" and self.obs.submitter is not None:
            self.outcome.actions.append(DeleteSubmitter())
            submitter_deleted = False
        if not (cluster_deleted and submitter_deleted):
            return Outcome(actions=self.outcome.actions, events=self.outcome.events, requeue_after=self.settings.deletion_poll_seconds)
        for field_name in ("rayClusterStatus", "rayClusterName", "dashboardURL", "jobId", "message", "reason", "rayJobInfo", "jobStatusCheckFailureStartTime"):
            self.status.pop(field_name, None)
        next_status = "Suspended" if self.status.get("jobDeploymentStatus") == "Suspending" else ""
        self._set(jobStatus="", jobDeploymentStatus=next_status)
        return None

    def _suspended(self) -> Outcome | None:
        if not self.spec.get("suspend"):
            self._set(jobStatus="", jobDeploymentStatus="")
            return None
        return self._done()

    def _finished(self) -> Outcome:
        """Complete / Failed: nothing but the cleanup and deletion policies."""
        if self.cluster_selector_mode:
            return self._done()
        actions, requeue = handle_finished_rayjob(self.rayjob, self.obs.cluster, self.now, self.settings)
        self.outcome.actions.extend(actions)
        return Outcome(actions=self.outcome.actions, events=self.outcome.events, requeue_after=requeue)

    # -- pieces of Running ---------------------------------------------------------------------
    def _check_submitter(self, submitter: SubmitterState) -> tuple[bool, datetime | None]:
        """checkSubmitterAndUpdateStatusIfNeeded."""
        job_failed = self.status.get("jobStatus") == "FAILED"
        if submission_mode(self.spec) == "SidecarMode":
            if not self.obs.head_pod_present:
                self._fail("AppFailed", "Ray head pod not found.")
                return True, None
            message = f"Ray head pod container {k.SUBMITTER_CONTAINER_NAME} terminated with exit code 1: Error"
        else:
            message = f"Job submission has failed. Reason: {submitter.failure_reason}. Message: {submitter.failure_message}"
        if not submitter.failed:
            return False, submitter.finished_at
        if job_failed:  # the user's code failed; the job's own message stays
            self._set(jobDeploymentStatus="Failed", reason="AppFailed")
        else:
            self._fail("SubmissionFailed", message)
        return True, submitter.finished_at

    def _job_not_found(self, finished_at: datetime | None) -> Outcome | None:
        if submission_mode(self.spec) == "HTTPMode":
            # reconcileHTTPModeJobNotFound: submit; a failure starts the status-check failure timer.
            failed_status = None
            if "jobStatusCheckFailureStartTime" not in self.status:
                failed_status = self._finalized({**self.status, "jobStatusCheckFailureStartTime": format_time(self.now)})
            self.outcome.actions.append(SubmitJob(self.cluster_name, job_request(self.rayjob, self.status.get("jobId", "")), failed_status))
            if self.status.pop("jobStatusCheckFailureStartTime", None) is not None:
                return None
            return self._requeue_only()
        if finished_at is not None:
            self._fail("AppFailed", "Submitter completed but Ray job not found in RayCluster.")
            return None
        return self._requeue_only()

    def _apply_job_info(self, info: JobInfo, cluster: Mapping[str, Any], finished_at: datetime | None) -> None:
        terminal = info.is_terminal and (finished_at is not None or not has_submitter(self.spec))
        deployment, reason = "Running", ""
        if terminal:
            deployment = "Failed" if info.status == "FAILED" else "Complete"
            reason = "AppFailed" if info.status == "FAILED" else ""
        self.status["rayClusterStatus"] = copy.deepcopy(cluster.get("status") or {})
        self._set(jobStatus=info.status, jobDeploymentStatus=deployment, reason=reason, message=info.message)
        job_info = dict(self.status.get("rayJobInfo") or {})
        if info.start_time_ms:
            job_info["startTime"] = format_time(from_millis(info.start_time_ms))
        if info.end_time_ms:
            job_info["endTime"] = format_time(from_millis(info.end_time_ms))
        self._set(rayJobInfo=job_info)

    def _start_submitter(self) -> StartSubmitter:
        backoff = ((self.spec.get("submitterConfig") or {}).get("backoffLimit"))
        return StartSubmitter(
            self.cluster_name,
            job_request(self.rayjob, self.status.get("jobId", "")),
            backoff_limit=2 if backoff is None else int(backoff),
        )

    def _get_or_create_cluster(self) -> Mapping[str, Any] | None:
        """getOrCreateRayClusterInstance: None means "error, requeue"."""
        if self.obs.cluster is not None:
            return self.obs.cluster
        namespace = self.meta.get("namespace")
        if self.cluster_selector_mode:
            self._event(
                "Warning",
                "RayClusterNotFound",
                "Validate",
                f"RayCluster {namespace}/{self.cluster_name} set in the clusterSelector is not found. It must be created manually",
            )
            return None
        body = build_cluster_for_rayjob({**self.rayjob, "status": self.status}, self.cluster_name)
        self.outcome.actions.append(CreateRayCluster(body))
        return body  # a just-created RayCluster has an empty status

    def _dashboard_url(self) -> str:
        """utils.FetchHeadServiceURL for the dashboard port."""
        service = self.obs.cluster_head_service
        if service is None:
            return ""
        port = port_of(service, k.DASHBOARD_PORT_NAME)
        if port is None:
            return ""
        return k.head_service_url(service["metadata"]["name"], service["metadata"].get("namespace", ""), port)

    def _reconcile_owner_head_service(self, cluster: Mapping[str, Any]) -> None:
        """reconcileServices: ``<rayjob>-head-svc`` follows the current cluster (not in clusterSelector mode)."""
        if self.cluster_selector_mode:
            return
        existing = self.obs.owner_head_service
        cluster_name = cluster["metadata"]["name"]
        if existing is not None and ((existing.get("spec") or {}).get("selector") or {}).get(k.RAY_CLUSTER_LABEL) == cluster_name:
            return
        body = build_owner_head_service(self.rayjob, k.CRD_RAYJOB, cluster)
        self.outcome.actions.append(EnsureOwnerHeadService(body, cluster_name))

    def _delete_cluster_resources(self) -> bool:
        """deleteClusterResources: True once the cluster is gone (never deletes a selected cluster)."""
        if self.cluster_selector_mode:
            return True
        cluster = self.obs.cluster
        if cluster is None:
            return True
        if not cluster["metadata"].get("deletionTimestamp"):
            self.outcome.actions.append(DeleteRayCluster(cluster["metadata"]["name"]))
        return False

    # -- checks (each returns True when it changed the status and the switch should break) -------
    def _suspending_if_needed(self) -> bool:
        """updateStatusToSuspendingIfNeeded: only Running and Initializing may become Suspending."""
        if not self.spec.get("suspend"):
            return False
        if self.status.get("jobDeploymentStatus") not in ("Running", "Initializing"):
            return False
        self._set(jobDeploymentStatus="Suspending")
        return True

    def _deadline_exceeded(self, field_name: str, reason: str) -> bool:
        """Fail when ``spec.<field_name>`` seconds have passed since status.startTime."""
        seconds = self.spec.get(field_name)
        if seconds is None or self.now < self._start_time() + timedelta(seconds=seconds):
            return False
        label = field_name[0].upper() + field_name[1:]
        self._fail(
            reason,
            f"The RayJob has passed the {field_name}. StartTime: {self.status.get('startTime')}. {label}: {seconds}",
        )
        return True

    def _active_deadline_exceeded(self) -> bool:
        """checkActiveDeadlineAndUpdateStatusIfNeeded."""
        return self._deadline_exceeded("activeDeadlineSeconds", "DeadlineExceeded")

    def _pre_running_deadline_exceeded(self) -> bool:
        """checkPreRunningDeadlineAndUpdateStatusIfNeeded."""
        return self._deadline_exceeded("preRunningDeadlineSeconds", "PreRunningDeadlineExceeded")

    def _transition_grace_period_exceeded(self) -> bool:
        """checkTransitionGracePeriodAndUpdateStatusIfNeeded."""
        job_status = self.status.get("jobStatus")
        if not is_job_terminal(job_status):
            return False
        end = parse_time((self.status.get("rayJobInfo") or {}).get("endTime"))
        if end is None or self.now < end + timedelta(seconds=self.settings.transition_grace_period_seconds):
            return False
        self._set(
            jobDeploymentStatus="Failed" if job_status == "FAILED" else "Complete",
            reason="JobDeploymentStatusTransitionGracePeriodExceeded",
            message="JobDeploymentStatus does not transition to Complete or Failed within the grace period after JobStatus reaches a terminal state.",
        )
        return True

    def _status_check_timeout_exceeded(self) -> bool:
        """checkJobStatusCheckTimeoutAndUpdateStatusIfNeeded."""
        started = parse_time(self.status.get("jobStatusCheckFailureStartTime"))
        timeout = self.settings.status_check_timeout_seconds
        if started is None or self.now < started + timedelta(seconds=timeout):
            return False
        self._fail(
            "JobStatusCheckTimeoutExceeded",
            f"Job status checks have been failing since {started.strftime('%Y-%m-%d %H:%M:%S')}; exceeded timeout of {timeout}s",
        )
        return True

    def _submitter_finished_timeout_exceeded(self, finished_at: datetime | None) -> bool:
        """checkSubmitterFinishedTimeoutAndUpdateStatusIfNeeded."""
        timeout = self.settings.submitter_finished_timeout_seconds
        if finished_at is None or self.now < finished_at + timedelta(seconds=timeout):
            return False
        self._fail(
            "JobDeploymentStatusTransitionGracePeriodExceeded",
            f"The RayJob submitter finished at {finished_at.strftime('%Y-%m-%d %H:%M:%S')} but the ray job did not reach terminal state within {timeout}s",
            job_status="FAILED",
        )
        return True

    def _record_status_check_failure(self) -> bool:
        """recordJobStatusCheckFailure: start the timer once."""
        if "jobStatusCheckFailureStartTime" in self.status:
            return False
        self.status["jobStatusCheckFailureStartTime"] = format_time(self.now)
        return True

    # -- the tail of Reconcile -------------------------------------------------------------------
    def _apply_backoff_limit(self) -> None:
        """checkBackoffLimitAndUpdateStatusIfNeeded: count the attempt; retry a Failed one if allowed."""
        status = self.status
        failed = int(status.get("failed") or 0) + (status.get("jobDeploymentStatus") == "Failed")
        succeeded = int(status.get("succeeded") or 0) + (
            status.get("jobStatus") == "SUCCEEDED" and status.get("jobDeploymentStatus") == "Complete"
        )
        status["failed"], status["succeeded"] = failed, succeeded
        limit = self.spec.get("backoffLimit")
        if status.get("jobDeploymentStatus") != "Failed" or limit is None or failed >= limit + 1:
            return
        if status.get("reason") in ("DeadlineExceeded", "JobStatusCheckTimeoutExceeded"):
            return
        status["jobDeploymentStatus"] = "Retrying"

    def _finalized(self, status: dict[str, Any]) -> dict[str, Any] | None:
        """updateRayJobStatus: write only when a field the state machine keys on changed; stamp endTime
        when the deployment status becomes terminal."""
        old = self.old_status
        changed = (
            old.get("jobStatus", "") != status.get("jobStatus", "")
            or old.get("jobDeploymentStatus", "") != status.get("jobDeploymentStatus", "")
            or inconsistent_cluster_status(old.get("rayClusterStatus"), status.get("rayClusterStatus"))
            or old.get("jobStatusCheckFailureStartTime") != status.get("jobStatusCheckFailureStartTime")
        )
        if not changed:
            return None
        if status.get("jobDeploymentStatus") in ("Complete", "Failed"):
            status["endTime"] = format_time(self.now)
        return status

    def _finish(self, *, apply_backoff: bool) -> Outcome:
        if apply_backoff:
            self._apply_backoff_limit()
        self.outcome.status = self._finalized(self.status)
        return self.outcome


def reconcile_rayjob(observation: RayJobObservation, settings: RayJobSettings | None = None) -> Outcome:
    """One KubeRay RayJob reconcile over ``observation``; pure (no I/O, time from the observation)."""
    return _Reconcile(observation, settings or RayJobSettings()).run()
