"""RayService: the reconcile pass of KubeRay v1.7.0's rayservice_controller.go (Reconcile), step by step.

Each pass: clean up dangling clusters (after rayClusterDeletionDelaySeconds) -> the finalizer (added, or
removed once every cluster is gone) -> validateRayService -> handleSuspend -> stop when InitializingTimeout
-> reconcileRayCluster -> updateHeadPodServeLabel -> reconcileServe (pending cluster, else active) -> the
Services pointed at a ready cluster -> calculateStatus -> a status write only when
InconsistentRayServiceStatuses says so. A failing step ends the pass without a status write, as KubeRay's
returned error does. The decisions are in rayservice_status.py and rayservice_upgrade.py, the Serve side in
rayservice_serve.py, the Services in rayservice_services.py.

Not done: NewClusterWithIncrementalUpgrade (Gateway, HTTPRoute, target capacities, rollback) runs as
NewCluster. Unlike KubeRay, whose predicate ignores its own status writes, this controller's loop sees them:
a validation failure is therefore written once per generation and message.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from kuberay_provider.local.ray_backend.base import RayBackend

from . import kuberay as k
from .actions import EventSpec
from .api import RAYCLUSTERS, RAYSERVICES, SERVICES, ApiError, ClusterAPI, ConflictError, NotFoundError, object_ref
from .clock import Clock, format_time
from .events import EventRecorder
from .raycluster import owned_cluster_body
from .rayservice_serve import PassError, ServeReconciler
from .rayservice_services import RayServiceServices
from .rayservice_status import (
    DEFAULT_DELETION_DELAY_SECONDS,
    FINALIZER,
    KUBERAY_CONTROLLER,
    READY,
    VALIDATION_FAILED,
    calculate_conditions,
    condition_true,
    inconsistent_statuses,
    initializing_timeout,
    is_initializing_timeout,
    normalized,
    promote,
    resume,
    set_service_condition,
    stage_suspending,
    suspend_complete,
    suspend_is_operative,
    suspend_waiting,
)
from .rayservice_upgrade import cluster_annotations, should_prepare_new_cluster, should_update_cluster
from .services import serve_service_name
from .validation import validate_rayservice

log = logging.getLogger(__name__)

REQUEUE_SECONDS = 2.0  # ServiceDefaultRequeueDuration
CONFLICT_REQUEUE_SECONDS = 0.05


def association_labels(rayservice: Mapping[str, Any]) -> dict[str, str]:
    """RayServiceRayClustersAssociationOptions: what marks a RayService's clusters and Services."""
    return {k.RAY_ORIGINATED_FROM_CR_NAME: rayservice["metadata"]["name"], k.RAY_ORIGINATED_FROM_CRD: k.CRD_RAYSERVICE}


