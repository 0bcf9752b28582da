"""Long-lived RayClusters that existing-cluster tests (clusterSelector, straight SDK) run their jobs on."""

from __future__ import annotations

from typing import Any

from tests.support.cluster_under_test import JOBS_NAMESPACE, RAY_IMAGE


def ready_raycluster(kube: Any, name: str, image: str = RAY_IMAGE, namespace: str = JOBS_NAMESPACE) -> str:
    """A long-lived RayCluster for existing-cluster tests: created once, returned when ready."""
    from kuberay_provider.core.resources import RAYCLUSTER
    from kuberay_provider.core.spec import raycluster, simple_cluster_spec

    if kube.find(RAYCLUSTER, namespace, name) is None:
        kube.create(raycluster(name, namespace, base={"spec": simple_cluster_spec(image=image)}))
    for event in kube.watch(RAYCLUSTER, namespace, name=name, timeout_seconds=60):
        if (event.object.get("status") or {}).get("state") == "ready":
            return name
    raise AssertionError(f"the RayCluster {name} did not become ready")
