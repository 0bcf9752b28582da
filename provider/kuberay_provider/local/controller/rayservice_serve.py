"""The Serve side of a RayService pass (rayservice_controller.go): reconcileServe, updateHeadPodServeLabel,
and numServeEndpoints counted as calculateNumServeEndpointsFromSlices does.

There is no EndpointSlice controller in the local control plane: this module keeps, per serve Service, the
ready Pods its selector matched at the end of the previous pass and counts those, so a Service that was
just created (or re-pointed) shows its new endpoints one pass later, as the real controller lags.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from typing import Any

import yaml

from kuberay_provider.local.ray_backend.base import BackendError, RayBackend

from . import kuberay as k
from .actions import EventSpec
from .api import PODS, SERVICES, ClusterAPI
from .conditions import condition_is_true
from .events import EventRecorder
from .rayservice_status import all_running, application_statuses, need_submit_serve_applications
from .services import port_of

log = logging.getLogger(__name__)


class PassError(Exception):
    """A step of the pass failed: KubeRay returns the error (no status write) and retries."""


def _is_running_and_ready(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    return status.get("phase") == "Running" and condition_is_true(status.get("conditions"), "Ready")


class ServeReconciler:
    def __init__(self, api: ClusterAPI, backend: RayBackend, recorder: EventRecorder) -> None:
        self.api = api
        self.backend = backend
        self.recorder = recorder
        # ServeConfigs: (namespace, rayservice) -> cluster -> the serveConfigV2 last PUT there.
        self._configs: dict[tuple[str, str], dict[str, str]] = {}
        # The stand-in EndpointSlices: (namespace, service) -> names of the ready Pods it selected.
        self._slices: dict[tuple[str, str], tuple[str, ...]] = {}

    def _key(self, rayservice: Mapping[str, Any]) -> tuple[str, str]:
        return rayservice["metadata"].get("namespace", ""), rayservice["metadata"]["name"]

    def forget(self, rayservice: Mapping[str, Any]) -> None:
        self._configs.pop(self._key(rayservice), None)

    def clean_up_cache(self, rayservice: Mapping[str, Any]) -> None:
        """cleanUpServeConfigCache: only the active and pending clusters keep a cached config."""
        status = rayservice.get("status") or {}
        keep = {
            (status.get(key) or {}).get("rayClusterName") for key in ("activeServiceStatus", "pendingServiceStatus")
        }
        cached = self._configs.get(self._key(rayservice), {})
        for cluster_name in [name for name in cached if name not in keep]:
            del cached[cluster_name]

    async def _event(self, rayservice: Mapping[str, Any], type_: str, reason: str, action: str, message: str) -> None:
        await self.recorder.record(rayservice, EventSpec(type_, reason, action, message))

    # -- head Pod serve label -------------------------------------------------------------------
    async def _proxy_healthy(self, namespace: str, cluster_name: str, head: Mapping[str, Any]) -> bool:
        """The `-/healthz` probe of the head's Serve proxy: up once Serve runs on the cluster."""
        if not _is_running_and_ready(head):
            return False
        try:
            return bool(await self.backend.serve_status(namespace, cluster_name))
        except BackendError:
            return False

    async def update_head_pod_serve_label(
        self, rayservice: Mapping[str, Any], cluster: Mapping[str, Any] | None
    ) -> None:
        """updateHeadPodServeLabel: the head Pod is in the serve Service only while its proxy is healthy
        (never with excludeHeadPodFromServeSvc)."""
        if cluster is None:
            return
        namespace, cluster_name = cluster["metadata"].get("namespace", ""), cluster["metadata"]["name"]
        heads = await self.api.list(PODS, namespace, {k.RAY_CLUSTER_LABEL: cluster_name, k.RAY_NODE_TYPE_LABEL: "head"})
        if not heads:
            raise PassError(f"found 0 head. cluster name {cluster_name}, namespace {namespace}")
        head = copy.deepcopy(heads[0])
        exclude = bool((rayservice.get("spec") or {}).get("excludeHeadPodFromServeSvc"))
        new_label = "false" if exclude else str(await self._proxy_healthy(namespace, cluster_name, head)).lower()
        labels = head["metadata"].setdefault("labels", {})
        # BuildPod created it "false" (workers "true", for good: their readiness probe gates their traffic).
        if labels.get(k.RAY_SERVE_LABEL) == new_label:
            return
        labels[k.RAY_SERVE_LABEL] = new_label
        await self.api.replace(PODS, head)
        await self._event(
            rayservice,
            "Normal",
            "UpdatedHeadPodServeLabel",
            "Update",
            f'Updated the serve label to "{new_label}" for the Head Pod {namespace}/{head["metadata"]["name"]}',
        )

    # -- reconcileServe -------------------------------------------------------------------------
    async def reconcile_serve(
        self, rayservice: Mapping[str, Any], cluster: Mapping[str, Any]
    ) -> tuple[bool, dict[str, Any] | None]:
        """reconcileServe: (ready for traffic, applicationStatuses). The statuses are read *before* a
        changed serveConfigV2 is PUT, so the pass that applies it still reports the old ones."""
        if not condition_is_true((cluster.get("status") or {}).get("conditions"), "HeadPodReady"):
            return False, None
        namespace, cluster_name = cluster["metadata"].get("namespace", ""), cluster["metadata"]["name"]
        head_service = await self.api.get(SERVICES, namespace, k.cluster_head_service_name(cluster))
        if head_service is None:  # FetchHeadServiceURL
            raise PassError(f'services "{k.cluster_head_service_name(cluster)}" not found')
        if port_of(head_service, k.DASHBOARD_PORT_NAME) is None:
            raise PassError(f"{k.DASHBOARD_PORT_NAME} port is not found")
        config = (rayservice.get("spec") or {}).get("serveConfigV2") or ""
        cached = self._configs.get(self._key(rayservice), {}).get(cluster_name, "")
        try:
            apps = application_statuses(await self.backend.serve_status(namespace, cluster_name))
        except BackendError as exc:
            raise PassError(f"failed to get Serve application statuses from the dashboard. err: {exc}") from exc
        should_update, reason = need_submit_serve_applications(cached, config, apps)
        log.debug("checkIfNeedSubmitServeApplications %s/%s: %s (%s)", namespace, cluster_name, should_update, reason)
        if should_update:
            await self._update_serve_deployment(rayservice, namespace, cluster_name, config)
        return all_running(apps), apps

    async def _update_serve_deployment(
        self, rayservice: Mapping[str, Any], namespace: str, cluster_name: str, config: str
    ) -> None:
        """updateServeDeployment: PUT the config, then cache it (an empty config is never cached)."""
        ref = f"{namespace}/{cluster_name}"
        try:
            parsed = yaml.safe_load(config) or {}
            if not isinstance(parsed, dict):
                raise yaml.YAMLError("serveConfigV2 must be a YAML mapping")
            notices = await self.backend.deploy_serve(namespace, cluster_name, parsed)
        except (BackendError, yaml.YAMLError) as exc:
            await self._event(
                rayservice,
                "Warning",
                "FailedToUpdateServeApplications",
                "Update",
                f"Failed to update serve applications to the RayCluster {ref}: fail to create / update Serve applications. err: {exc}",
            )
            raise PassError(str(exc)) from exc
        if config:
            self._configs.setdefault(self._key(rayservice), {})[cluster_name] = config
        await self._event(
            rayservice,
            "Normal",
            "UpdatedServeApplications",
            "Update",
            f"Updated serve applications to the RayCluster {ref}",
        )
        for notice in notices or ():
            await self._event(rayservice, notice.type, notice.reason, "Update", notice.message)

    # -- serve endpoints ------------------------------------------------------------------------
    async def count_serve_endpoints(self, namespace: str, service_name: str) -> int:
        """calculateNumServeEndpointsFromSlices: ready Pods of the serve Service, as last sliced."""
        sliced = set(self._slices.get((namespace, service_name), ()))
        if not sliced:
            return 0
        return sum(
            1
            for pod in await self.api.list(PODS, namespace)
            if pod["metadata"]["name"] in sliced and _is_running_and_ready(pod)
        )

    async def refresh_endpoint_slices(self, namespace: str, service_name: str) -> None:
        """What the EndpointSlice controller would have done by the next pass."""
        service = await self.api.get(SERVICES, namespace, service_name)
        selector = ((service or {}).get("spec") or {}).get("selector")
        if not selector:
            self._slices.pop((namespace, service_name), None)
            return
        pods = await self.api.list(PODS, namespace, selector)
        self._slices[(namespace, service_name)] = tuple(p["metadata"]["name"] for p in pods if _is_running_and_ready(p))

    def forget_service(self, namespace: str, service_name: str) -> None:
        self._slices.pop((namespace, service_name), None)
