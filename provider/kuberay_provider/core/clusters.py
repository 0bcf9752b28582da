"""RayCluster steps shared by the adapters: create (or re-attach), wait until ready, scale a worker group,
delete. A long-lived cluster many jobs use through ``clusterSelector``, or one per DAG/flow run.

"Ready" is what KubeRay v1.7.0 reports (raycluster_controller.go calculateStatus): ``status.state ==
"ready"`` once every Pod runs and is ready, and the ``HeadPodReady`` condition True. A retried (or
cleared) create task re-attaches to the cluster its run created (same name, same run label), never makes a
second one: a cluster is infrastructure, not an outcome to run again. Only when the spec the task renders
now differs from the one the cluster was created with is the cluster replaced.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from typing import Any

from kuberay_provider.core.async_lifecycle import wait_tracked, wait_until_gone
from kuberay_provider.core.dashboard import raycluster_head_service
from kuberay_provider.core.errors import FieldError, KubeRayProviderError, NameTakenError, ValidationError, WaitTimeout
from kuberay_provider.core.job_request import RunIdentity
from kuberay_provider.core.kube.sync_client import RayObjectsClient
from kuberay_provider.core.kube.watch import WatchEvent
from kuberay_provider.core.manifests import load_manifest
from kuberay_provider.core.naming import (
    ANNOTATION_SPEC_DIGEST,
    LABEL_RUN_KEY,
    MAX_RAYCLUSTER_NAME,
    rayjob_name,
    run_selector,
    spec_digest,
)
from kuberay_provider.core.resources import RAYCLUSTER
from kuberay_provider.core.schedulers import is_held_by_kueue, kueue_queue_of, scheduling_labels, suspend_for_kueue
from kuberay_provider.core.spec import build_manifest
from kuberay_provider.core.status import ClusterState, enum_or_raw
from kuberay_provider.core.sync_bridge import run_sync, watching
from kuberay_provider.core.validated_create import create_validated
from kuberay_provider.core.validation import SchemaRegistry, ensure_valid

log = logging.getLogger(__name__)

DELETION_TIMEOUT = 300.0
HEAD_POD_READY = "HeadPodReady"


class RayClusterGone(KubeRayProviderError):
    """The RayCluster was deleted (or never existed) while it was being waited on."""


def _condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), None)


@dataclass(frozen=True)
class RayClusterRequest:
    """A RayCluster to create for a run: a base manifest (dict or YAML/JSON path), a whole ``spec`` (e.g.
    ``core.spec.simple_cluster_spec(...)``) and/or spec fields as keywords (``head_group_spec``,
    ``worker_group_specs``, ``ray_version``...); later ones win, field by field."""

    identity: RunIdentity
    raycluster: Mapping[str, Any] | str | None = None
    spec: Mapping[str, Any] | None = None
    spec_params: Mapping[str, Any] = field(default_factory=dict)
    name: str | None = None  # None: derived from the identity (stable across retries of the task)
    namespace: str | None = None  # None: the base manifest's, else "default"
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    queue_name: str | None = None  # a Kueue LocalQueue: created suspended, Kueue admits it
    volcano_queue: str | None = None  # a Volcano Queue (KubeRay's Volcano batch scheduler)

    @property
    def cluster_name(self) -> str:
        return self.name or rayjob_name(
            self.identity.owner,
            self.identity.task,
            self.identity.run_id,
            self.identity.map_index,
            instance=self.identity.instance,
            max_length=MAX_RAYCLUSTER_NAME,
        )

    @cached_property
    def base_manifest(self) -> dict[str, Any] | None:
        return load_manifest(self.raycluster, kind="RayCluster") if self.raycluster is not None else None

    @property
    def manifest_namespace(self) -> str | None:
        return ((self.base_manifest or {}).get("metadata") or {}).get("namespace") or None

    def manifest(self) -> dict[str, Any]:
        base = self.base_manifest
        if self.spec is not None:
            base = {**(base or {}), "spec": {**((base or {}).get("spec") or {}), **dict(self.spec)}}
        namespace = self.namespace or self.manifest_namespace or "default"
        labels = {**dict(self.labels), **scheduling_labels(self.queue_name, self.volcano_queue), **self.identity.labels}
        return suspend_for_kueue(
            build_manifest(
                RAYCLUSTER,
                self.cluster_name,
                namespace,
                labels=labels,
                annotations=dict(self.annotations) or None,
                base=base,
                **dict(self.spec_params),
            )
        )


@dataclass(frozen=True)
class RayClusterState:
    """A read-only view of a RayCluster's ``status``."""

    namespace: str
    name: str
    state: ClusterState | str
    reason: str
    head_pod_ready: bool
    ready_workers: int
    desired_workers: int
    head_service: str
    queue_name: str = ""  # the Kueue LocalQueue it is queued on ("": none)
    held_by_kueue: bool = False  # queued and still suspended: not admitted yet

    @classmethod
    def from_object(cls, cluster: Mapping[str, Any]) -> RayClusterState:
        metadata, status = cluster.get("metadata") or {}, cluster.get("status") or {}
        head_ready = _condition(status, HEAD_POD_READY)
        return cls(
            namespace=str(metadata.get("namespace", "")),
            name=str(metadata.get("name", "")),
            state=enum_or_raw(ClusterState, status.get("state")),
            reason=str(status.get("reason") or (head_ready or {}).get("message") or ""),
            head_pod_ready=(head_ready or {}).get("status") == "True",
            ready_workers=int(status.get("readyWorkerReplicas") or 0),
            desired_workers=int(status.get("desiredWorkerReplicas") or 0),
            head_service=str((status.get("head") or {}).get("serviceName") or raycluster_head_service(cluster)),
            queue_name=kueue_queue_of(cluster),
            held_by_kueue=is_held_by_kueue(cluster),
        )

    @property
    def is_ready(self) -> bool:
        # KubeRay sets state "ready" only when all Pods run and are ready; the head condition is checked too
        # because a cluster that was ready keeps the state while its head restarts.
        return self.state == ClusterState.READY and self.head_pod_ready

    def to_dict(self) -> dict[str, Any]:
        state = self.state.value if isinstance(self.state, ClusterState) else self.state
        return {
            "namespace": self.namespace,
            "name": self.name,
            "state": state,
            "head_pod_ready": self.head_pod_ready,
            "ready_workers": self.ready_workers,
            "desired_workers": self.desired_workers,
            "head_service": self.head_service,
        }

    def describe(self) -> str:
        state = self.state.value if isinstance(self.state, ClusterState) else (self.state or "pending")
        head = "ready" if self.head_pod_ready else "not ready"
        text = f"RayCluster {self.namespace}/{self.name}: state={state} head={head} workers={self.ready_workers}/{self.desired_workers}"
        if self.held_by_kueue:
            return f"{text} queued for admission on Kueue LocalQueue {self.queue_name!r}"
        return f"{text} ({self.reason})" if self.reason and not self.is_ready else text


