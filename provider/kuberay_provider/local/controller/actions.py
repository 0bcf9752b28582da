"""What a pure reconcile decides to do; the Controller performs these against the API and the backend."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kuberay_provider.local.ray_backend.base import JobRequest


@dataclass(frozen=True)
class AddFinalizer:
    finalizer: str


@dataclass(frozen=True)
class RemoveFinalizer:
    finalizer: str


@dataclass(frozen=True)
class StopRayJob:
    cluster_name: str
    job_id: str


@dataclass(frozen=True)
class CreateRayCluster:
    body: Mapping[str, Any]


@dataclass(frozen=True)
class EnsureOwnerHeadService:
    """Create ``<owner>-head-svc``, or repoint it when the RayCluster behind it changed (reconcileServices)."""

    body: Mapping[str, Any]
    cluster_name: str


@dataclass(frozen=True)
class StartSubmitter:
    """K8sJobMode's submitter Job / SidecarMode's submitter container: submit unless the id already exists."""

    cluster_name: str
    request: JobRequest
    backoff_limit: int = 2  # SubmitterConfig.BackoffLimit default: at most 3 attempts


@dataclass(frozen=True)
class DeleteSubmitter:
    pass


@dataclass(frozen=True)
class SubmitJob:
    """HTTPMode submission (reconcileHTTPModeJobNotFound). On failure the status to write instead."""

    cluster_name: str
    request: JobRequest
    status_if_failed: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class DeleteRayCluster:
    name: str


@dataclass(frozen=True)
class SuspendWorkerGroups:
    cluster_name: str


@dataclass(frozen=True)
class DeleteSelf:
    pass


Action = (
    AddFinalizer
    | RemoveFinalizer
    | StopRayJob
    | CreateRayCluster
    | EnsureOwnerHeadService
    | StartSubmitter
    | DeleteSubmitter
    | SubmitJob
    | DeleteRayCluster
    | SuspendWorkerGroups
    | DeleteSelf
)


@dataclass(frozen=True)
class EventSpec:
    type: str  # Normal | Warning
    reason: str
    action: str
    message: str


@dataclass
class Outcome:
    """A reconcile's decision: the status to write (None: nothing changed worth writing), the actions to
    perform first, events, and when to look again (None: not until something changes)."""

    status: dict[str, Any] | None = None
    actions: list[Action] = field(default_factory=list)
    events: list[EventSpec] = field(default_factory=list)
    requeue_after: float | None = None
