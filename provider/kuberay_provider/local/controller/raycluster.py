"""RayCluster: the Pods KubeRay would create and the status it computes (raycluster_controller.go), pure.

Pods here are records, not processes: the Ray behind every RayCluster is the backend's. They exist so
that what KubeRay users and tools look at (head/worker Pods, their labels, DeleteWorkers emptying the
worker groups) is there, with phase Running and a Ready condition once the backend is up. The Pods
themselves are built in raycluster_pods.py.
"""

from __future__ import annotations

import copy
import json
import math
import shlex
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from kuberay_provider.local.ray_backend.base import RayResources

from . import kuberay as k
from .clock import format_time
from .conditions import condition_is_true, set_condition
from .quantity import parse_quantity, sum_quantities

MAX_INT32 = 2**31 - 1


def _int(value: Any, default: int) -> int:
    return default if value is None else int(value)


def group_desired_replicas(group: Mapping[str, Any]) -> int:
    """GetWorkerGroupDesiredReplicas: 0 when suspended, else replicas clamped to [min, max] times hosts."""
    if group.get("suspend") is True:
        return 0
    low, high = _int(group.get("minReplicas"), 0), _int(group.get("maxReplicas"), MAX_INT32)
    replicas = group.get("replicas")
    wanted = low if replicas is None or replicas < low else min(int(replicas), high)
    return wanted * _int(group.get("numOfHosts"), 1)