class RayClusterTimeout(WaitTimeout[RayClusterState]):
    """The RayCluster did not reach the awaited state (or was not gone) in time; ``state`` is the last seen."""


class ClusterTarget(str, Enum):
    """What a wait on a RayCluster waits for, by name (a trigger's arguments must serialise)."""

    ADMITTED = "admitted"  # Kueue no longer holds it suspended
    READY = "ready"  # state ready and the head Pod ready
    WORKERS = "workers"  # after a scale: the new spec applied, ready, ready workers == desired

    @property
    def awaited(self) -> str:
        return {"admitted": "to be admitted by Kueue", "ready": "to be ready", "workers": "to reach its worker count"}[
            self.value
        ]

    def reached(self, state: RayClusterState, cluster: Mapping[str, Any]) -> bool:
        if self is ClusterTarget.ADMITTED:
            return not state.held_by_kueue
        if self is ClusterTarget.READY:
            return state.is_ready
        generation = (cluster.get("metadata") or {}).get("generation")
        observed = (cluster.get("status") or {}).get("observedGeneration")
        caught_up = observed is None or generation is None or observed >= generation
        return caught_up and state.is_ready and state.ready_workers == state.desired_workers


class ClusterTracker:
    """One RayCluster's events in, the state that reaches ``target`` out (None while waiting); shared by
    the sync waits and the async ones (deferrable triggers)."""

    def __init__(
        self,
        namespace: str,
        name: str,
        target: ClusterTarget | str,
        timeout: float | None = None,
        on_change: Callable[[RayClusterState], None] | None = None,
    ) -> None:
        self.namespace, self.name, self.target = namespace, name, ClusterTarget(target)
        self.timeout, self.on_change = timeout, on_change
        self.last: RayClusterState | None = None

    def observe(self, event: WatchEvent) -> RayClusterState | None:
        if event.type == "DELETED":
            raise RayClusterGone(
                f"RayCluster {self.namespace}/{self.name} was deleted while waiting for it {self.target.awaited}"
            )
        state = RayClusterState.from_object(event.object)
        if state != self.last and self.on_change:
            self.on_change(state)
        self.last = state
        return state if self.target.reached(state, event.object) else None

    def timed_out(self) -> RayClusterTimeout:
        return RayClusterTimeout(
            f"RayCluster {self.namespace}/{self.name}: waited {self.timeout} s for it {self.target.awaited}",
            self.last,
            subject=f"RayCluster {self.namespace}/{self.name}",
            timeout=self.timeout,
        )


