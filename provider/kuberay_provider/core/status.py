"""RayJob / RayCluster / RayService status exactly as KubeRay v1.7.0 defines it (ray.io/v1).

Source: ray-operator/apis/ray/v1/rayjob_types.go and raycluster_types.go. The string values are the
wire values; never translate them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from kuberay_provider.core.schedulers import KUEUE_QUEUE_LABEL


class JobStatus(str, Enum):
    """The Ray job's own status (Ray's JobStatus), mirrored into ``status.jobStatus``."""

    NEW = ""
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    @property
    def is_terminal(self) -> bool:
        # Kept in sync with Ray's JobStatus.is_terminal(), as KubeRay's IsJobTerminal is.
        return self in (JobStatus.STOPPED, JobStatus.SUCCEEDED, JobStatus.FAILED)


class JobDeploymentStatus(str, Enum):
    """KubeRay's lifecycle of the RayJob and its cluster, ``status.jobDeploymentStatus``."""

    NEW = ""
    INITIALIZING = "Initializing"
    RUNNING = "Running"
    COMPLETE = "Complete"
    FAILED = "Failed"
    VALIDATION_FAILED = "ValidationFailed"
    SUSPENDING = "Suspending"
    SUSPENDED = "Suspended"
    RETRYING = "Retrying"
    WAITING = "Waiting"

    @property
    def is_terminal(self) -> bool:
        """KubeRay's IsJobDeploymentTerminal: only Complete and Failed."""
        return self in (JobDeploymentStatus.COMPLETE, JobDeploymentStatus.FAILED)


class JobFailedReason(str, Enum):
    """``status.reason`` values KubeRay writes when a RayJob fails."""

    SUBMISSION_FAILED = "SubmissionFailed"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    PRE_RUNNING_DEADLINE_EXCEEDED = "PreRunningDeadlineExceeded"
    APP_FAILED = "AppFailed"
    TRANSITION_GRACE_PERIOD_EXCEEDED = "JobDeploymentStatusTransitionGracePeriodExceeded"
    JOB_STATUS_CHECK_TIMEOUT_EXCEEDED = "JobStatusCheckTimeoutExceeded"
    VALIDATION_FAILED = "ValidationFailed"


class SubmissionMode(str, Enum):
    K8S_JOB = "K8sJobMode"
    HTTP = "HTTPMode"
    INTERACTIVE = "InteractiveMode"
    SIDECAR = "SidecarMode"


class DeletionPolicyType(str, Enum):
    DELETE_CLUSTER = "DeleteCluster"
    DELETE_WORKERS = "DeleteWorkers"
    DELETE_SELF = "DeleteSelf"
    DELETE_NONE = "DeleteNone"


class ClusterState(str, Enum):
    """RayCluster ``status.state``."""

    READY = "ready"
    SUSPENDED = "suspended"
    FAILED = "failed"  # deprecated upstream but still a value clients may meet


def enum_or_raw(enum: type[Enum], value: Any) -> Any:
    try:
        return enum(value or "")
    except ValueError:
        # A newer KubeRay may add values; keep the raw string rather than crash a running task.
        return value


def _deletes_cluster_by_rule(spec: Mapping[str, Any]) -> bool:
    rules = (spec.get("deletionStrategy") or {}).get("deletionRules") or []
    return not spec.get("clusterSelector") and any(rule.get("policy") == "DeleteCluster" for rule in rules)


