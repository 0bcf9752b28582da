"""The life of one RayJob as a task sees it: validate, create or re-attach, wait, read logs, clean up.

Orchestrator-neutral and synchronous; the Airflow and Prefect adapters (and their async triggers) call
these steps and add only what their orchestrator needs.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from kuberay_provider.core.dashboard import (
    DASHBOARD_PORT_NAME,
    DashboardAccess,
    raycluster_head_service,
    rayjob_head_service,
)
from kuberay_provider.core.errors import KubeRayProviderError, ValidationError
from kuberay_provider.core.kube.sync_client import RayObjectsClient
from kuberay_provider.core.naming import LABEL_RUN_KEY
from kuberay_provider.core.ray_jobs import DashboardEndpoint, RayJobsClient
from kuberay_provider.core.resources import RAYCLUSTER, RAYJOB
from kuberay_provider.core.status import RayJobState
from kuberay_provider.core.validation import SchemaRegistry, validate_manifest

log = logging.getLogger(__name__)


class RayJobTimeout(KubeRayProviderError):
    """The RayJob did not reach the awaited state in time. Carries the last state seen."""

    def __init__(self, message: str, state: RayJobState | None) -> None:
        super().__init__(message)
        self.state = state


class NameTakenError(KubeRayProviderError):
    """A RayJob of the wanted name exists but belongs to another run (its run-key label differs)."""


@dataclass
class Launch:
    """What create-or-attach found: the object, and whether this call created it."""

    manifest: dict[str, Any]
    created: bool

    @property
    def state(self) -> RayJobState:
        return RayJobState.from_object(self.manifest)


def namespace_and_name(manifest: Mapping[str, Any]) -> tuple[str, str]:
    metadata = manifest.get("metadata") or {}
    return metadata.get("namespace") or "default", metadata["name"]


@dataclass
class RayJobLifecycle:
    """The steps, bound to one Kubernetes API client and one way of reaching dashboards."""

    kube: RayObjectsClient
    schemas: SchemaRegistry | None = None
    dashboard: DashboardAccess = field(default_factory=DashboardAccess)

    def validate(self, manifest: dict[str, Any]) -> None:
        """Layers (a) KubeRay's rules and (b) the CRD schema; all problems at once, before any write."""
        errors = validate_manifest(manifest, self.schemas)
        if errors:
            namespace, name = manifest_label(manifest)
            raise ValidationError(errors, object_name=f"{manifest.get('kind', 'object')} {namespace}/{name}")

    def create_or_attach(self, manifest: dict[str, Any]) -> Launch:
        """Re-attach to the RayJob a previous try of this run created, or create it.

        Before the real create, layer (c): a server-side dry run, so admission webhooks and the
        installed CRD judge the object exactly as they will a moment later.
        """
        namespace, name = namespace_and_name(manifest)
        existing = self.kube.find(RAYJOB, namespace, name)
        if existing is not None:
            self._check_same_run(manifest, existing)
            log.info("RayJob %s/%s already exists; re-attaching to it", namespace, name)
            return Launch(existing, created=False)
        self.kube.create(manifest, dry_run=True)
        created = self.kube.create(manifest)
        log.info("Created RayJob %s/%s", namespace, name)
        return Launch(created, created=True)

    @staticmethod
    def _check_same_run(wanted: Mapping[str, Any], existing: Mapping[str, Any]) -> None:
        wanted_key = ((wanted.get("metadata") or {}).get("labels") or {}).get(LABEL_RUN_KEY)
        existing_key = ((existing.get("metadata") or {}).get("labels") or {}).get(LABEL_RUN_KEY)
        if wanted_key and existing_key != wanted_key:
            namespace, name = namespace_and_name(existing)
            raise NameTakenError(
                f"RayJob {namespace}/{name} exists but was not created by this run "
                f"(label {LABEL_RUN_KEY}={existing_key!r}, expected {wanted_key!r}); choose another name"
            )

    def wait(
        self,
        namespace: str,
        name: str,
        *,
        until: Callable[[RayJobState], bool] = lambda s: s.is_terminal,
        timeout: float | None = None,
        on_change: Callable[[RayJobState], None] | None = None,
    ) -> RayJobState:
        """Block until ``until(state)`` holds, following the RayJob by watch (no polling loop)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last: RayJobState | None = None
        remaining = timeout
        for event in self.kube.watch(RAYJOB, namespace, name=name, timeout_seconds=remaining):
            if event.type == "DELETED":
                raise KubeRayProviderError(f"RayJob {namespace}/{name} was deleted while being waited on")
            state = RayJobState.from_object(event.object)
            if last is None or _changed(last, state):
                if on_change:
                    on_change(state)
                last = state
            if until(state):
                return state
            if deadline is not None and time.monotonic() >= deadline:
                break
        raise RayJobTimeout(f"RayJob {namespace}/{name} did not reach the awaited state within {timeout} s", last)

    def head_service(self, state: RayJobState) -> str:
        """The service in front of the head of the cluster the RayJob runs on.

        The cluster's own head service exists as soon as the cluster is ready; KubeRay creates the
        RayJob's stable ``<rayjob>-head-svc`` only once the job is Running (reconcileServices), too late
        for InteractiveMode's submission. So prefer the cluster's, and fall back to the RayJob's.
        """
        if state.cluster_name:
            cluster = self.kube.find(RAYCLUSTER, state.namespace, state.cluster_name)
            if cluster is not None:
                return raycluster_head_service(cluster)
        return rayjob_head_service(state.name)

    def jobs_client(self, namespace: str, service: str, cluster: str = "") -> RayJobsClient:
        if self.dashboard.uses_service_proxy:
            endpoint = DashboardEndpoint.through(self.kube.proxy_connection(namespace, service, DASHBOARD_PORT_NAME))
        else:
            endpoint = self.dashboard.direct_endpoint(namespace=namespace, service=service, cluster=cluster)
        return RayJobsClient(endpoint)

    def delete(self, namespace: str, name: str) -> bool:
        """Delete the RayJob; KubeRay (and the owner references) take its cluster with it."""
        return self.kube.delete(RAYJOB, namespace, name, propagation_policy="Foreground")


def manifest_label(manifest: Mapping[str, Any]) -> tuple[str, str]:
    metadata = manifest.get("metadata") if isinstance(manifest.get("metadata"), Mapping) else {}
    return metadata.get("namespace") or "default", metadata.get("name") or metadata.get("generateName") or "?"


def _changed(before: RayJobState, after: RayJobState) -> bool:
    return before.describe() != after.describe()
