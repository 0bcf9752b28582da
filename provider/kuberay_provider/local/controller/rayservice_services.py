"""RayService: the Services of reconcileServicesToReadyCluster (``<rayservice>-head-svc`` and the serve
Service), created or re-pointed at the cluster that serves, with the local endpoints annotation kept current."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from . import kuberay as k
from .actions import EventSpec
from .api import SERVICES, ApiError, ClusterAPI, object_ref
from .events import EventRecorder
from .rayservice_serve import PassError
from .services import ServeServiceError, build_owner_head_service, build_serve_service, with_endpoints_annotation


class RayServiceServices:
    """The two Services through which a RayService's traffic reaches its serving cluster."""

    def __init__(self, api: ClusterAPI, recorder: EventRecorder) -> None:
        self.api = api
        self.recorder = recorder

    async def _event(self, rayservice: Mapping[str, Any], type_: str, reason: str, action: str, message: str) -> None:
        await self.recorder.record(rayservice, EventSpec(type_, reason, action, message))

    async def reconcile(self, rayservice: Mapping[str, Any], cluster: Mapping[str, Any]) -> str:
        """reconcileServicesToReadyCluster: ``<rayservice>-head-svc`` then the serve Service, re-pointed only
        when the cluster changes. Returns the cluster both point at."""
        namespace = rayservice["metadata"].get("namespace", "")
        cluster_service = await self.api.get(SERVICES, namespace, k.cluster_head_service_name(cluster))
        local = (cluster_service or {}).get("metadata", {}).get("annotations") or {}
        endpoints = local.get(k.ENDPOINTS_ANNOTATION, "{}")
        backend_urls = json.loads(local.get(k.BACKEND_URLS_ANNOTATION) or "{}") or urls_from_annotation(endpoints)
        head = build_owner_head_service(rayservice, k.CRD_RAYSERVICE, cluster)
        head["metadata"].setdefault("annotations", {})[k.ENDPOINTS_ANNOTATION] = endpoints
        serving = [await self._reconcile_one(rayservice, head)]
        try:
            serve = build_serve_service(rayservice, cluster)
        except ServeServiceError as exc:
            raise PassError(str(exc)) from exc
        serving.append(await self._reconcile_one(rayservice, with_endpoints_annotation(serve, backend_urls)))
        if serving[0] != serving[1]:
            raise RuntimeError("headSvc and serveSvc are not pointing to the same cluster")
        return serving[0]

    async def _reconcile_one(self, rayservice: Mapping[str, Any], body: dict[str, Any]) -> str:
        """reconcileServices for one Service; the local endpoints annotation is kept current as well."""
        namespace, ref = body["metadata"]["namespace"], object_ref(body)
        existing = await self.api.get(SERVICES, namespace, body["metadata"]["name"])
        wanted_cluster: str = body["spec"]["selector"][k.RAY_CLUSTER_LABEL]
        if existing is None:
            try:
                await self.api.create(SERVICES, namespace, body)
            except ApiError as exc:
                await self._event(
                    rayservice,
                    "Warning",
                    "FailedToCreateService",
                    "Create",
                    f"Failed to create the service {ref}, {exc.message or exc}",
                )
                raise
            await self._event(rayservice, "Normal", "CreatedService", "Create", f"Created the service {ref}")
            return wanted_cluster
        current = copy.deepcopy(existing)
        switch = ((current.get("spec") or {}).get("selector") or {}).get(k.RAY_CLUSTER_LABEL) != wanted_cluster
        annotations = current["metadata"].setdefault("annotations", {})
        local_changed = (
            annotations.get(k.ENDPOINTS_ANNOTATION) != body["metadata"]["annotations"][k.ENDPOINTS_ANNOTATION]
        )
        if not switch and not local_changed:
            return wanted_cluster
        annotations[k.ENDPOINTS_ANNOTATION] = body["metadata"]["annotations"][k.ENDPOINTS_ANNOTATION]
        if switch:
            cluster_ip = (current.get("spec") or {}).get("clusterIP")
            current["spec"] = copy.deepcopy(body["spec"])
            if cluster_ip:
                current["spec"]["clusterIP"] = cluster_ip  # immutable
        try:
            await self.api.replace(SERVICES, current)
        except ApiError as exc:
            if switch:
                await self._event(
                    rayservice,
                    "Warning",
                    "FailedToUpdateService",
                    "Update",
                    f"Failed to update the service {ref}, {exc.message or exc}",
                )
            raise
        if switch:
            await self._event(rayservice, "Normal", "UpdatedService", "Update", f"Updated the service {ref}")
        return wanted_cluster


def urls_from_annotation(annotation: str) -> dict[str, str]:
    mapping = json.loads(annotation or "{}")
    return {name: url for name, url in mapping.items() if not name.isdigit()}
