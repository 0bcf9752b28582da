"""RayCluster Pods as KubeRay builds them (buildHeadPod, buildWorkerPod, reconcilePods), pure: records with
the labels, owner and status a running Pod has; and the head's ConfigMap volumes as files for the backend."""

from __future__ import annotations

import copy
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kuberay_provider.local.ray_backend.base import ConfigMapMount

from . import kuberay as k
from .clock import format_time
from .raycluster import group_desired_replicas


def pod_name(prefix: str, node_type: str) -> str:
    """utils.PodName with generateName semantics, the random suffix filled in here."""
    return f"{prefix[:50]}-{node_type}-".lower() + k.random_suffix()


def _pod_status(ready: bool, pod_ip: str, now_text: str, waiting_message: str = "") -> dict[str, Any]:
    state = "True" if ready else "False"
    conditions = [
        {"type": t, "status": "True" if t in ("PodScheduled", "Initialized") else state, "lastTransitionTime": now_text}
        for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
    ]
    if not ready:
        for cond in conditions[2:]:
            cond.update(reason="ContainersNotReady", message=waiting_message)
    container_state: dict[str, Any] = (
        {"running": {"startedAt": now_text}}
        if ready
        else {"waiting": {"reason": "ContainerCreating", "message": waiting_message}}
    )
    return {
        "phase": "Running" if ready else "Pending",
        "podIP": pod_ip if ready else "",
        "podIPs": [{"ip": pod_ip}] if ready else [],
        "hostIP": pod_ip,
        "startTime": now_text,
        "conditions": conditions,
        "containerStatuses": [{"name": "ray-head", "ready": ready, "restartCount": 0, "state": container_state}],
    }


def _name_container_status(status: dict[str, Any], body: Mapping[str, Any], default_name: str) -> None:
    """The status of the Pod's first container names it and its image, as the kubelet reports (clients such
    as the official Python client refuse a containerStatus without an image)."""
    container = (body["spec"].get("containers") or [{}])[0]
    image = str(container.get("image") or "")
    status["containerStatuses"][0].update(name=container.get("name", default_name), image=image, imageID=image)


@dataclass(frozen=True)
class PodPlan:
    body: dict[str, Any]
    status: dict[str, Any]


def _build_pod(
    cluster: Mapping[str, Any], template: Mapping[str, Any], node_type: str, group: str, name: str
) -> dict[str, Any]:
    meta = cluster["metadata"]
    template_meta = template.get("metadata") or {}
    labels = k.pod_labels(node_type, meta["name"], group, template_meta.get("labels"))
    if (meta.get("labels") or {}).get(k.RAY_ORIGINATED_FROM_CRD) == k.CRD_RAYSERVICE:
        # BuildPod, over any template label: workers serve once their readiness probe passes, the head
        # only once the RayService controller finds its Serve proxy healthy (updateHeadPodServeLabel).
        labels[k.RAY_SERVE_LABEL] = "false" if node_type == "head" else "true"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": meta.get("namespace"),
            "labels": labels,
            "annotations": dict(template_meta.get("annotations") or {}),
            "ownerReferences": [k.owner_reference(cluster)],
        },
        "spec": copy.deepcopy(template.get("spec") or {}),
    }


def plan_head_pod(cluster: Mapping[str, Any], ready: bool, pod_ip: str, now: datetime, message: str = "") -> PodPlan:
    """buildHeadPod: ``<cluster>-head-xxxxx`` with group ``headgroup``."""
    template = (cluster["spec"].get("headGroupSpec") or {}).get("template") or {}
    body = _build_pod(cluster, template, "head", k.HEAD_GROUP_NAME, pod_name(cluster["metadata"]["name"], "head"))
    status = _pod_status(ready, pod_ip, format_time(now), message)
    _name_container_status(status, body, "ray-head")
    return PodPlan(body, status)


def plan_worker_pod(cluster: Mapping[str, Any], group: Mapping[str, Any], pod_ip: str, now: datetime) -> PodPlan:
    """buildWorkerPod: ``<cluster>-<group>-worker-xxxxx``."""
    prefix = f"{cluster['metadata']['name']}-{group['groupName']}"
    body = _build_pod(cluster, group.get("template") or {}, "worker", group["groupName"], pod_name(prefix, "worker"))
    status = _pod_status(True, pod_ip, format_time(now))
    _name_container_status(status, body, "ray-worker")
    return PodPlan(body, status)


def worker_pods_to_delete(group: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> list[str]:
    """reconcilePods for one group: first scaleStrategy.workersToDelete, then extras beyond desired."""
    named = set((group.get("scaleStrategy") or {}).get("workersToDelete") or [])
    doomed = [p["metadata"]["name"] for p in pods if p["metadata"]["name"] in named]
    remaining = [p["metadata"]["name"] for p in pods if p["metadata"]["name"] not in named]
    extra = len(remaining) - group_desired_replicas(group)
    return doomed + (remaining[-extra:] if extra > 0 else [])


def config_map_mounts(
    cluster_spec: Mapping[str, Any], config_maps: Mapping[str, Mapping[str, str] | None]
) -> tuple[list[ConfigMapMount], list[str]]:
    """The head container's ConfigMap volumes as files at their mount paths; and the ConfigMaps missing.

    ``config_maps`` maps a referenced name to its data (None when it does not exist).
    """
    pod_spec = ((cluster_spec.get("headGroupSpec") or {}).get("template") or {}).get("spec") or {}
    volumes = {v["name"]: v["configMap"] for v in pod_spec.get("volumes") or [] if v.get("configMap")}
    container = (pod_spec.get("containers") or [{}])[0]
    mounts: list[ConfigMapMount] = []
    missing: list[str] = []
    for mount in container.get("volumeMounts") or []:
        source = volumes.get(mount.get("name"))
        if source is None:
            continue
        data = config_maps.get(source.get("name", ""))
        if data is None:
            if not source.get("optional"):
                missing.append(source.get("name", ""))
            continue
        items = source.get("items") or [{"key": key, "path": key} for key in data]
        files = {item["path"]: data[item["key"]] for item in items if item["key"] in data}
        if mount.get("subPath"):
            directory, filename = posixpath.split(mount["mountPath"].rstrip("/"))
            if mount["subPath"] in files:
                mounts.append(ConfigMapMount(directory, {filename: files[mount["subPath"]]}))
            continue
        mounts.append(ConfigMapMount(mount["mountPath"], files))
    return mounts, missing


def referenced_config_maps(cluster_spec: Mapping[str, Any]) -> list[str]:
    pod_spec = ((cluster_spec.get("headGroupSpec") or {}).get("template") or {}).get("spec") or {}
    return [v["configMap"]["name"] for v in pod_spec.get("volumes") or [] if (v.get("configMap") or {}).get("name")]
