"""docs/prefect.md's RayService flow, run as written by real Prefect flows against the local control
plane's API server and KubeRay RayService reconciliation, with the fast Ray-backend double standing in
for Ray Serve (tests/e2e/test_rayservice.py deploys to the real Ray Serve)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kuberay_provider.local.plane import LocalControlPlane
from kuberay_provider.local.ray_backend import FakeRayBackend
from tests.unit.test_docs_snippets import page_snippets, run_snippet

CRDS = Path(__file__).resolve().parents[3] / "shared/kuberay/crds"


@pytest.fixture(scope="module")
def plane() -> Iterator[LocalControlPlane]:
    with LocalControlPlane(crds_dir=CRDS, backend=FakeRayBackend()) as plane:
        yield plane


@pytest.fixture(scope="module")
def harness() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_the_docs_flow_creates_then_updates_and_the_service_is_served(plane: LocalControlPlane, harness: None) -> None:
    from prefect_kubernetes.credentials import KubernetesClusterConfig, KubernetesCredentials

    from kuberay_provider.core.resources import RAYSERVICE
    from kuberay_provider.core.spec import simple_cluster_spec
    from kuberay_provider.prefect import delete_rayservice

    credentials = KubernetesCredentials(cluster_config=KubernetesClusterConfig.from_file(plane.kubeconfig_path))
    [snippet] = [body for body in page_snippets("prefect.md") if "deploy_rayservice(scorer)" in body]
    given = {"credentials": credentials, "cluster_spec": simple_cluster_spec(image="rayproject/ray:2.60.0")}
    flows = run_snippet(snippet, given, "docs/prefect.md RayService snippet")

    first = flows["roll_out"](2.0)
    assert first["change"] == "created" and first["ready"] and first["applications"] == {"scorer": "RUNNING"}
    assert first["serve_endpoint"] == "http://scorer-serve-svc.default.svc.cluster.local:8000"
    second = flows["roll_out"](3.0)
    assert second["change"] == "updated" and second["ready"] and second["active_cluster"] == first["active_cluster"]
    with plane.api_client() as api_client:
        from kuberay_provider.core.kube.sync_client import RayObjectsClient

        stored = RayObjectsClient(api_client).get(RAYSERVICE, "default", "scorer")
        assert "weight: 3.0" in stored["spec"]["serveConfigV2"]
        assert stored["status"]["observedGeneration"] == stored["metadata"]["generation"] == 2
        assert flows["roll_out"](3.0)["change"] == "unchanged"
        from prefect import flow

        assert flow(lambda: delete_rayservice(flows["scorer"]))() is True
        assert RayObjectsClient(api_client).find(RAYSERVICE, "default", "scorer") is None
