"""The controller inside the real local API server (LocalControlPlane), with the fake Ray backend."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kuberay_provider.local.controller import HttpClusterAPI
from kuberay_provider.local.controller.api import PODS, RAYCLUSTERS, RAYJOBS, SERVICES
from kuberay_provider.local.ray_backend import FakeRayBackend, JobScript

from .test_local_controller import rayjob

plane_module = pytest.importorskip("kuberay_provider.local.plane")
CRDS = Path(__file__).resolve().parents[3] / "shared/kuberay/crds"


async def test_rayjob_completes_through_the_local_api_server() -> None:
    backend = FakeRayBackend(default_script=JobScript(running_seconds=0.3))
    plane = plane_module.LocalControlPlane(crds_dir=CRDS, tls=False, backend=backend)
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(plane.serve(stop, on_ready=ready.set))
    try:
        await asyncio.wait_for(ready.wait(), 20)
        async with plane.async_api_client() as client:
            api = HttpClusterAPI(client)
            await api.create(RAYJOBS, "default", rayjob(shutdownAfterJobFinishes=True))
            status: dict = {}
            for _ in range(150):
                status = ((await api.get(RAYJOBS, "default", "sample")) or {}).get("status") or {}
                if status.get("jobDeploymentStatus") == "Complete" and not await api.list(RAYCLUSTERS):
                    break
                await asyncio.sleep(0.1)
            assert (status["jobDeploymentStatus"], status["jobStatus"], status["succeeded"]) == (
                "Complete",
                "SUCCEEDED",
                1,
            )
            assert not await api.list(RAYCLUSTERS)  # shutdownAfterJobFinishes
            assert not await api.list(PODS, "default")  # cascade through ownerReferences
            assert [s["metadata"]["name"] for s in await api.list(SERVICES, "default")] == ["sample-head-svc"]
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
