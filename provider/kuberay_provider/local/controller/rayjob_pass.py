"""One reconcile pass over a RayJob: the status it writes, and KubeRay's deadline, backoff and
status-update checks (the check*AndUpdateStatusIfNeeded functions of rayjob_controller.go).

The state machine itself (``rayjob.py``) drives these.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from .actions import (
    EventSpec,
    Outcome,
)
from .clock import format_time, parse_time
from .conditions import inconsistent_cluster_status
from .rayjob_model import RayJobObservation, RayJobSettings, is_job_terminal


class RayJobPass:
    """The state of one reconcile pass. ``status`` is mutated in place and written once at the end."""

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
        return Outcome(
            actions=self.outcome.actions, events=self.outcome.events, requeue_after=self.settings.requeue_seconds
        )

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
        name: str = self.status.get("rayClusterName", "")
        return name

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
