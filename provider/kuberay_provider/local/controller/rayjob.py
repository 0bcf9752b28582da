"""The RayJob state machine of KubeRay v1.7.0 (RayJobReconciler.Reconcile), as a pure function.

``reconcile_rayjob(observation, settings)`` takes what the controller observed (the RayJob, its
RayCluster, the head Service, the Ray job's info, the submitter's state, the time) and returns an
Outcome: actions, the status to write and when to look again. Function names in comments are KubeRay's.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from kuberay_provider.local.ray_backend.base import JobInfo

from . import kuberay as k
from .actions import (
    AddFinalizer,
    CreateRayCluster,
    DeleteRayCluster,
    DeleteSubmitter,
    EnsureOwnerHeadService,
    Outcome,
    RemoveFinalizer,
    StartSubmitter,
    StopRayJob,
    SubmitJob,
)
from .clock import format_time, from_millis
from .deletion import handle_finished_rayjob
from .rayjob_model import (
    JobInfoError,
    RayJobObservation,
    RayJobSettings,
    SubmitterState,
    build_cluster_for_rayjob,
    has_submitter,
    is_job_terminal,
    job_request,
    managed_by_other_controller,
    submission_mode,
)
from .rayjob_pass import RayJobPass
from .services import build_owner_head_service, port_of
from .validation import validate_rayjob


class _Reconcile(RayJobPass):
    """One pass of RayJobReconciler.Reconcile over an observation."""

    # -- entry ---------------------------------------------------------------------------------
    def run(self) -> Outcome:
        if managed_by_other_controller(self.spec):
            return self._done()
        if self.meta.get("deletionTimestamp"):
            return self._being_deleted()
        failure = validate_rayjob(self.rayjob)
        if failure is not None:
            self._event(
                "Warning",
                failure.event_reason,
                "Validate",
                f"{self.meta.get('namespace')}/{self.meta['name']}: {failure.message}",
            )
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
            return Outcome(
                actions=self.outcome.actions,
                events=self.outcome.events,
                requeue_after=self.settings.deletion_poll_seconds,
            )
        for field_name in (
            "rayClusterStatus",
            "rayClusterName",
            "dashboardURL",
            "jobId",
            "message",
            "reason",
            "rayJobInfo",
            "jobStatusCheckFailureStartTime",
        ):
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
            message = (
                f"Job submission has failed. Reason: {submitter.failure_reason}. Message: {submitter.failure_message}"
            )
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
                failed_status = self._finalized(
                    {**self.status, "jobStatusCheckFailureStartTime": format_time(self.now)}
                )
            self.outcome.actions.append(
                SubmitJob(self.cluster_name, job_request(self.rayjob, self.status.get("jobId", "")), failed_status)
            )
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
        backoff = (self.spec.get("submitterConfig") or {}).get("backoffLimit")
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
        if (
            existing is not None
            and ((existing.get("spec") or {}).get("selector") or {}).get(k.RAY_CLUSTER_LABEL) == cluster_name
        ):
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


def reconcile_rayjob(observation: RayJobObservation, settings: RayJobSettings | None = None) -> Outcome:
    """One KubeRay RayJob reconcile over ``observation``; pure (no I/O, time from the observation)."""
    return _Reconcile(observation, settings or RayJobSettings()).run()
