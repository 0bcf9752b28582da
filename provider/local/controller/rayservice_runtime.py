"""RayService: serveConfigV2 deployed through the dashboard's Serve REST API, status (pending -> active
cluster, applicationStatuses, Ready and UpgradeInProgress conditions, serviceStatus) as KubeRay writes it.

Upgrades as KubeRay's default ``upgradeStrategy`` (NewCluster) does them: a changed serveConfigV2 is
redeployed in place on the active cluster; a changed rayClusterConfig (other than worker replicas)
brings up a pending cluster, deploys the applications there, and once they run switches the Services
to it and deletes the old cluster (KubeRay waits ``RayClusterDeletionDelaySeconds``, 60 s by default;
here it goes at once). ``upgradeStrategy.type: None`` never upgrades.

Not done: incremental upgrades, suspend, the Serve-endpoint labels on the head Pod, initializing timeouts.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from typing import Any, Mapping

import yaml

from kuberay_provider.local.ray_backend.base import BackendError, RayBackend

from . import kuberay as k
from .actions import EventSpec
from .api import RAYCLUSTERS, RAYSERVICES, SERVICES, ApiError, ClusterAPI, ConflictError, NotFoundError
from .clock import Clock, format_time
from .conditions import set_condition
from .events import EventRecorder
from .raycluster import owned_cluster_body
from .services import build_owner_head_service, with_endpoints_annotation

log = logging.getLogger(__name__)

REQUEUE_SECONDS = 2.0  # ServiceDefaultRequeueDuration
HASH_ANNOTATION = "ray.io/hash-without-replicas-and-workers-to-delete"


def cluster_config_hash(cluster_config: Mapping[str, Any]) -> str:
    """What makes a rayClusterConfig change an upgrade: everything but the worker replicas and
    workersToDelete (scaling is done in place), as KubeRay's generateHashWithoutReplicasAndWorkersToDelete."""
    spec = copy.deepcopy(dict(cluster_config))
    for group in spec.get("workerGroupSpecs") or []:
        group.pop("replicas", None)
        (group.get("scaleStrategy") or {}).pop("workersToDelete", None)
    return hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def serve_service(rayservice: Mapping[str, Any], cluster: Mapping[str, Any]) -> dict[str, Any]:
    """BuildServeService: ``<rayservice>-serve-svc`` on the serve port of the serving head."""
    name = rayservice["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": f"{name}-serve-svc",
            "namespace": rayservice["metadata"].get("namespace"),
            "labels": {
                k.RAY_ORIGINATED_FROM_CR_NAME: name,
                k.RAY_ORIGINATED_FROM_CRD: k.CRD_RAYSERVICE,
                k.RAY_SERVE_LABEL: f"{name}-serve",
            },
            "ownerReferences": [k.owner_reference(rayservice)],
        },
        "spec": {
            "selector": {k.RAY_CLUSTER_LABEL: cluster["metadata"]["name"], k.RAY_SERVE_LABEL: "true"},
            "ports": [{"name": "serve", "port": 8000, "appProtocol": "tcp"}],
        },
    }


def application_statuses(serve: Mapping[str, Any]) -> dict[str, Any]:
    """Serve's /api/serve/applications/ answer as applicationStatuses."""
    return {
        app: {
            "status": info.get("status", ""),
            **({"message": info["message"]} if info.get("message") else {}),
            "serveDeploymentStatuses": {
                dep: {"status": d.get("status", ""), **({"message": d["message"]} if d.get("message") else {})}
                for dep, d in (info.get("deployments") or {}).items()
            },
        }
        for app, info in serve.items()
    }


