"""RayCluster steps (core.clusters) against the local control plane: the real API server and KubeRay's
RayCluster reconciliation, with the fast Ray-backend double behind it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kuberay_provider.core.clusters import RayClusterLifecycle, RayClusterRequest
from kuberay_provider.core.errors import KubeRayProviderError, ValidationError
from kuberay_provider.core.job_request import RunIdentity
from kuberay_provider.core.kube.sync_client import RayObjectsClient
from kuberay_provider.core.resources import RAYCLUSTER
from kuberay_provider.core.spec import simple_cluster_spec
from kuberay_provider.core.validation import SchemaRegistry
from kuberay_provider.local.plane import LocalControlPlane
from kuberay_provider.local.ray_backend import FakeRayBackend

CRDS = Path(__file__).resolve().parents[3] / "shared/kuberay/crds"
SPEC = simple_cluster_spec(image="rayproject/ray:2.60.0", workers=1, min_workers=0, max_workers=3)


@pytest.fixture(scope="module")
def clusters() -> Iterator[RayClusterLifecycle]:
    with LocalControlPlane(crds_dir=CRDS, backend=FakeRayBackend(), tls=False) as plane, plane.api_client() as api:
        yield RayClusterLifecycle(RayObjectsClient(api), schemas=SchemaRegistry.from_cluster(api))


def request(run_id: str, **kwargs: Any) -> RayClusterRequest:
    return RayClusterRequest(RunIdentity("dag", "create_cluster", run_id), spec=SPEC, **kwargs)


def pods(clusters: RayClusterLifecycle, name: str, role: str) -> list[str]:
    from kubernetes import client

    core = client.CoreV1Api(clusters.kube.api_client)
    selector = f"ray.io/cluster={name},ray.io/node-type={role}"
    return [p.metadata.name for p in core.list_namespaced_pod("default", label_selector=selector).items]


def test_create_wait_scale_delete(clusters: RayClusterLifecycle) -> None:
    manifest = request("run-1").manifest()
    name = manifest["metadata"]["name"]
    clusters.validate(manifest)
    _, created = clusters.create_or_attach(manifest)
    seen: list[str] = []
    state = clusters.wait_ready("default", name, timeout=60, on_change=lambda s: seen.append(s.describe()))
    assert created and state.is_ready and state.head_service == f"{name}-head-svc"
    assert seen[-1].startswith(f"RayCluster default/{name}: state=ready head=ready")
    assert len(pods(clusters, name, "worker")) == 1

    # A retried create re-attaches: same object, nothing new.
    again, created_again = clusters.create_or_attach(request("run-1").manifest())
    assert (
        not created_again
        and again["metadata"]["uid"] == clusters.kube.get(RAYCLUSTER, "default", name)["metadata"]["uid"]
    )

    clusters.scale("default", name, "workers", 3)
    state = clusters.wait_workers("default", name, timeout=60)
    assert (state.ready_workers, state.desired_workers) == (3, 3) and len(pods(clusters, name, "worker")) == 3

    assert clusters.delete("default", name, timeout=60)
    assert clusters.kube.find(RAYCLUSTER, "default", name) is None
    # Its Pods go with it. A Pod the controller made while the delete ran has an owner already gone, and the
    # garbage collector takes it in the background, as Kubernetes does: allow it a moment.
    deadline = time.monotonic() + 15
    while pods(clusters, name, "head") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert pods(clusters, name, "head") == []
    assert clusters.delete("default", name) is False  # already gone: not an error


def test_scaling_outside_the_group_bounds_or_an_unknown_group_is_refused(clusters: RayClusterLifecycle) -> None:
    manifest = request("run-2").manifest()
    name = manifest["metadata"]["name"]
    clusters.create_or_attach(manifest)
    with pytest.raises(ValidationError) as refused:
        clusters.scale("default", name, "workers", 4)
    assert "spec.workerGroupSpecs[0].replicas" in str(refused.value) and "[0, 3]" in str(refused.value)
    with pytest.raises(KubeRayProviderError, match="no worker group 'gpu'.*workers"):
        clusters.scale("default", name, "gpu", 1)
    assert clusters.kube.get(RAYCLUSTER, "default", name)["spec"]["workerGroupSpecs"][0]["replicas"] == 1  # untouched
    clusters.delete("default", name, wait=False)


def test_a_cluster_of_another_run_is_not_taken_over(clusters: RayClusterLifecycle) -> None:
    mine = request("run-3", name="shared-name").manifest()
    clusters.create_or_attach(mine)
    with pytest.raises(KubeRayProviderError, match="not created by this run"):
        clusters.create_or_attach(request("run-4", name="shared-name").manifest())
    clusters.delete("default", "shared-name", wait=False)


def test_an_invalid_cluster_fails_before_anything_is_created(clusters: RayClusterLifecycle) -> None:
    manifest = request("run-5", name="bad-cluster").manifest()
    manifest["spec"]["workerGroupSpecs"][0]["minReplicas"] = 5  # above maxReplicas 3
    with pytest.raises(ValidationError) as invalid:
        clusters.validate(manifest)
    assert "workerGroupSpecs[0]" in str(invalid.value)
    assert clusters.kube.find(RAYCLUSTER, "default", "bad-cluster") is None
