"""What the local control plane needs from "a Ray": the RayBackend protocol and its value types.

A RayCluster maps to a *cluster key* (``<namespace>/<name>``). A backend may serve every key from one
shared Ray (LocalRayBackend does, to fit a laptop) but must keep the per-cluster bookkeeping KubeRay's
semantics rely on: deleting a cluster stops the Ray jobs submitted to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

TERMINAL_JOB_STATUSES = frozenset({"STOPPED", "SUCCEEDED", "FAILED"})


class BackendError(Exception):
    """The backend could not do what was asked (Ray unreachable, bad request...)."""


class JobSubmissionError(BackendError):
    """Ray refused the submission (bad runtime_env, bad resources...)."""


class JobAlreadyExistsError(JobSubmissionError):
    """The submission id is already used: KubeRay treats this as "already submitted"."""


def cluster_key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


@dataclass(frozen=True)
class BackendNotice:
    """What a backend changed in, or wants known about, a request: the controller records it as an Event
    (``type`` Normal or Warning) on the object that asked."""

    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class ConfigMapMount:
    """A ConfigMap volume of the head container: where it is mounted and the files it provides."""

    mount_path: str
    files: Mapping[str, str]  # path relative to the mount -> content


@dataclass(frozen=True)
class RayResources:
    """Logical resources of a Ray (``ray start --num-cpus --num-gpus --resources``)."""

    num_cpus: float = 0.0
    num_gpus: float = 0.0
    custom: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ClusterRequest:
    """What a backend needs to bring up (or refresh) the Ray behind one RayCluster.

    ``dedicated_resources`` is set when the cluster's rayStartParams declare resources a shared Ray cannot
    be assumed to have (GPUs, custom resources): the Ray serving it must advertise exactly these."""

    namespace: str
    name: str
    ray_version: str = ""
    config_map_mounts: tuple[ConfigMapMount, ...] = ()
    dedicated_resources: RayResources | None = None

    @property
    def key(self) -> str:
        return cluster_key(self.namespace, self.name)


@dataclass(frozen=True)
class ClusterEndpoints:
    """Where the Ray behind a RayCluster listens: port name -> base URL (``http://127.0.0.1:8265``)."""

    urls: Mapping[str, str]
    pod_ip: str = "127.0.0.1"
    warnings: tuple[str, ...] = ()  # recorded as RayVersionMismatch Warning Events
    notices: tuple[BackendNotice, ...] = ()  # recorded as they are, once per cluster

    @property
    def dashboard_url(self) -> str:
        return self.urls.get("dashboard", "")


@dataclass(frozen=True)
class JobRequest:
    """One Ray job submission, as KubeRay's ConvertRayJobToReq builds it."""

    job_id: str
    entrypoint: str
    runtime_env: Mapping[str, Any] | None = None
    num_cpus: float | None = None
    num_gpus: float | None = None
    resources: Mapping[str, float] | None = None
    metadata: Mapping[str, str] | None = None


@dataclass(frozen=True)
class JobInfo:
    """Ray's JobDetails, reduced to what KubeRay reads (times in milliseconds since the epoch, 0 = unset)."""

    job_id: str
    status: str
    message: str = ""
    start_time_ms: int = 0
    end_time_ms: int = 0
    entrypoint: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_JOB_STATUSES


@runtime_checkable
class RayBackend(Protocol):
    """The Ray the local control plane runs workloads on."""

    @property
    def ray_version(self) -> str: ...

    async def ensure_cluster(self, request: ClusterRequest) -> ClusterEndpoints:
        """Bring up (idempotently) the Ray behind a RayCluster and say where it listens."""
        ...

    async def delete_cluster(self, namespace: str, name: str) -> None:
        """Forget a RayCluster: stop the Ray jobs submitted to it. Idempotent."""
        ...

    async def submit_job(self, namespace: str, cluster: str, request: JobRequest) -> tuple[BackendNotice, ...]:
        """Submit a Ray job; JobAlreadyExistsError when the id is taken, JobSubmissionError when refused.
        Returns what the backend adapted (a runtime_env's package lists...), to record on the RayJob."""
        ...

    async def job_info(self, namespace: str, cluster: str, job_id: str) -> JobInfo | None:
        """The job's status, or None when Ray does not know the id (KubeRay's BadRequest / 404)."""
        ...

    async def stop_job(self, namespace: str, cluster: str, job_id: str) -> bool:
        """Ask Ray to stop a job; False when it was not running."""
        ...

    async def job_logs(self, namespace: str, cluster: str, job_id: str) -> str: ...

    async def deploy_serve(self, namespace: str, cluster: str, config: Mapping[str, Any]) -> tuple[BackendNotice, ...]:
        """PUT a Serve config (serveConfigV2 parsed) through the dashboard's Serve REST API; returns what
        the backend adapted, as submit_job does."""
        ...

    async def serve_status(self, namespace: str, cluster: str) -> Mapping[str, Any]:
        """GET /api/serve/applications/ (the ``applications`` mapping), {} when Serve is not running."""
        ...

    async def close(self) -> None:
        """Release what the backend started."""
        ...