class RayServiceRuntime:
    def __init__(self, api: ClusterAPI, backend: RayBackend, clock: Clock, recorder: EventRecorder) -> None:
        self.api = api
        self.clock = clock
        self.recorder = recorder
        self.serve = ServeReconciler(api, backend, recorder)
        self.services = RayServiceServices(api, recorder)
        self._deletion_times: dict[str, datetime] = {}  # RayClusterDeletionTimestamps, by cluster name
        self._validation_failures: dict[tuple[str, str], tuple[int, str]] = {}  # (ns, name) -> (generation, message)

    async def on_deleted(self, rayservice: Mapping[str, Any]) -> None:
        """Its clusters went before the finalizer was dropped; only the caches are left to forget."""
        self.serve.forget(rayservice)
        self._validation_failures.pop(
            (rayservice["metadata"].get("namespace", ""), rayservice["metadata"]["name"]), None
        )

    async def _event(self, rayservice: Mapping[str, Any], type_: str, reason: str, action: str, message: str) -> None:
        await self.recorder.record(rayservice, EventSpec(type_, reason, action, message))

    async def reconcile(self, namespace: str, name: str) -> float | None:
        rayservice = await self.api.get(RAYSERVICES, namespace, name)
        if rayservice is None:
            return None
        if (rayservice.get("spec") or {}).get("managedBy") not in (None, KUBERAY_CONTROLLER):
            return None  # ManagedByExternalController
        self.serve.clean_up_cache(rayservice)
        try:
            return await self._reconcile(rayservice)
        except ConflictError:
            return CONFLICT_REQUEUE_SECONDS
        except NotFoundError:
            return None
        except (PassError, ApiError) as exc:
            log.info("RayService %s/%s: %s", namespace, name, exc)
            return REQUEUE_SECONDS

    async def _reconcile(self, rayservice: dict[str, Any]) -> float | None:
        now = self.clock.now()
        has_clusters_to_clean = await self._clean_up_clusters(rayservice, now)
        finalizers = rayservice["metadata"].get("finalizers") or []
        if rayservice["metadata"].get("deletionTimestamp"):
            if has_clusters_to_clean:
                return REQUEUE_SECONDS
            body = copy.deepcopy(rayservice)
            body["metadata"]["finalizers"] = [f for f in finalizers if f != FINALIZER]
            await self.api.replace(RAYSERVICES, body)
            return None
        if FINALIZER not in finalizers:
            body = copy.deepcopy(rayservice)
            body["metadata"]["finalizers"] = [*finalizers, FINALIZER]
            await self.api.replace(RAYSERVICES, body)
            return REQUEUE_SECONDS
        if (error := validate_rayservice(rayservice)) is not None:
            await self._fail_validation(rayservice, error, now)
            return None
        original = normalized(rayservice.get("status") or {})
        status = copy.deepcopy(original)
        result = await self._handle_suspend(rayservice, status, now)
        if inconsistent_statuses(original, status):
            rayservice = await self._write_status(rayservice, status, now)
        if suspend_is_operative(status):
            return result
        if is_initializing_timeout(status):
            # Terminal: only the clean-up above goes on. Delete and re-create the RayService to recover.
            return REQUEUE_SECONDS if has_clusters_to_clean else None
        return await self._reconcile_serving(rayservice, original, status, now)

    async def _reconcile_serving(
        self, rayservice: dict[str, Any], original: Mapping[str, Any], status: dict[str, Any], now: datetime
    ) -> float | None:
        view = {**rayservice, "status": status}  # KubeRay's in-memory instance
        active, pending = await self._reconcile_clusters(view, status)
        await self.serve.update_head_pod_serve_label(view, active)
        await self.serve.update_head_pod_serve_label(view, pending)
        active_ready = pending_ready = False
        active_apps = pending_apps = None
        if pending is not None:
            pending_ready, pending_apps = await self.serve.reconcile_serve(view, pending)
        if active is not None and pending is None and not should_prepare_new_cluster(view, status, active, None, False):
            # During an upgrade the active cluster is neither updated nor asked for its applications.
            active_ready, active_apps = await self.serve.reconcile_serve(view, active)
        serving_cluster = None
        if pending_ready or active_ready:
            target = pending if pending_ready else active
            assert target is not None
            serving_cluster = await self.services.reconcile(view, target)
        await self._calculate_status(view, status, active, pending, active_apps, pending_apps, serving_cluster, now)
        if inconsistent_statuses(original, status):
            await self._write_status(rayservice, status, now)
        return REQUEUE_SECONDS

    async def _write_status(
        self, rayservice: Mapping[str, Any], status: Mapping[str, Any], now: datetime
    ) -> dict[str, Any]:
        body = normalized(status)
        body["lastUpdateTime"] = format_time(now)
        return await self.api.replace_status(RAYSERVICES, {**rayservice, "status": body})

    # -- validation and suspend -----------------------------------------------------------------
    async def _fail_validation(self, rayservice: dict[str, Any], message: str, now: datetime) -> None:
        """validateRayService failed: Ready False/ValidationFailed, everything else kept, no requeue."""
        key = (rayservice["metadata"].get("namespace", ""), rayservice["metadata"]["name"])
        generation = int(rayservice["metadata"].get("generation") or 0)
        if self._validation_failures.get(key) == (generation, message):
            return None  # KubeRay's predicate would not have run this pass (a status write of its own)
        reason = (
            "InvalidRayServiceMetadata"
            if message.startswith("The RayService metadata is invalid")
            else "InvalidRayServiceSpec"
        )
        await self._event(rayservice, "Warning", reason, "Validate", f"{object_ref(rayservice)}: {message}")
        status = normalized(rayservice.get("status") or {})
        set_service_condition(status, READY, "False", VALIDATION_FAILED, message, now)
        await self._write_status(rayservice, status, now)
        self._validation_failures[key] = (generation, message)
        return None

    async def _handle_suspend(
        self, rayservice: Mapping[str, Any], status: dict[str, Any], now: datetime
    ) -> float | None:
        """handleSuspend: Suspending is the commit point; once written, the deletion runs to the end."""
        wanted = bool((rayservice.get("spec") or {}).get("suspend"))
        generation = int(rayservice["metadata"].get("generation") or 0)
        if condition_true(status, "Suspended"):
            if not wanted:
                resume(status, generation, now)
            return None
        if not condition_true(status, "Suspending"):
            if wanted:
                stage_suspending(status, generation, now)
                return REQUEUE_SECONDS
            return None
        if await self._delete_owned_resources(rayservice):
            suspend_complete(status, now)
        else:
            suspend_waiting(status, now)
        return REQUEUE_SECONDS

    async def _delete_owned_resources(self, rayservice: Mapping[str, Any]) -> bool:
        """deleteRayServiceOwnedResources: True once no RayCluster or Service of the RayService is listed."""
        namespace, all_deleted = rayservice["metadata"].get("namespace", ""), True
        for resource, kind, reason in (
            (RAYCLUSTERS, "RayCluster", "DeletedRayCluster"),
            (SERVICES, "Service", "DeletedService"),
        ):
            for obj in await self.api.list(resource, namespace, association_labels(rayservice)):
                all_deleted = False
                if obj["metadata"].get("deletionTimestamp"):
                    continue
                try:
                    await self.api.delete(resource, namespace, obj["metadata"]["name"])
                except ApiError as exc:
                    await self._event(
                        rayservice,
                        "Warning",
                        f"FailedToDelete{kind}",
                        "Delete",
                        f"Failed to delete the {kind} {object_ref(obj)} during suspend: {exc.message or exc}",
                    )
                    raise
                if resource is SERVICES:
                    self.serve.forget_service(namespace, obj["metadata"]["name"])
                await self._event(
                    rayservice, "Normal", reason, "Delete", f"Deleted the {kind} {object_ref(obj)} during suspend"
                )
        return all_deleted

    # -- clusters -------------------------------------------------------------------------------
    async def _clean_up_clusters(self, rayservice: Mapping[str, Any], now: datetime) -> bool:
        """cleanUpRayClusterInstance: clusters neither active nor pending go rayClusterDeletionDelaySeconds
        after they were first seen so (all at once when the RayService is deleted). Returns whether any
        such cluster is still listed."""
        namespace = rayservice["metadata"].get("namespace", "")
        deleting = bool(rayservice["metadata"].get("deletionTimestamp"))
        spec, status = rayservice.get("spec") or {}, rayservice.get("status") or {}
        configured = spec.get("rayClusterDeletionDelaySeconds")
        delay = timedelta(
            seconds=0 if deleting else DEFAULT_DELETION_DELAY_SECONDS if configured is None else configured
        )
        keep = {
            (status.get(key) or {}).get("rayClusterName") for key in ("activeServiceStatus", "pendingServiceStatus")
        }
        found = False
        for cluster in await self.api.list(RAYCLUSTERS, namespace, association_labels(rayservice)):
            cluster_name = cluster["metadata"]["name"]
            if not deleting and cluster_name in keep:
                continue
            found = True
            due = self._deletion_times.get(cluster_name)
            if due is None and not deleting:
                self._deletion_times[cluster_name] = now + delay
                continue
            if deleting or (due is not None and now > due):  # due is None only when deleting
                try:
                    await self.api.delete(RAYCLUSTERS, namespace, cluster_name)
                except ApiError as exc:
                    await self._event(
                        rayservice,
                        "Warning",
                        "FailedToDeleteRayCluster",
                        "Delete",
                        f"Failed to delete the RayCluster {object_ref(cluster)}: {exc.message or exc}",
                    )
                    raise
                await self._event(
                    rayservice, "Normal", "DeletedRayCluster", "Delete", f"Deleted the RayCluster {object_ref(cluster)}"
                )
        return found

    async def _reconcile_clusters(
        self, rayservice: Mapping[str, Any], status: Mapping[str, Any]
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """reconcileRayCluster: create the pending cluster once named; update a cluster in place only for
        appended worker groups (shouldUpdateCluster)."""
        namespace = rayservice["metadata"].get("namespace", "")
        names = [
            (status.get(key) or {}).get("rayClusterName") for key in ("activeServiceStatus", "pendingServiceStatus")
        ]
        active, pending = [await self.api.get(RAYCLUSTERS, namespace, n) if n else None for n in names]
        if names[1] and pending is None:
            return active, await self._create_cluster(rayservice, names[1])
        for cluster, role in ((active, "active"), (pending, "pending")):
            if should_update_cluster(rayservice, cluster, role == "active"):
                assert cluster is not None
                await self._update_cluster(rayservice, cluster, role)
        return active, pending

    def _cluster_body(self, rayservice: Mapping[str, Any], cluster_name: str) -> dict[str, Any]:
        """constructRayClusterForRayService."""
        spec = (rayservice.get("spec") or {}).get("rayClusterConfig") or {}
        return owned_cluster_body(
            rayservice, k.CRD_RAYSERVICE, cluster_name, spec, extra_annotations=cluster_annotations(rayservice)
        )

    async def _create_cluster(self, rayservice: Mapping[str, Any], cluster_name: str) -> dict[str, Any]:
        body = self._cluster_body(rayservice, cluster_name)
        try:
            created = await self.api.create(RAYCLUSTERS, body["metadata"]["namespace"], body)
        except ApiError as exc:
            await self._event(
                rayservice,
                "Warning",
                "FailedToCreateRayCluster",
                "Create",
                f"Failed to create the RayCluster {object_ref(body)}: {exc.message or exc}",
            )
            raise
        await self._event(
            rayservice, "Normal", "CreatedRayCluster", "Create", f"Created the RayCluster {object_ref(body)}"
        )
        return created

    async def _update_cluster(self, rayservice: Mapping[str, Any], cluster: dict[str, Any], role: str) -> None:
        """modifyRayCluster: the goal spec, labels and annotations; suspend stays the cluster's (Kueue's)."""
        goal = self._cluster_body(rayservice, cluster["metadata"]["name"])
        body = copy.deepcopy(cluster)
        suspend = (body.get("spec") or {}).get("suspend")
        body["spec"] = goal["spec"]
        body["spec"].pop("suspend", None)
        if suspend is not None:
            body["spec"]["suspend"] = suspend
        body["metadata"]["labels"], body["metadata"]["annotations"] = (
            goal["metadata"]["labels"],
            goal["metadata"]["annotations"],
        )
        try:
            await self.api.replace(RAYCLUSTERS, body)
        except ApiError as exc:
            await self._event(
                rayservice,
                "Warning",
                "FailedToUpdateRayCluster",
                "Update",
                f"Failed to update the {role} RayCluster {object_ref(cluster)}: {exc.message or exc}",
            )
            raise
        await self._event(
            rayservice, "Normal", "UpdatedRayCluster", "Update", f"Updated the {role} RayCluster {object_ref(cluster)}"
        )

    # -- Status --------------------------------------------------------------------------------
    async def _calculate_status(
        self,
        rayservice: Mapping[str, Any],
        status: dict[str, Any],
        active: Mapping[str, Any] | None,
        pending: Mapping[str, Any] | None,
        active_apps: dict[str, Any] | None,
        pending_apps: dict[str, Any] | None,
        serving_cluster: str | None,
        now: datetime,
    ) -> None:
        """calculateStatus (NewCluster): observedGeneration is bumped here, after reconcileServe, so the
        write that first shows a new generation carries the applications read before its PUT."""
        status["observedGeneration"] = int(rayservice["metadata"].get("generation") or 0)
        for key, cluster, apps in (
            ("activeServiceStatus", active, active_apps),
            ("pendingServiceStatus", pending, pending_apps),
        ):
            part = status.setdefault(key, {})
            part["rayClusterStatus"] = copy.deepcopy((cluster or {}).get("status") or {})
            part["applicationStatuses"] = apps
        pending_serving = promote(status, serving_cluster) if serving_cluster else False
        if should_prepare_new_cluster(rayservice, status, active, pending, pending_serving):
            status["pendingServiceStatus"] = {
                "rayClusterName": k.generate_ray_cluster_name(rayservice["metadata"]["name"])
            }
        namespace, service_name = rayservice["metadata"].get("namespace", ""), serve_service_name(rayservice)
        status["numServeEndpoints"] = await self.serve.count_serve_endpoints(namespace, service_name)
        await self.serve.refresh_endpoint_slices(namespace, service_name)
        event = calculate_conditions(status, initializing_timeout(rayservice), now)
        if event:
            await self._event(rayservice, "Warning", "RayServiceInitializingTimeout", "Reconcile", event)
        status["serviceStatus"] = "Running" if condition_true(status, READY) else ""
