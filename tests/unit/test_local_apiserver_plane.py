"""LocalControlPlane as a whole: async use, and the local controller reconciling through the API server."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from kuberay_provider.local.plane import LocalControlPlane

CRDS_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "kuberay" / "crds"
SAMPLE_JOB = CRDS_DIR.parent / "samples" / "ray-job.sample.yaml"


async def test_async_context_manager_serves_and_cleans_up() -> None:
    async with LocalControlPlane(controller=False) as plane:
        home = plane.home
        async with plane.async_api_client() as api_client:
            from kubernetes_asyncio import client as async_client

            version = await async_client.VersionApi(api_client).get_code()
        assert version.major == "1"
    assert not home.exists()  # a temporary home goes away with the plane


@pytest.mark.skipif(not SAMPLE_JOB.exists(), reason="KubeRay samples not found next to the project")
def test_the_controller_runs_a_sample_rayjob_through_the_api_server() -> None:
    from kuberay_provider.local.ray_backend import FakeRayBackend

    with LocalControlPlane(crds_dir=CRDS_DIR, backend=FakeRayBackend(), tls=False) as plane, plane.api_client() as api:
        assert plane.controller_running
        custom = client.CustomObjectsApi(api)
        for document in yaml.safe_load_all(SAMPLE_JOB.read_text()):
            if document["kind"] == "ConfigMap":
                client.CoreV1Api(api).create_namespaced_config_map("default", document)
            else:
                custom.create_namespaced_custom_object("ray.io", "v1", "default", "rayjobs", document)
        deadline = time.monotonic() + 20
        status: dict = {}
        while time.monotonic() < deadline and status.get("jobStatus") != "SUCCEEDED":
            time.sleep(0.2)
            status = custom.get_namespaced_custom_object("ray.io", "v1", "default", "rayjobs", "rayjob-sample").get(
                "status", {}
            )
        assert status.get("jobStatus") == "SUCCEEDED", status
        assert status.get("rayClusterName")
        custom.delete_namespaced_custom_object("ray.io", "v1", "default", "rayjobs", "rayjob-sample")
        # The RayJob's finalizer lets the controller clean up first; then garbage collection takes the pods.
        remaining = ["not listed yet"]
        while remaining and time.monotonic() < deadline + 20:
            time.sleep(0.2)
            # Raw JSON: the typed Pod model insists on fields (image) that a local pod may leave out.
            listed = client.CoreV1Api(api).list_namespaced_pod("default", _preload_content=False)
            remaining = [
                pod["metadata"]["name"]
                for pod in json.loads(listed.data)["items"]
                if pod["metadata"]["name"].startswith(status["rayClusterName"])
            ]
        assert not remaining
