"""The RayCluster controller's I/O: bring up the backend, keep the head Service and Pods, write status."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from kuberay_provider.local.ray_backend.base import BackendError, ClusterEndpoints, ClusterRequest, RayBackend

from . import kuberay as k
from .actions import EventSpec
from .api import CONFIGMAPS, PODS, RAYCLUSTERS, SERVICES, ApiError, ClusterAPI, ConflictError, NotFoundError
from .clock import Clock
from .conditions import inconsistent_cluster_status
from .events import EventRecorder
from .raycluster import compute_cluster_status, declared_ray_resources, group_desired_replicas
from .raycluster_pods import (
    config_map_mounts,
    plan_head_pod,
    plan_worker_pod,
    referenced_config_maps,
    worker_pods_to_delete,
)
from .rayjob_model import managed_by_other_controller
from .services import build_cluster_head_service, endpoints_annotation, with_endpoints_annotation
from .validation_cluster import autoscaler_v1_restart_policy_warning, check_raycluster

log = logging.getLogger(__name__)

NOT_READY_REQUEUE_SECONDS = 0.5  # KubeRay waits on pod events; here readiness is the backend's answer
READY_RESYNC_SECONDS = 300.0  # RAYCLUSTER_DEFAULT_REQUEUE_SECONDS
# An invalid status is the one validation failure returned as an error, so it is retried
# (DefaultRequeueDuration; controller-runtime's error backoff stands in for it in KubeRay).
INVALID_STATUS_REQUEUE_SECONDS = 2.0


class RayClusterRuntime:
    def __init__(self, api: ClusterAPI, backend: RayBackend, clock: Clock, recorder: EventRecorder) -> None:
        self.api = api
        self.backend = backend
        self.clock = clock
        self.recorder = recorder
        self._warned: set[tuple[str, str, str]] = set()

    async def reconcile(self, namespace: str, name: str) -> float | None:
        cluster = await self.api.get(RAYCLUSTERS, namespace, name)
        if cluster is None:
            return None
        spec = cluster.get("spec") or {}
        if managed_by_other_controller(spec):
            return None  # ManagedByExternalController: another controller (e.g. MultiKueue) owns it
        # rayClusterReconcile validates before anything else: a failure is a Warning event and the end of
        # the pass, with no status change; only a spec edit (or another event) brings the next pass.
        failure = check_raycluster(cluster)
        warning = autoscaler_v1_restart_policy_warning(spec) if failure is None or failure.spec_validated else None
        if warning:
            await self._warn_once(
                cluster, "InvalidRayClusterSpec", f"RayCluster spec warning {namespace}/{name}: {warning}"
            )
        if failure is not None:
            await self._record_once(
                cluster, EventSpec("Warning", failure.event_reason, "Validate", failure.event_message)
            )
            return INVALID_STATUS_REQUEUE_SECONDS if failure.requeue else None
        if cluster["metadata"].get("deletionTimestamp"):
            return None
        try:
            if spec.get("suspend") is True:
                await self._suspend(cluster)
            else:
                endpoints, not_ready_reason = await self._bring_up(cluster)
                await self._reconcile_head_service(cluster, endpoints)
                await self._reconcile_head_pod(cluster, endpoints, not_ready_reason)
                await self._reconcile_workers(cluster, endpoints)
        except ApiError as exc:
            log.warning("RayCluster %s/%s: %s", namespace, name, exc)
            return NOT_READY_REQUEUE_SECONDS
        return await self._write_status(cluster)

    async def on_deleted(self, cluster: Mapping[str, Any]) -> None:
        await self.backend.delete_cluster(cluster["metadata"].get("namespace", ""), cluster["metadata"]["name"])

    async def _event(self, cluster: Mapping[str, Any], type_: str, reason: str, action: str, message: str) -> None:
        await self.recorder.record(cluster, EventSpec(type_, reason, action, message))

    async def _warn_once(self, cluster: Mapping[str, Any], reason: str, message: str) -> None:
        await self._record_once(cluster, EventSpec("Warning", reason, "Validate", message))

    async def _record_once(self, cluster: Mapping[str, Any], event: EventSpec) -> None:
        """Reconciles repeat: an event about the cluster's set-up is recorded once per cluster."""
        key = (cluster["metadata"].get("uid", ""), event.reason, event.message)
        if key not in self._warned:
            self._warned.add(key)
            await self.recorder.record(cluster, event)

    # -- backend -------------------------------------------------------------------------------
    async def _bring_up(self, cluster: Mapping[str, Any]) -> tuple[ClusterEndpoints | None, str]:
        """Ask the backend for the cluster; (None, why) while the head cannot start."""
        meta, spec = cluster["metadata"], cluster.get("spec") or {}
        namespace = meta.get("namespace", "")
        data: dict[str, Mapping[str, str] | None] = {}
        for cm_name in referenced_config_maps(spec):
            config_map = await self.api.get(CONFIGMAPS, namespace, cm_name)
            data[cm_name] = (config_map or {}).get("data") or {} if config_map is not None else None
        mounts, missing = config_map_mounts(spec, data)
        if missing:
            # A Pod whose ConfigMap volume is missing stays in ContainerCreating: so does this head.
            return None, f'MountVolume.SetUp failed: configmap "{missing[0]}" not found'
        request = ClusterRequest(
            namespace, meta["name"], str(spec.get("rayVersion") or ""), tuple(mounts), declared_ray_resources(spec)
        )
        try:
            endpoints = await self.backend.ensure_cluster(request)
        except BackendError as exc:
            await self._warn_once(cluster, "FailedToStartRay", f"the local Ray could not start: {exc}")
            return None, f"the local Ray could not start: {exc}"
        for warning in endpoints.warnings:
            await self._warn_once(cluster, "RayVersionMismatch", warning)
        for notice in endpoints.notices:
            await self._record_once(cluster, EventSpec(notice.type, notice.reason, "Create", notice.message))
        return endpoints, ""

    async def _suspend(self, cluster: Mapping[str, Any]) -> None:
        """spec.suspend: every Pod goes, and so does the Ray behind the cluster (its jobs stop)."""
        namespace, name = cluster["metadata"].get("namespace", ""), cluster["metadata"]["name"]
        for pod in await self.api.list(PODS, namespace, {k.RAY_CLUSTER_LABEL: name}):
            await self.api.delete(PODS, namespace, pod["metadata"]["name"])
        await self.backend.delete_cluster(namespace, name)

    # -- children ------------------------------------------------------------------------------
    async def _reconcile_head_service(
        self, cluster: Mapping[str, Any], endpoints: ClusterEndpoints | None
    ) -> Mapping[str, Any] | None:
        """reconcileHeadService, plus the local endpoints annotation kept current."""
        namespace, name = cluster["metadata"].get("namespace", ""), cluster["metadata"]["name"]
        urls = endpoints.urls if endpoints else {}
        found = await self.api.list(SERVICES, namespace, k.head_service_list_labels(name))
        if found:
            service = found[0]
            annotations = service["metadata"].setdefault("annotations", {})
            wanted = endpoints_annotation(service, urls)
            all_urls = json.dumps(dict(urls), sort_keys=True)
            if urls and (annotations.get(k.ENDPOINTS_ANNOTATION), annotations.get(k.BACKEND_URLS_ANNOTATION)) != (
                wanted,
                all_urls,
            ):
                annotations[k.ENDPOINTS_ANNOTATION] = wanted
                annotations[k.BACKEND_URLS_ANNOTATION] = all_urls
                return await self.api.replace(SERVICES, service)
            return service
        service = with_endpoints_annotation(build_cluster_head_service(cluster), urls)
        service["metadata"]["annotations"][k.BACKEND_URLS_ANNOTATION] = json.dumps(dict(urls), sort_keys=True)
        service["metadata"]["ownerReferences"] = [k.owner_reference(cluster)]
        ref = f"{namespace}/{service['metadata']['name']}"
        try:
            created = await self.api.create(SERVICES, namespace, service)
        except ApiError as exc:
            await self._event(
                cluster, "Warning", "FailedToCreateService", "Create", f"Failed creating service {ref}, {exc.message}"
            )
            raise
        await self._event(cluster, "Normal", "CreatedService", "Create", f"Created service {ref}")
        return created

    async def _create_pod(
        self, cluster: Mapping[str, Any], body: dict[str, Any], status: dict[str, Any], role: str
    ) -> None:
        namespace = cluster["metadata"].get("namespace", "")
        ref = f"{namespace}/{body['metadata']['name']}"
        try:
            created = await self.api.create(PODS, namespace, {**body, "status": status})
        except ApiError as exc:
            await self._event(
                cluster,
                "Warning",
                f"FailedToCreate{role}Pod",
                "Create",
                f"Failed to create {role.lower()} Pod {ref}, {exc.message}",
            )
            raise
        await self._event(cluster, "Normal", f"Created{role}Pod", "Create", f"Created {role.lower()} Pod {ref}")
        if (created.get("status") or {}).get("phase") != status["phase"]:
            await self._set_pod_status(created, status)

    async def _set_pod_status(self, pod: dict[str, Any], status: dict[str, Any]) -> None:
        """Play the kubelet: write the Pod's status (the /status subresource, else the object)."""
        try:
            await self.api.replace_status(PODS, {**pod, "status": status})
        except (NotFoundError, ConflictError):
            raise
        except ApiError:
            await self.api.replace(PODS, {**pod, "status": status})

    async def _reconcile_head_pod(
        self, cluster: Mapping[str, Any], endpoints: ClusterEndpoints | None, not_ready_reason: str
    ) -> None:
        namespace, name = cluster["metadata"].get("namespace", ""), cluster["metadata"]["name"]
        pod_ip = endpoints.pod_ip if endpoints else "127.0.0.1"
        plan = plan_head_pod(cluster, endpoints is not None, pod_ip, self.clock.now(), not_ready_reason)
        heads = await self.api.list(PODS, namespace, {k.RAY_CLUSTER_LABEL: name, k.RAY_NODE_TYPE_LABEL: "head"})
        if not heads:
            await self._create_pod(cluster, plan.body, plan.status, "Head")
            return
        head = heads[0]
        if (head.get("status") or {}).get("phase") != plan.status["phase"]:
            await self._set_pod_status(head, plan.status)

    async def _reconcile_workers(self, cluster: Mapping[str, Any], endpoints: ClusterEndpoints | None) -> None:
        """reconcilePods for the worker groups: delete what is too many, create what is missing."""
        if endpoints is None:
            return  # workers start once the head is up
        namespace, name = cluster["metadata"].get("namespace", ""), cluster["metadata"]["name"]
        for group in (cluster.get("spec") or {}).get("workerGroupSpecs") or []:
            labels = {
                k.RAY_CLUSTER_LABEL: name,
                k.RAY_NODE_TYPE_LABEL: "worker",
                k.RAY_NODE_GROUP_LABEL: group["groupName"],
            }
            pods = await self.api.list(PODS, namespace, labels)
            doomed = worker_pods_to_delete(group, pods)
            for pod_name in doomed:
                if await self.api.delete(PODS, namespace, pod_name):
                    await self._event(
                        cluster,
                        "Normal",
                        "DeletedWorkerPod",
                        "Delete",
                        f"Deleted worker Pod {namespace}/{pod_name} for group {group['groupName']}: scale down",
                    )
            for _ in range(group_desired_replicas(group) - (len(pods) - len(doomed))):
                plan = plan_worker_pod(cluster, group, endpoints.pod_ip, self.clock.now())
                await self._create_pod(cluster, plan.body, plan.status, "Worker")

    # -- status --------------------------------------------------------------------------------
    async def _write_status(self, cluster: Mapping[str, Any]) -> float | None:
        namespace, name = cluster["metadata"].get("namespace", ""), cluster["metadata"]["name"]
        pods = await self.api.list(PODS, namespace, {k.RAY_CLUSTER_LABEL: name})
        services = await self.api.list(SERVICES, namespace, k.head_service_list_labels(name))
        status = compute_cluster_status(cluster, pods, services[0] if services else None, self.clock.now())
        old = cluster.get("status") or {}
        if inconsistent_cluster_status(old, status) or old.get("observedGeneration") != status.get(
            "observedGeneration"
        ):
            try:
                await self.api.replace_status(RAYCLUSTERS, {**cluster, "status": status})
            except ConflictError:
                return NOT_READY_REQUEUE_SECONDS / 10
            except NotFoundError:
                return None
        if status.get("state") == "ready" or status.get("state") == "suspended":
            return READY_RESYNC_SECONDS
        return NOT_READY_REQUEUE_SECONDS
