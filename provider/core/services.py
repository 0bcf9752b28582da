"""RayService steps shared by the adapters: create or update, wait until Ready (and until an upgrade has
finished), report the serve endpoint, delete.

KubeRay v1.7.0 (rayservice_controller.go) reports readiness with the ``Ready`` condition (True once the
serving cluster has serve endpoints) and upgrades with ``UpgradeInProgress`` (True while an active and
a pending cluster both exist). A change is applied once ``status.observedGeneration`` reaches the
object's generation; an update therefore waits for that, then for Ready without an upgrade in progress.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from kuberay_provider.core.errors import KubeRayProviderError
from kuberay_provider.core.kube.sync_client import RayObjectsClient, wait_tracked
from kuberay_provider.core.kube.watch import WatchEvent
from kuberay_provider.core.manifests import load_manifest
from kuberay_provider.core.resources import RAYSERVICE
from kuberay_provider.core.schedulers import is_held_by_kueue, kueue_queue_of, scheduling_labels, suspend_for_kueue
from kuberay_provider.core.spec import RAYSERVICE_SPEC_FIELDS, build_manifest
from kuberay_provider.core.validation import SchemaRegistry, ensure_valid

log = logging.getLogger(__name__)

SERVE_PORT = 8000


class RayServiceTimeout(KubeRayProviderError):
    def __init__(self, message: str, state: "RayServiceState | None") -> None:
        super().__init__(message)
        self.state = state


class RayServiceGone(KubeRayProviderError):
    """The RayService was deleted while it was being waited on."""


RAYSERVICE_KEYWORDS = frozenset(RAYSERVICE_SPEC_FIELDS) | {"serve_config"}


def rayservice_manifest(
    name: str | None, namespace: str | None, *, rayservice: Mapping[str, Any] | str | None = None,
    labels: Mapping[str, str] | None = None, annotations: Mapping[str, str] | None = None,
    queue_name: str | None = None, volcano_queue: str | None = None, **spec_params: Any,
) -> dict[str, Any]:
    """A RayService from a base manifest (dict or YAML/JSON path) and/or spec fields as keywords
    (``serve_config`` as a dict, written as serveConfigV2 YAML; ``ray_cluster_config``...). A RayService
    is long-lived, so its name is the user's (the manifest's or ``name``), never derived from a run.
    ``queue_name`` / ``volcano_queue`` label it for Kueue / Volcano (``core.schedulers``)."""
    base = load_manifest(rayservice, kind="RayService") if rayservice is not None else None
    metadata = (base or {}).get("metadata") or {}
    name = name or metadata.get("name")
    if not name:
        raise ValueError("a RayService needs a name (name= or metadata.name in the manifest)")
    namespace = namespace or metadata.get("namespace") or "default"
    labels = {**dict(labels or {}), **scheduling_labels(queue_name, volcano_queue)}
    return build_manifest(RAYSERVICE, name, namespace, labels=labels or None, annotations=annotations, base=base, **spec_params)


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


def _condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), {})


@dataclass(frozen=True)
class RayServiceState:
    namespace: str
    name: str
    generation: int
    observed_generation: int
    ready: bool
    ready_reason: str
    upgrading: bool
    active_cluster: str
    pending_cluster: str
    applications: dict[str, str]  # application -> status (RUNNING, DEPLOYING, DEPLOY_FAILED...)
    queue_name: str = ""  # the Kueue LocalQueue it is queued on ("": none)
    held_by_kueue: bool = False  # queued and still suspended (spec.rayClusterConfig.suspend)

    @classmethod
    def from_object(cls, service: Mapping[str, Any]) -> "RayServiceState":
        metadata, status = service.get("metadata") or {}, service.get("status") or {}
        ready, upgrade = _condition(status, "Ready"), _condition(status, "UpgradeInProgress")
        active, pending = status.get("activeServiceStatus") or {}, status.get("pendingServiceStatus") or {}
        return cls(
            namespace=str(metadata.get("namespace", "")),
            name=str(metadata.get("name", "")),
            generation=int(metadata.get("generation") or 0),
            observed_generation=int(status.get("observedGeneration") or 0),
            ready=ready.get("status") == "True",
            ready_reason=str(ready.get("reason") or ""),
            upgrading=upgrade.get("status") == "True",
            active_cluster=str(active.get("rayClusterName") or ""),
            pending_cluster=str(pending.get("rayClusterName") or ""),
            applications={app: str(info.get("status", "")) for app, info in (active.get("applicationStatuses") or {}).items()},
            queue_name=kueue_queue_of(service),
            held_by_kueue=is_held_by_kueue(service),
        )

    @property
    def caught_up(self) -> bool:
        """KubeRay has reconciled the latest spec."""
        return self.observed_generation >= self.generation

    @property
    def is_ready(self) -> bool:
        """Serving the latest spec: applied, Ready, no upgrade in progress, every application running."""
        running = all(status == "RUNNING" for status in self.applications.values())
        return self.caught_up and self.ready and not self.upgrading and running

    @property
    def failed_applications(self) -> dict[str, str]:
        return {app: status for app, status in self.applications.items() if status in ("DEPLOY_FAILED", "UNHEALTHY")}

    @property
    def serve_endpoint(self) -> str:
        """The in-cluster URL of the Serve HTTP proxy (KubeRay's ``<name>-serve-svc`` on port 8000)."""
        return f"http://{self.name}-serve-svc.{self.namespace}.svc.cluster.local:{SERVE_PORT}"

    def to_dict(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "name": self.name, "ready": self.ready, "upgrading": self.upgrading,
                "active_cluster": self.active_cluster, "pending_cluster": self.pending_cluster,
                "applications": dict(self.applications), "serve_endpoint": self.serve_endpoint,
                "serve_service": f"{self.name}-serve-svc"}

    def describe(self) -> str:
        apps = ", ".join(f"{app}={status}" for app, status in sorted(self.applications.items())) or "none yet"
        text = (f"RayService {self.namespace}/{self.name}: ready={self.ready} upgrading={self.upgrading} "
                f"active={self.active_cluster or '-'} pending={self.pending_cluster or '-'} applications: {apps}")
        if self.held_by_kueue:
            text += f" queued for admission on Kueue LocalQueue {self.queue_name!r}"
        return text if self.caught_up else f"{text} (spec generation {self.generation} not yet applied)"


class ServiceTracker:
    """One RayService's events in, its state once the latest spec is served out (None while waiting);
    an application that failed to deploy raises. Shared by the sync wait and the deferrable trigger."""

    def __init__(self, namespace: str, name: str, timeout: float | None = None,
                 on_change: Callable[[RayServiceState], None] | None = None) -> None:
        self.namespace, self.name, self.timeout, self.on_change = namespace, name, timeout, on_change
        self.last: RayServiceState | None = None

    def observe(self, event: WatchEvent) -> RayServiceState | None:
        if event.type == "DELETED":
            raise RayServiceGone(f"RayService {self.namespace}/{self.name} was deleted while waiting for it to be ready")
        state = RayServiceState.from_object(event.object)
        if state != self.last and self.on_change:
            self.on_change(state)
        self.last = state
        if state.is_ready:
            return state
        if state.caught_up and state.failed_applications:
            failed = ", ".join(f"{app} {status}" for app, status in state.failed_applications.items())
            raise KubeRayProviderError(f"RayService {self.namespace}/{self.name}: applications failed: {failed}")
        return None

    def timed_out(self) -> RayServiceTimeout:
        return RayServiceTimeout(f"RayService {self.namespace}/{self.name} was not ready within {self.timeout} s", self.last)


@dataclass
class RayServiceLifecycle:
    kube: RayObjectsClient
    schemas: SchemaRegistry | None = None

    def validate(self, manifest: dict[str, Any]) -> None:
        """KubeRay's rules and the CRD schema; all problems at once, before any write."""
        ensure_valid(manifest, self.schemas)

    def apply(self, manifest: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """Create the RayService, or replace the existing one's spec (its labels and annotations are left as
        they are); returns the object and what happened: ``"created"``, ``"updated"`` or ``"unchanged"``."""
        metadata = manifest.get("metadata") or {}
        namespace, name = str(metadata.get("namespace")), str(metadata.get("name"))
        existing = self.kube.find(RAYSERVICE, namespace, name)
        if existing is None:
            manifest = suspend_for_kueue(manifest)  # Kueue admits it by unsuspending rayClusterConfig
            self.kube.create(manifest, dry_run=True)
            created = self.kube.create(manifest)
            log.info("Created RayService %s/%s", namespace, name)
            return created, "created"
        manifest = _keep_kueue_suspension(manifest, existing)
        if existing.get("spec") == manifest.get("spec"):
            return existing, "unchanged"
        # The whole spec replaces the old one (a merge patch would keep fields the new spec dropped); the
        # test op makes a concurrent change a failed patch instead of a silent overwrite.
        patch = [{"op": "test", "path": "/metadata/resourceVersion", "value": existing["metadata"]["resourceVersion"]},
                 {"op": "replace", "path": "/spec", "value": manifest["spec"]}]
        updated = self.kube.patch(RAYSERVICE, namespace, name, patch, patch_type="json")
        if updated["metadata"].get("generation") == existing["metadata"].get("generation"):
            return updated, "unchanged"  # the same spec once the server applied its defaults
        log.info("Updated RayService %s/%s (generation %s)", namespace, name, updated["metadata"].get("generation"))
        return updated, "updated"

    def wait_ready(
        self, namespace: str, name: str, *, timeout: float | None = None,
        on_change: Callable[[RayServiceState], None] | None = None,
    ) -> RayServiceState:
        """Until the latest spec is served: applied, Ready, no upgrade in progress. Raises when an
        application failed to deploy, or after ``timeout`` s."""
        return wait_tracked(self.kube, RAYSERVICE, ServiceTracker(namespace, name, timeout, on_change))

    def state(self, namespace: str, name: str) -> RayServiceState | None:
        found = self.kube.find(RAYSERVICE, namespace, name)
        return None if found is None else RayServiceState.from_object(found)

    def delete(self, namespace: str, name: str) -> bool:
        """Delete the RayService; its clusters and Services go with it (owner references)."""
        return self.kube.delete(RAYSERVICE, namespace, name, propagation_policy="Foreground")
