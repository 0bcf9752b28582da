"""Ray backends for the local control plane: the RayBackend protocol, a real local Ray
(LocalRayBackend, one shared head for every RayCluster) and an in-memory double (FakeRayBackend)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import (
    BackendError,
    BackendNotice,
    ClusterEndpoints,
    ClusterRequest,
    ConfigMapMount,
    JobAlreadyExistsError,
    JobInfo,
    JobRequest,
    JobSubmissionError,
    RayBackend,
    RayResources,
)
from .fake import FakeRayBackend, JobScript, ServeScript

if TYPE_CHECKING:
    from .local import LocalRayBackend

__all__ = [
    "BackendError",
    "BackendNotice",
    "ClusterEndpoints",
    "ClusterRequest",
    "ConfigMapMount",
    "FakeRayBackend",
    "JobAlreadyExistsError",
    "JobInfo",
    "JobRequest",
    "JobScript",
    "JobSubmissionError",
    "LocalRayBackend",
    "RayBackend",
    "RayResources",
    "ServeScript",
]


def __getattr__(name: str) -> type[LocalRayBackend]:  # LocalRayBackend imports ray lazily: the fake must not pay for it
    if name == "LocalRayBackend":
        from .local import LocalRayBackend

        return LocalRayBackend
    raise AttributeError(name)