@dataclass(frozen=True)
class RayJobState:
    """A read-only view of a RayJob's ``status`` with the questions the adapters ask of it."""

    name: str
    namespace: str
    job_status: JobStatus | str
    deployment_status: JobDeploymentStatus | str
    reason: str = ""
    message: str = ""
    job_id: str = ""
    cluster_name: str = ""
    dashboard_url: str = ""
    start_time: str = ""
    end_time: str = ""
    succeeded: int = 0
    failed: int = 0
    observed_generation: int = 0
    resource_version: str = ""
    suspend: bool = False  # spec.suspend: Kueue (or a user) holds the RayJob back
    queue_name: str = ""  # the Kueue LocalQueue it is queued on ("": none)
    deletes_cluster_by_rule: bool = False  # spec.deletionStrategy.deletionRules has a DeleteCluster rule

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> RayJobState:
        meta = obj.get("metadata") or {}
        status = obj.get("status") or {}
        return cls(
            name=meta.get("name", ""),
            namespace=meta.get("namespace", ""),
            job_status=enum_or_raw(JobStatus, status.get("jobStatus")),
            deployment_status=enum_or_raw(JobDeploymentStatus, status.get("jobDeploymentStatus")),
            reason=status.get("reason", "") or "",
            message=status.get("message", "") or "",
            job_id=status.get("jobId", "") or "",
            cluster_name=status.get("rayClusterName", "") or "",
            dashboard_url=status.get("dashboardURL", "") or "",
            start_time=status.get("startTime", "") or "",
            end_time=status.get("endTime", "") or "",
            succeeded=int(status.get("succeeded") or 0),
            failed=int(status.get("failed") or 0),
            observed_generation=int(status.get("observedGeneration") or 0),
            resource_version=str(meta.get("resourceVersion", "") or ""),
            suspend=(obj.get("spec") or {}).get("suspend") is True,
            queue_name=str((meta.get("labels") or {}).get(KUEUE_QUEUE_LABEL) or ""),
            deletes_cluster_by_rule=_deletes_cluster_by_rule(obj.get("spec") or {}),
        )

    @property
    def is_terminal(self) -> bool:
        """Nothing more will happen without a spec change: Complete, Failed or ValidationFailed.

        KubeRay treats ValidationFailed as a dead end too (it returns without requeue until the spec
        is edited), so a waiter must stop there instead of waiting forever.
        """
        return self.deployment_status in (
            JobDeploymentStatus.COMPLETE,
            JobDeploymentStatus.FAILED,
            JobDeploymentStatus.VALIDATION_FAILED,
        )

    @property
    def succeeded_job(self) -> bool:
        return self.deployment_status == JobDeploymentStatus.COMPLETE and self.job_status == JobStatus.SUCCEEDED

    @property
    def is_waiting_for_submission(self) -> bool:
        """InteractiveMode: the cluster is ready and KubeRay waits for the user's own submission."""
        return self.deployment_status == JobDeploymentStatus.WAITING

    @property
    def is_suspended(self) -> bool:
        return self.deployment_status == JobDeploymentStatus.SUSPENDED

    @property
    def is_queued_for_admission(self) -> bool:
        """Queued on Kueue and not admitted yet: Kueue unsuspends the RayJob when it admits it."""
        return bool(self.queue_name) and self.suspend and not self.is_terminal

    def describe(self) -> str:
        """One line for a task log: statuses, then reason and message when there are any."""
        ds = getattr(self.deployment_status, "value", self.deployment_status) or "New"
        js = getattr(self.job_status, "value", self.job_status) or "-"
        text = f"RayJob {self.namespace}/{self.name}: deployment={ds} job={js}"
        if self.is_queued_for_admission:
            text += f" queued for admission on Kueue LocalQueue {self.queue_name!r}"
        if self.reason:
            text += f" reason={self.reason}"
        if self.message:
            text += f" message={self.message!r}"
        return text

    def failure_summary(self) -> str:
        """Why a terminal RayJob did not succeed, for the exception a task raises."""
        parts = [self.describe()]
        if self.deployment_status == JobDeploymentStatus.COMPLETE and self.job_status != JobStatus.SUCCEEDED:
            parts.append("the Ray job ended without succeeding")
        return "; ".join(parts)


# --- what waiters wait for (light on purpose: a triggerer imports this on its event loop) ---


def is_started(state: RayJobState) -> bool:
    """The Ray job runs (its id is known), or the RayJob is already done: time to follow the log."""
    return state.is_terminal or (state.deployment_status == JobDeploymentStatus.RUNNING and bool(state.job_id))


def is_admitted(state: RayJobState) -> bool:
    """Kueue let the RayJob go (it is no longer suspended), or it ended while queued."""
    return not state.is_queued_for_admission


def is_ready_for_submission(state: RayJobState) -> bool:
    """InteractiveMode waits for our submission, or there is nothing left to submit."""
    return state.is_waiting_for_submission or is_started(state)


class WaitTarget(str, Enum):
    """What a waiter waits for, by name (a trigger's arguments must serialise)."""

    ADMITTED = "admitted"
    STARTED = "started"
    READY_FOR_SUBMISSION = "ready_for_submission"
    TERMINAL = "terminal"

    def reached(self, state: RayJobState) -> bool:
        if self is WaitTarget.ADMITTED:
            return is_admitted(state)
        if self is WaitTarget.STARTED:
            return is_started(state)
        if self is WaitTarget.READY_FOR_SUBMISSION:
            return is_ready_for_submission(state)
        return state.is_terminal


# A trigger hands its result back as plain data, so RayJobState travels as a payload dict too.


def state_to_payload(state: RayJobState) -> dict[str, Any]:
    """JSON-safe: enum members become their wire strings."""
    return {key: value.value if isinstance(value, Enum) else value for key, value in dataclasses.asdict(state).items()}


def state_from_payload(payload: Mapping[str, Any]) -> RayJobState:
    """Inverse of ``state_to_payload`` (wire strings back to the status enums)."""
    status = {
        "jobStatus": payload.get("job_status", ""),
        "jobDeploymentStatus": payload.get("deployment_status", ""),
    }
    rebuilt = RayJobState.from_object({"metadata": {}, "status": status})
    known = {f.name for f in dataclasses.fields(RayJobState)}
    fields = {key: value for key, value in payload.items() if key in known}
    fields.update(job_status=rebuilt.job_status, deployment_status=rebuilt.deployment_status)
    return RayJobState(**fields)
