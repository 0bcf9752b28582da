"""What the RayJob state machine reads and builds: its settings, the observation, the submitter and
the RayCluster a RayJob creates (KubeRay v1.7.0's rayjob_controller.go and common/job.go).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import yaml

from kuberay_provider.local.ray_backend.base import (
    TERMINAL_JOB_STATUSES,
    JobInfo,
    JobRequest,
)

from . import kuberay as k
from .raycluster import owned_cluster_body


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
