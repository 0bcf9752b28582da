"""RayService steps shared by the adapters: create or update, wait until the new spec is served, report the
serve endpoint, delete.

KubeRay v1.7.0 (rayservice_controller.go) reports readiness with the ``Ready`` condition (True once the
serve Service has endpoints) and upgrades with ``UpgradeInProgress`` (True while an active and a pending
cluster both exist). A wait ends once KubeRay has applied the latest generation *and* its applications
run: ``observedGeneration`` alone is not enough, as the write that bumps it still carries the statuses
read before a new serveConfigV2 was PUT (``core.rayservice_state`` explains how the wait tells them apart).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kuberay_provider.core.async_lifecycle import wait_until_gone
from kuberay_provider.core.errors import ConfigurationError, FieldError, ValidationError
from kuberay_provider.core.kube.sync_client import RayObjectsClient
from kuberay_provider.core.manifests import load_manifest
from kuberay_provider.core.rayservice_state import SERVE_PORT, RayServiceState, serve_port_problem, serve_service_of
from kuberay_provider.core.rayservice_wait import (
    RayServiceFailed,
    RayServiceGone,
    RayServiceTimeout,
    ServiceTracker,
    await_service,
    wait_service,
)
from kuberay_provider.core.resources import RAYSERVICE
from kuberay_provider.core.schedulers import kueue_queue_of, scheduling_labels, suspend_for_kueue
from kuberay_provider.core.spec import RAYSERVICE_SPEC_FIELDS, build_manifest
from kuberay_provider.core.sync_bridge import run_sync, watching
from kuberay_provider.core.validated_create import create_validated
from kuberay_provider.core.validation import SchemaRegistry, ensure_valid

__all__ = [
    "RAYSERVICE_KEYWORDS",
    "SERVE_PORT",
    "RayServiceFailed",
    "RayServiceGone",
    "RayServiceLifecycle",
    "RayServiceState",
    "RayServiceTimeout",
    "ServiceTracker",
    "await_service",
    "rayservice_manifest",
    "serve_service_of",
    "wait_service",
]

log = logging.getLogger(__name__)

DELETION_TIMEOUT = 300.0
RAYSERVICE_KEYWORDS = frozenset(RAYSERVICE_SPEC_FIELDS) | {"serve_config"}


def rayservice_manifest(
    name: str | None,
    namespace: str | None,
    *,
    rayservice: Mapping[str, Any] | str | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    queue_name: str | None = None,
    volcano_queue: str | None = None,
    **spec_params: Any,
) -> dict[str, Any]:
    """A RayService from a base manifest (dict or YAML/JSON path) and/or spec fields as keywords
    (``serve_config`` as a dict, written as serveConfigV2 YAML; ``ray_cluster_config``...). A RayService
    is long-lived, so its name is the user's (the manifest's or ``name``), never derived from a run.
    ``queue_name`` / ``volcano_queue`` label it for Kueue / Volcano (``core.schedulers``)."""
    base = load_manifest(rayservice, kind="RayService") if rayservice is not None else None
    metadata = (base or {}).get("metadata") or {}
    name = name or metadata.get("name")
    if not name:
        raise ConfigurationError("a RayService needs a name (name= or metadata.name in the manifest)")
    namespace = namespace or metadata.get("namespace") or "default"
    labels = {**dict(labels or {}), **scheduling_labels(queue_name, volcano_queue)}
    return build_manifest(
        RAYSERVICE, name, namespace, labels=labels or None, annotations=annotations, base=base, **spec_params
    )


def _keep_kueue_suspension(manifest: dict[str, Any], existing: Mapping[str, Any]) -> dict[str, Any]:
    """An update must not decide admission: a RayService on Kueue keeps the suspend flag Kueue set."""
    if not kueue_queue_of(existing) or not kueue_queue_of(manifest):
        return manifest
    current = ((existing.get("spec") or {}).get("rayClusterConfig") or {}).get("suspend")
    config = manifest.setdefault("spec", {}).setdefault("rayClusterConfig", {})
    if current is None:
        config.pop("suspend", None)
    else:
        config["suspend"] = current
    return manifest


@dataclass
class RayServiceLifecycle:
    kube: RayObjectsClient
    schemas: SchemaRegistry | None = None

    def validate(self, manifest: dict[str, Any]) -> None:
        """KubeRay's rules and the CRD schema, and a serve port KubeRay can build the serve Service on; all
        problems at once, before any write."""
        ensure_valid(manifest, self.schemas)
        if problem := serve_port_problem(manifest):
            path = "spec.rayClusterConfig.headGroupSpec.template.spec.containers[0].ports"
            metadata = manifest.get("metadata") or {}
            raise ValidationError(
                [FieldError(path, "kuberay:serve-port", problem)],
                object_name=f"RayService {metadata.get('namespace', '')}/{metadata.get('name', '')}",
            )

    def apply(self, manifest: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """Create the RayService, or replace the existing one's spec (its labels and annotations are left as
        they are); returns the object and what happened: ``"created"``, ``"updated"`` or ``"unchanged"``."""
        metadata = manifest.get("metadata") or {}
        namespace, name = str(metadata.get("namespace")), str(metadata.get("name"))
        existing = self.kube.find(RAYSERVICE, namespace, name)
        if existing is None:
            manifest = suspend_for_kueue(manifest)  # Kueue admits it by unsuspending rayClusterConfig
            # A server dry run first, as for a RayCluster (core/clusters.py): one create per service.
            created = create_validated(self.kube, manifest, self.schemas, server_dry_run=True)
            log.info("Created RayService %s/%s", namespace, name)
            return created, "created"
        manifest = _keep_kueue_suspension(manifest, existing)
        if existing.get("spec") == manifest.get("spec"):
            return existing, "unchanged"
        # The whole spec replaces the old one (a merge patch would keep fields the new spec dropped); the
        # test op makes a concurrent change a failed patch instead of a silent overwrite.
        patch = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": existing["metadata"]["resourceVersion"]},
            {"op": "replace", "path": "/spec", "value": manifest["spec"]},
        ]
        updated = self.kube.patch(RAYSERVICE, namespace, name, patch, patch_type="json")
        if updated["metadata"].get("generation") == existing["metadata"].get("generation"):
            return updated, "unchanged"  # the same spec once the server applied its defaults
        log.info("Updated RayService %s/%s (generation %s)", namespace, name, updated["metadata"].get("generation"))
        return updated, "updated"

    def wait_ready(
        self,
        namespace: str,
        name: str,
        *,
        timeout: float | None = None,
        on_change: Callable[[RayServiceState], None] | None = None,
    ) -> RayServiceState:
        """Until the latest spec is served: applied, its applications running (read after the change),
        Ready, no upgrade in progress. Raises RayServiceFailed when KubeRay reports a failed application,
        a refused spec or an initializing timeout; RayServiceTimeout after ``timeout`` s."""
        return wait_service(self.kube, ServiceTracker(namespace, name, timeout, on_change))

    def state(self, namespace: str, name: str) -> RayServiceState | None:
        found = self.kube.find(RAYSERVICE, namespace, name)
        return None if found is None else RayServiceState.from_object(found)

    def delete(self, namespace: str, name: str, *, wait: bool = True, timeout: float | None = DELETION_TIMEOUT) -> bool:
        """Delete the RayService; its clusters and Services go with it. KubeRay holds it with the
        ``ray.io/rayservice-finalizer`` until its RayClusters are gone: with ``wait``, return once it is
        gone. False if there was nothing to delete."""
        if not self.kube.delete(RAYSERVICE, namespace, name, propagation_policy="Foreground"):
            return False
        if (
            wait
            and (left := run_sync(wait_until_gone(watching(self.kube), RAYSERVICE, namespace, name, timeout)))
            is not None
        ):
            raise RayServiceTimeout(
                f"RayService {namespace}/{name} was not gone within {timeout} s: KubeRay removes its finalizer "
                "ray.io/rayservice-finalizer once the RayService's RayClusters are deleted; check that the KubeRay "
                f"operator runs and what holds them (kubectl get rayclusters -n {namespace} "
                f"-l ray.io/originated-from-cr-name={name})",
                RayServiceState.from_object(left),
                subject=f"RayService {namespace}/{name}",
                timeout=timeout,
            )
        return True