@dataclass
class RayClusterLifecycle:
    kube: RayObjectsClient
    schemas: SchemaRegistry | None = None

    def validate(self, manifest: dict[str, Any]) -> None:
        """KubeRay's rules and the CRD schema; all problems at once, before any write."""
        ensure_valid(manifest, self.schemas)

    def create_or_attach(self, manifest: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """The cluster and whether this call created it. An existing cluster of the same name is re-attached
        to when it carries the same run label (a retried or cleared create) and was created with the same
        spec; one of another spec is deleted (waiting until it is gone) and created anew; one of another
        run is refused."""
        manifest = with_cluster_digest(manifest)
        metadata = manifest["metadata"]
        namespace, name = str(metadata.get("namespace")), str(metadata.get("name"))
        existing = self.kube.find(RAYCLUSTER, namespace, name)
        if existing is not None:
            wanted = (metadata.get("labels") or {}).get(LABEL_RUN_KEY)
            found = ((existing.get("metadata") or {}).get("labels") or {}).get(LABEL_RUN_KEY)
            if wanted and found != wanted:  # as for a RayJob: a retry would find the same cluster again
                raise NameTakenError(
                    f"RayCluster {namespace}/{name} exists but was not created by this run "
                    f"(label {LABEL_RUN_KEY}={found!r}, expected {wanted!r}); choose another name"
                )
            recorded = ((existing.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_SPEC_DIGEST)
            if not recorded or recorded == metadata["annotations"][ANNOTATION_SPEC_DIGEST]:
                log.info("RayCluster %s/%s already exists; re-attaching to it", namespace, name)
                return existing, False
            # Its jobs go with it; they belong to the same run, whose create task the user ran again with a new spec.
            log.info(
                "RayCluster %s/%s was created with another spec; deleting it to create it with this one",
                namespace,
                name,
            )
            self.delete(namespace, name)
        # Always a server dry run first: a cluster is created once per run, not by the hundred as a
        # backfill's RayJobs are, so admission webhooks' verdict before any write costs little here.
        created = create_validated(self.kube, manifest, self.schemas, server_dry_run=True)
        log.info("Created RayCluster %s/%s", namespace, name)
        return created, True

    def wait_ready(
        self,
        namespace: str,
        name: str,
        *,
        timeout: float | None = None,
        admission_timeout: float | None = None,
        on_change: Callable[[RayClusterState], None] | None = None,
    ) -> RayClusterState:
        """Block until the cluster is ready, by watch; RayClusterTimeout after ``timeout`` s, or after
        ``admission_timeout`` s still queued on Kueue (not admitted)."""
        started = time.monotonic()
        if admission_timeout is not None:
            limit = admission_timeout if timeout is None else min(admission_timeout, timeout)
            run_sync(
                wait_tracked(
                    watching(self.kube),
                    RAYCLUSTER,
                    ClusterTracker(namespace, name, ClusterTarget.ADMITTED, limit, on_change),
                )
            )
        left = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
        return run_sync(
            wait_tracked(
                watching(self.kube), RAYCLUSTER, ClusterTracker(namespace, name, ClusterTarget.READY, left, on_change)
            )
        )

    def state(self, namespace: str, name: str) -> RayClusterState | None:
        found = self.kube.find(RAYCLUSTER, namespace, name)
        return None if found is None else RayClusterState.from_object(found)

    def scale(self, namespace: str, name: str, group: str, replicas: int) -> dict[str, Any]:
        """Set ``replicas`` of worker group ``group``; refused (naming the field and the rule) outside
        the group's [minReplicas, maxReplicas], which KubeRay would silently clamp."""
        cluster = self.kube.get(RAYCLUSTER, namespace, name)
        groups = (cluster.get("spec") or {}).get("workerGroupSpecs") or []
        index = next((i for i, g in enumerate(groups) if g.get("groupName") == group), None)
        if index is None:
            known = ", ".join(str(g.get("groupName")) for g in groups) or "none"
            raise KubeRayProviderError(f"RayCluster {namespace}/{name} has no worker group {group!r} (groups: {known})")
        spec = groups[index]
        low, high = int(spec.get("minReplicas") or 0), spec.get("maxReplicas")
        path = f"spec.workerGroupSpecs[{index}].replicas"
        if replicas < low or (high is not None and replicas > int(high)):
            bounds = f"[{low}, {high if high is not None else 'unbounded'}]"
            raise ValidationError(
                [
                    FieldError(
                        path,
                        "provider:replicas-within-bounds",
                        f"must be within minReplicas..maxReplicas {bounds}, got {replicas}",
                    )
                ],
                object_name=f"RayCluster {namespace}/{name}",
            )
        # The test op makes the replace fail rather than touch another group if the list changed meanwhile.
        patch: list[dict[str, Any]] = [
            {"op": "test", "path": f"/spec/workerGroupSpecs/{index}/groupName", "value": group},
            {"op": "replace", "path": f"/spec/workerGroupSpecs/{index}/replicas", "value": replicas},
        ]
        log.info("Scaling RayCluster %s/%s worker group %s to %d", namespace, name, group, replicas)
        return self.kube.patch(RAYCLUSTER, namespace, name, patch, patch_type="json")

    def wait_workers(
        self,
        namespace: str,
        name: str,
        *,
        timeout: float | None = None,
        on_change: Callable[[RayClusterState], None] | None = None,
    ) -> RayClusterState:
        """After a scale: until the ready workers equal the desired ones and the cluster is ready."""
        return run_sync(
            wait_tracked(
                watching(self.kube),
                RAYCLUSTER,
                ClusterTracker(namespace, name, ClusterTarget.WORKERS, timeout, on_change),
            )
        )

    def delete(self, namespace: str, name: str, *, wait: bool = True, timeout: float | None = DELETION_TIMEOUT) -> bool:
        """Delete the cluster (foreground: its Pods and Services first); with ``wait``, return once it is
        gone. False if there was nothing to delete."""
        if not self.kube.delete(RAYCLUSTER, namespace, name, propagation_policy="Foreground"):
            return False
        if (
            wait
            and (left := run_sync(wait_until_gone(watching(self.kube), RAYCLUSTER, namespace, name, timeout)))
            is not None
        ):
            raise RayClusterTimeout(
                f"RayCluster {namespace}/{name} was not gone within {timeout} s",
                RayClusterState.from_object(left),
                subject=f"RayCluster {namespace}/{name}",
                timeout=timeout,
            )
        return True

    def delete_run(self, namespace: str, owner: str, run_id: str, *, instance: str = "") -> list[str]:
        """Delete every RayCluster one run (DAG or flow run) of this ``instance`` created, found by its
        identity labels, without waiting: what a crash or cancellation hook calls. Returns the names deleted."""
        selector = run_selector(owner, run_id, instance)
        deleted = []
        for cluster in self.kube.list(RAYCLUSTER, namespace, label_selector=selector):
            name = str((cluster.get("metadata") or {}).get("name"))
            if self.delete(namespace, name, wait=False):
                deleted.append(name)
        return deleted


def with_cluster_digest(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the RayCluster to create, annotated with the digest of its spec (``suspend`` left out:
    Kueue changes it)."""
    metadata = dict(manifest.get("metadata") or {})
    digest = spec_digest(manifest.get("spec") or {}, ("suspend",))
    metadata["annotations"] = {**(metadata.get("annotations") or {}), ANNOTATION_SPEC_DIGEST: digest}
    return {**manifest, "metadata": metadata}
