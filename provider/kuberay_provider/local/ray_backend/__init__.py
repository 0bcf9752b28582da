"""Ray backends for the local control plane: the RayBackend protocol, a real local Ray
(LocalRayBackend, one shared head for every RayCluster) and an in-memory double (FakeRayBackend)."""

from __future__ import annotations

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


def __getattr__(name: str):  # LocalRayBackend imports ray lazily: the fake must not pay for it
    if name == "LocalRayBackend":
        from .local import LocalRayBackend

        return LocalRayBackend
    raise AttributeError(name)