class RayServiceRuntime:
    def __init__(self, api: ClusterAPI, backend: RayBackend, clock: Clock, recorder: EventRecorder) -> None:
        self.api = api
        self.backend = backend
        self.clock = clock
        self.recorder = recorder
        self._deployed: dict[tuple[str, str], str] = {}  # (namespace, cluster) -> hash of the config deployed

    async def on_deleted(self, rayservice: Mapping[str, Any]) -> None:
        """Its RayCluster goes by ownerReference; the backend forgets it when that deletion is seen."""

    async def reconcile(self, namespace: str, name: str) -> float | None:
        rayservice = await self.api.get(RAYSERVICES, namespace, name)
        if rayservice is None or rayservice["metadata"].get("deletionTimestamp"):
            return None
        status = copy.deepcopy(rayservice.get("status") or {})
        now_text = format_time(self.clock.now())
        conditions: list[dict[str, Any]] = status.setdefault("conditions", [])
        active = dict(status.get("activeServiceStatus") or {})
        pending = dict(status.get("pendingServiceStatus") or {})
        wanted_hash = cluster_config_hash(rayservice["spec"].get("rayClusterConfig") or {})
        active_cluster = await self.api.get(RAYCLUSTERS, namespace, active["rayClusterName"]) if active.get("rayClusterName") else None
        if active.get("rayClusterName") and active_cluster is None:
            active = {}  # deleted under us: start over with a pending cluster
        upgrades = ((rayservice["spec"].get("upgradeStrategy") or {}).get("type") or "NewCluster") != "None"
        needs_cluster = not active or (
            upgrades and active_cluster is not None
            and (active_cluster["metadata"].get("annotations") or {}).get(HASH_ANNOTATION) != wanted_hash
        )
        if needs_cluster and not pending.get("rayClusterName"):
            pending = {"rayClusterName": k.generate_ray_cluster_name(name)}
        if active_cluster is not None:
            active["rayClusterStatus"] = copy.deepcopy(active_cluster.get("status") or {})
            if (active_cluster.get("status") or {}).get("state") == "ready":
                active["applicationStatuses"] = await self._deploy_and_read(rayservice, active_cluster)
        if pending.get("rayClusterName"):
            pending_cluster = await self._get_or_create_cluster(rayservice, pending["rayClusterName"], wanted_hash)
            pending["rayClusterStatus"] = copy.deepcopy((pending_cluster or {}).get("status") or {})
            if pending_cluster is not None and (pending_cluster.get("status") or {}).get("state") == "ready":
                apps = await self._deploy_and_read(rayservice, pending_cluster)
                pending["applicationStatuses"] = apps
                if apps and all(a.get("status") == "RUNNING" for a in apps.values()):
                    await self._ensure_services(rayservice, pending_cluster)
                    if active_cluster is not None:
                        await self._retire_cluster(rayservice, active_cluster)
                    active, pending = pending, {}
        serving = bool(active.get("rayClusterName"))
        status.update(
            activeServiceStatus=active,
            pendingServiceStatus=pending,
            serviceStatus="Running" if serving else "",
            numServeEndpoints=1 if serving else 0,
            observedGeneration=rayservice["metadata"].get("generation", 1),
        )
        set_condition(
            conditions, "Ready", "True" if serving else "False",
            "NonZeroServeEndpoints" if serving else "Initializing", "Number of serve endpoints is greater than 0" if serving else "", now_text,
        )
        if serving and pending:
            set_condition(conditions, "UpgradeInProgress", "True", "BothActivePendingClustersExist",
                          "Both active and pending Ray clusters exist", now_text)
        else:
            set_condition(conditions, "UpgradeInProgress", "False", "NoActiveCluster" if pending else "NoPendingCluster", "", now_text)
        if status != (rayservice.get("status") or {}):
            status["lastUpdateTime"] = now_text
            try:
                await self.api.replace_status(RAYSERVICES, {**rayservice, "status": status})
            except ConflictError:
                return 0.05
            except NotFoundError:
                return None
        return REQUEUE_SECONDS

    async def _retire_cluster(self, rayservice: Mapping[str, Any], cluster: Mapping[str, Any]) -> None:
        """The upgrade is done: the old cluster goes (KubeRay after RayClusterDeletionDelaySeconds)."""
        namespace, cluster_name = cluster["metadata"].get("namespace", ""), cluster["metadata"]["name"]
        await self.api.delete(RAYCLUSTERS, namespace, cluster_name)
        self._deployed.pop((namespace, cluster_name), None)
        await self.recorder.record(rayservice, EventSpec("Normal", "DeletedRayCluster", "Delete", f"Deleted RayCluster {namespace}/{cluster_name}"))

    async def _get_or_create_cluster(self, rayservice: Mapping[str, Any], cluster_name: str, config_hash: str) -> Mapping[str, Any] | None:
        namespace = rayservice["metadata"].get("namespace", "")
        cluster = await self.api.get(RAYCLUSTERS, namespace, cluster_name)
        if cluster is not None:
            return cluster
        body = owned_cluster_body(rayservice, k.CRD_RAYSERVICE, cluster_name, rayservice["spec"].get("rayClusterConfig") or {},
                                  extra_annotations={HASH_ANNOTATION: config_hash})
        ref = f"{namespace}/{cluster_name}"
        try:
            created = await self.api.create(RAYCLUSTERS, namespace, body)
        except ApiError as exc:
            await self.recorder.record(rayservice, EventSpec("Warning", "FailedToCreateRayCluster", "Create", f"Failed to create RayCluster {ref}: {exc.message}"))
            return None
        await self.recorder.record(rayservice, EventSpec("Normal", "CreatedRayCluster", "Create", f"Created RayCluster {ref}"))
        return created

    async def _deploy_and_read(self, rayservice: Mapping[str, Any], cluster: Mapping[str, Any]) -> dict[str, Any]:
        namespace, cluster_name = rayservice["metadata"].get("namespace", ""), cluster["metadata"]["name"]
        config_text = rayservice["spec"].get("serveConfigV2") or ""
        digest = hashlib.sha256(config_text.encode()).hexdigest()
        try:
            if self._deployed.get((namespace, cluster_name)) != digest:
                notices = await self.backend.deploy_serve(namespace, cluster_name, yaml.safe_load(config_text) or {})
                self._deployed[(namespace, cluster_name)] = digest
                await self.recorder.record(rayservice, EventSpec("Normal", "UpdatedServeApplications", "Update", f"Updated serve applications to the RayCluster {namespace}/{cluster_name}"))
                for notice in notices or ():
                    await self.recorder.record(rayservice, EventSpec(notice.type, notice.reason, "Update", notice.message))
            return application_statuses(await self.backend.serve_status(namespace, cluster_name))
        except (BackendError, yaml.YAMLError) as exc:
            await self.recorder.record(rayservice, EventSpec("Warning", "FailedToUpdateServeApplications", "Update", f"Failed to update serve applications to the RayCluster {namespace}/{cluster_name}: {exc}"))
            return {}

    async def _ensure_services(self, rayservice: Mapping[str, Any], cluster: Mapping[str, Any]) -> None:
        """``<rayservice>-head-svc`` and ``<rayservice>-serve-svc``, pointing at the serving cluster (after an
        upgrade, switched to the new one)."""
        namespace = rayservice["metadata"].get("namespace", "")
        cluster_service = await self.api.get(SERVICES, namespace, k.cluster_head_service_name(cluster))
        cluster_annotations = (cluster_service or {}).get("metadata", {}).get("annotations") or {}
        annotation = cluster_annotations.get(k.ENDPOINTS_ANNOTATION, "{}")
        backend_urls = json.loads(cluster_annotations.get(k.BACKEND_URLS_ANNOTATION) or "{}") or _urls_from_annotation(annotation)
        for body in (build_owner_head_service(rayservice, k.CRD_RAYSERVICE, cluster), serve_service(rayservice, cluster)):
            body["metadata"].setdefault("annotations", {})[k.ENDPOINTS_ANNOTATION] = annotation
            if body["metadata"]["name"].endswith("-serve-svc"):
                with_endpoints_annotation(body, backend_urls)
            existing = await self.api.get(SERVICES, namespace, body["metadata"]["name"])
            if existing is None:
                await self.api.create(SERVICES, namespace, body)
            elif (existing.get("spec") or {}).get("selector") != body["spec"]["selector"] or \
                    (existing["metadata"].get("annotations") or {}).get(k.ENDPOINTS_ANNOTATION) != body["metadata"]["annotations"][k.ENDPOINTS_ANNOTATION]:
                existing = copy.deepcopy(existing)
                existing["spec"]["selector"] = body["spec"]["selector"]
                existing["metadata"].setdefault("annotations", {}).update(body["metadata"]["annotations"])
                await self.api.replace(SERVICES, existing)


def _urls_from_annotation(annotation: str) -> dict[str, str]:
    mapping = json.loads(annotation or "{}")
    return {name: url for name, url in mapping.items() if not name.isdigit()}
