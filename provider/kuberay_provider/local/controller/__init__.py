"""The local KubeRay operator: reconciles RayJobs, RayClusters and RayServices as KubeRay v1.7.0 does,
talking to the Kubernetes API over HTTP (kubernetes_asyncio) and running workloads on a RayBackend.

Entry point: ``run_controller(api_client, backend, stop)``. The RayJob state machine itself is the pure
``reconcile_rayjob`` (rayjob.py); ``Controller`` performs single reconciles (used by tests with the
in-memory API and a fake clock).
"""

from __future__ import annotations

import asyncio

from kubernetes_asyncio.client import ApiClient

from kuberay_provider.local.ray_backend.base import RayBackend

from .api import ClusterAPI
from .clock import Clock, FakeClock, SystemClock
from .http_api import HttpClusterAPI
from .loop import run_loop
from .memory_api import InMemoryClusterAPI
from .rayjob import reconcile_rayjob
from .rayjob_model import RayJobObservation, RayJobSettings
from .reconciler import Controller, ControllerSettings

__all__ = [
    "Clock",
    "ClusterAPI",
    "Controller",
    "ControllerSettings",
    "FakeClock",
    "HttpClusterAPI",
    "InMemoryClusterAPI",
    "RayJobObservation",
    "RayJobSettings",
    "SystemClock",
    "reconcile_rayjob",
    "run_cluster_api_controller",
    "run_controller",
]


async def run_cluster_api_controller(
    api: ClusterAPI,
    backend: RayBackend,
    stop: asyncio.Event,
    *,
    resync_seconds: float = 30.0,
    workers: int = 4,
    settings: ControllerSettings | None = None,
    clock: Clock | None = None,
) -> None:
    """Run the controller against any ClusterAPI until ``stop`` is set."""
    controller = Controller(api, backend, clock=clock, settings=settings)
    await run_loop(api, controller, stop, resync_seconds=resync_seconds, workers=workers)


async def run_controller(
    api_client: ApiClient,
    backend: RayBackend,
    stop: asyncio.Event,
    *,
    resync_seconds: float = 30.0,
    workers: int = 4,
    settings: ControllerSettings | None = None,
) -> None:
    """Watch rayjobs/rayclusters/rayservices (and pods) across namespaces through ``api_client`` and
    reconcile them on ``backend`` until ``stop`` is set. The backend is not closed here: its owner does."""
    await run_cluster_api_controller(
        HttpClusterAPI(api_client), backend, stop, resync_seconds=resync_seconds, workers=workers, settings=settings
    )