def _active_groups(spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [g for g in spec.get("workerGroupSpecs") or [] if g.get("suspend") is not True]


def worker_replica_bounds(spec: Mapping[str, Any]) -> tuple[int, int, int]:
    """(desired, min, max): CalculateDesiredReplicas, CalculateMinReplicas, CalculateMaxReplicas."""
    desired = sum(group_desired_replicas(g) for g in spec.get("workerGroupSpecs") or [])
    hosts = [(g, _int(g.get("numOfHosts"), 1)) for g in _active_groups(spec)]
    low = sum(_int(g.get("minReplicas"), 0) * n for g, n in hosts)
    high = min(sum(_int(g.get("maxReplicas"), MAX_INT32) * n for g, n in hosts), MAX_INT32)
    return desired, low, high


def _pod_resources(pod_spec: Mapping[str, Any]) -> dict[str, list[str]]:
    """CalculatePodResource: per container, requests, with limits filling what requests lack."""
    totals: dict[str, list[str]] = {}
    for container in pod_spec.get("containers") or []:
        resources = container.get("resources") or {}
        merged = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        for name, quantity in merged.items():
            totals.setdefault(name, []).append(str(quantity))
    return totals


def desired_resources(spec: Mapping[str, Any]) -> dict[str, str]:
    """CalculateDesiredResources -> desiredCPU / desiredMemory / desiredGPU / desiredTPU."""
    parts: dict[str, list[tuple[str, int]]] = {}
    groups = [(((spec.get("headGroupSpec") or {}).get("template") or {}).get("spec") or {}, 1)]
    groups += [
        ((g.get("template") or {}).get("spec") or {}, _int(g.get("replicas"), 0) * _int(g.get("numOfHosts"), 1))
        for g in _active_groups(spec)
    ]
    for pod_spec, count in groups:
        for name, quantities in _pod_resources(pod_spec).items():
            parts.setdefault(name, []).extend((q, count) for q in quantities)
    gpus = [item for name, items in parts.items() if name.endswith("gpu") for item in items]
    return {
        "desiredCPU": sum_quantities(parts.get("cpu", [])),
        "desiredMemory": sum_quantities(parts.get("memory", [])),
        "desiredGPU": sum_quantities(gpus),
        "desiredTPU": sum_quantities(parts.get("google.com/tpu", [])),
    }


def _resources_param(text: Any) -> dict[str, float]:
    """rayStartParams.resources: JSON, usually shell-quoted as KubeRay hands it to bash
    (``'"{\\"resource1\\": 2}"'``)."""
    for candidate in (str(text), " ".join(shlex.split(str(text)))):
        try:
            parsed = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(parsed, dict):
            return {str(name): float(amount) for name, amount in parsed.items()}
    return {}


def _pod_amount(group: Mapping[str, Any], param: str, resource_names: tuple[str, ...]) -> float:
    """A rayStartParams number, else what Ray detects from the Ray container's limits (rounded up)."""
    params = group.get("rayStartParams") or {}
    if params.get(param) not in (None, ""):
        return float(params[param])
    containers = ((group.get("template") or {}).get("spec") or {}).get("containers") or [{}]
    resources = containers[0].get("resources") or {}
    merged = {**(resources.get("requests") or {}), **(resources.get("limits") or {})}
    for name in resource_names:
        if name in merged:
            return float(math.ceil(parse_quantity(merged[name])[0]))
    return 0.0


def _declares_extra_resources(group: Mapping[str, Any]) -> bool:
    params = group.get("rayStartParams") or {}
    return float(params.get("num-gpus") or 0) > 0 or bool(_resources_param(params.get("resources") or "{}"))


def declared_ray_resources(spec: Mapping[str, Any]) -> RayResources | None:
    """The logical resources the cluster's Ray pods add up to, when its rayStartParams declare GPUs or
    custom resources (what a shared local Ray cannot be assumed to offer); None otherwise."""
    head = spec.get("headGroupSpec") or {}
    groups = [(head, 1)] + [(g, group_desired_replicas(g)) for g in _active_groups(spec)]
    if not any(_declares_extra_resources(group) for group, _count in groups):
        return None
    cpus = gpus = 0.0
    custom: dict[str, float] = {}
    for group, count in groups:
        cpus += count * _pod_amount(group, "num-cpus", ("cpu",))
        gpus += count * _pod_amount(group, "num-gpus", ("nvidia.com/gpu",))
        for name, amount in _resources_param((group.get("rayStartParams") or {}).get("resources") or "{}").items():
            custom[name] = custom.get(name, 0.0) + count * amount
    return RayResources(num_cpus=cpus, num_gpus=gpus, custom=custom)


def _is_running_and_ready(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    return status.get("phase") == "Running" and condition_is_true(status.get("conditions"), "Ready")


def _all_pods_running(pods: list[Mapping[str, Any]]) -> bool:
    """CheckAllPodsRunning: some Pods, all Running, none with a Ready condition other than True."""
    statuses = [pod.get("status") or {} for pod in pods]
    return bool(statuses) and all(
        s.get("phase") == "Running"
        and not any(c.get("type") == "Ready" and c.get("status") != "True" for c in s.get("conditions") or [])
        for s in statuses
    )


def _head_pod_ready_condition(head: Mapping[str, Any] | None) -> tuple[str, str, str]:
    """FindHeadPodReadyCondition -> (status, reason, message)."""
    if head is None:
        return "False", "HeadPodNotFound", "Head Pod not found"
    for cond in (head.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            reason = cond.get("reason") or ("HeadPodRunningAndReady" if cond.get("status") == "True" else "Unknown")
            return cond.get("status", "False"), reason, cond.get("message", "")
    return "False", "Unknown", ""


def _endpoints(service: Mapping[str, Any] | None) -> dict[str, str]:
    """updateEndpoints: port name -> nodePort, else targetPort (which the API server defaults to port)."""
    endpoints: dict[str, str] = {}
    for port in ((service or {}).get("spec") or {}).get("ports") or []:
        if port.get("name"):
            endpoints[port["name"]] = str(port.get("nodePort") or port.get("targetPort") or port.get("port"))
    return endpoints


def _suspend_conditions(
    conditions: list[dict[str, Any]], suspend: bool, pods: list[Mapping[str, Any]], now_text: str
) -> None:
    """The RayClusterSuspending / RayClusterSuspended dance of calculateStatus."""
    current = next(
        (
            c["type"]
            for c in conditions
            if c["type"] in ("RayClusterSuspending", "RayClusterSuspended") and c.get("status") == "True"
        ),
        "",
    )
    if current == "RayClusterSuspending":
        if not pods:
            set_condition(
                conditions,
                "RayClusterProvisioned",
                "False",
                "RayClusterPodsProvisioning",
                "RayCluster has been suspended",
                now_text,
            )
            set_condition(conditions, "RayClusterSuspending", "False", "RayClusterSuspending", "", now_text)
            set_condition(conditions, "RayClusterSuspended", "True", "RayClusterSuspended", "", now_text)
    elif current == "RayClusterSuspended":
        if not suspend:
            set_condition(conditions, "RayClusterSuspended", "False", "RayClusterSuspended", "", now_text)
    else:
        set_condition(conditions, "RayClusterSuspended", "False", "RayClusterSuspended", "", now_text)
        set_condition(
            conditions, "RayClusterSuspending", "True" if suspend else "False", "RayClusterSuspending", "", now_text
        )


def compute_cluster_status(
    cluster: Mapping[str, Any],
    pods: Iterable[Mapping[str, Any]],
    head_service: Mapping[str, Any] | None,
    now: datetime,
) -> dict[str, Any]:
    """calculateStatus (with the RayClusterStatusConditions feature gate on, its v1.7.0 default)."""
    spec = cluster.get("spec") or {}
    old = cluster.get("status") or {}
    status: dict[str, Any] = copy.deepcopy(old)
    pods = list(pods)
    now_text = format_time(now)
    workers = [p for p in pods if (p["metadata"].get("labels") or {}).get(k.RAY_NODE_TYPE_LABEL) == "worker"]
    heads = [p for p in pods if (p["metadata"].get("labels") or {}).get(k.RAY_NODE_TYPE_LABEL) == "head"]
    head = heads[0] if heads else None
    desired, low, high = worker_replica_bounds(spec)
    status.update(
        observedGeneration=cluster["metadata"].get("generation", 1),
        readyWorkerReplicas=sum(_is_running_and_ready(p) for p in workers),
        availableWorkerReplicas=sum((p.get("status") or {}).get("phase") == "Running" for p in workers),
        desiredWorkerReplicas=desired,
        minWorkerReplicas=low,
        maxWorkerReplicas=high,
        **desired_resources(spec),
    )
    if len(pods) == desired + 1 and _all_pods_running(pods):
        status["state"] = "ready"
        status.pop("reason", None)
    conditions: list[dict[str, Any]] = status.setdefault("conditions", [])
    set_condition(conditions, "HeadPodReady", *_head_pod_ready_condition(head), now_text)
    suspended_now = condition_is_true(conditions, "RayClusterSuspended")
    if not condition_is_true(conditions, "RayClusterProvisioned") and not suspended_now:
        if _all_pods_running(pods):
            set_condition(
                conditions,
                "RayClusterProvisioned",
                "True",
                "AllPodRunningAndReadyFirstTime",
                "All Ray Pods are ready for the first time",
                now_text,
            )
        else:
            set_condition(
                conditions,
                "RayClusterProvisioned",
                "False",
                "RayClusterPodsProvisioning",
                "RayCluster Pods are being provisioned for first time",
                now_text,
            )
    _suspend_conditions(conditions, spec.get("suspend") is True, pods, now_text)
    if spec.get("suspend") is True and not pods:
        status["state"] = "suspended"
    status["endpoints"] = _endpoints(head_service)
    service_ip = ((head_service or {}).get("spec") or {}).get("clusterIP", "")
    head_ip = ((head or {}).get("status") or {}).get("podIP", "")
    head_fields = {
        "podIP": head_ip,
        "podName": (head or {}).get("metadata", {}).get("name", ""),
        "serviceIP": head_ip if service_ip == "None" else service_ip,
        "serviceName": (head_service or {}).get("metadata", {}).get("name", ""),
    }
    status["head"] = {key: value for key, value in head_fields.items() if value}
    status["lastUpdateTime"] = now_text
    if old.get("state") != status.get("state") and status.get("state"):
        status.setdefault("stateTransitionTimes", {})[status["state"]] = now_text
    return status


def owned_cluster_body(
    owner: Mapping[str, Any],
    crd: str,
    cluster_name: str,
    cluster_spec: Mapping[str, Any],
    extra_labels: Mapping[str, str] | None = None,
    extra_annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A RayCluster made for a RayJob / RayService: the owner's labels and annotations, the
    originated-from labels, and a controller ownerReference (so deleting the owner deletes it)."""
    meta = owner["metadata"]
    labels = {**(meta.get("labels") or {}), k.RAY_ORIGINATED_FROM_CR_NAME: meta["name"], k.RAY_ORIGINATED_FROM_CRD: crd}
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {
            "name": cluster_name,
            "namespace": meta.get("namespace"),
            "labels": {**labels, **(extra_labels or {})},
            "annotations": {**(meta.get("annotations") or {}), **(extra_annotations or {})},
            "ownerReferences": [k.owner_reference(owner)],
        },
        "spec": copy.deepcopy(dict(cluster_spec)),
    }
