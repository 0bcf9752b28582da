"""RayClusterState and RayServiceState read KubeRay's status fields as KubeRay v1.7.0 writes them."""

from __future__ import annotations

from typing import Any

import pytest

from kuberay_provider.core.clusters import RayClusterState
from kuberay_provider.core.services import RayServiceState, rayservice_manifest


def cluster(state: str = "", head_ready: str = "False", **status: Any) -> dict[str, Any]:
    conditions = [
        {
            "type": "HeadPodReady",
            "status": head_ready,
            "reason": "HeadPodRunningAndReady" if head_ready == "True" else "HeadPodNotFound",
        }
    ]
    return {
        "metadata": {"name": "c", "namespace": "ns"},
        "status": {"state": state, "conditions": conditions, **status},
    }


def test_a_cluster_is_ready_only_with_state_ready_and_its_head_pod_ready() -> None:
    assert not RayClusterState.from_object(cluster()).is_ready
    assert not RayClusterState.from_object(cluster("ready", "False")).is_ready  # the head restarts: state lags
    ready = RayClusterState.from_object(cluster("ready", "True", readyWorkerReplicas=2, desiredWorkerReplicas=2))
    assert (
        ready.is_ready and (ready.ready_workers, ready.desired_workers) == (2, 2) and ready.head_service == "c-head-svc"
    )
    assert ready.describe() == "RayCluster ns/c: state=ready head=ready workers=2/2"


def service(
    generation: int = 2,
    observed: int = 2,
    ready: str = "True",
    upgrading: str = "False",
    apps: dict[str, str] | None = None,
    pending: str = "",
) -> dict[str, Any]:
    applications = {
        name: {"status": status} for name, status in (apps if apps is not None else {"app": "RUNNING"}).items()
    }
    return {
        "metadata": {"name": "svc", "namespace": "ns", "generation": generation},
        "status": {
            "observedGeneration": observed,
            "conditions": [
                {"type": "Ready", "status": ready, "reason": "NonZeroServeEndpoints"},
                {"type": "UpgradeInProgress", "status": upgrading},
            ],
            "activeServiceStatus": {"rayClusterName": "svc-a", "applicationStatuses": applications},
            "pendingServiceStatus": {"rayClusterName": pending} if pending else {},
        },
    }


def test_a_service_is_ready_when_the_latest_generation_is_served_without_an_upgrade() -> None:
    assert RayServiceState.from_object(service()).is_ready
    assert not RayServiceState.from_object(service(generation=3)).is_ready  # the update is not applied yet
    upgrading = RayServiceState.from_object(service(upgrading="True", pending="svc-b"))
    assert not upgrading.is_ready and upgrading.pending_cluster == "svc-b"
    assert not RayServiceState.from_object(service(apps={"app": "DEPLOYING"})).is_ready
    failed = RayServiceState.from_object(service(apps={"app": "DEPLOY_FAILED", "other": "RUNNING"}))
    assert failed.failed_applications == {"app": "DEPLOY_FAILED"}
    assert RayServiceState.from_object(service()).serve_endpoint == "http://svc-serve-svc.ns.svc.cluster.local:8000"


def test_a_rayservice_needs_a_name_and_takes_the_serve_config_as_a_dict() -> None:
    with pytest.raises(ValueError, match="needs a name"):
        rayservice_manifest(None, None, serve_config={"applications": []})
    manifest = rayservice_manifest("svc", None, serve_config={"applications": [{"name": "a", "import_path": "m:app"}]})
    assert manifest["metadata"] == {"name": "svc", "namespace": "default"}
    assert "import_path: m:app" in manifest["spec"]["serveConfigV2"]
