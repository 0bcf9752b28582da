"""RayService upgrades as KubeRay v1.7.0 decides them (rayservice_controller.go), pure: the cluster-spec hash
(GenerateHashWithoutReplicasAndWorkersToDelete), whether a cluster updates in place (appended worker groups)
and whether a new cluster is prepared (zero-downtime upgrades)."""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

from .rayservice_status import ROLLBACK_IN_PROGRESS, UPGRADE_IN_PROGRESS, condition_true

HASH_ANNOTATION = "ray.io/hash-without-replicas-and-workers-to-delete"
NUM_WORKER_GROUPS_ANNOTATION = "ray.io/num-worker-groups"
KUBERAY_VERSION_ANNOTATION = "ray.io/kuberay-version"
KUBERAY_VERSION = "v1.7.0"
ZERO_DOWNTIME_TYPES = ("NewCluster", "NewClusterWithIncrementalUpgrade")  # gate RayServiceIncrementalUpgrade on


def _without_empty(value: Any) -> Any:
    """What Go's omitempty marshalling leaves of a value: no null, "", [] or {} fields."""
    if isinstance(value, dict):
        cleaned = {key: _without_empty(item) for key, item in value.items()}
        return {key: item for key, item in cleaned.items() if item not in (None, "", [], {})}
    if isinstance(value, list):
        return [_without_empty(item) for item in value]
    return value


def _mute_pod_template(template: Any) -> None:
    pod_spec = (template or {}).get("spec") if isinstance(template, dict) else None
    if isinstance(pod_spec, dict):
        pod_spec.pop("tolerations", None)
        pod_spec.pop("schedulingGates", None)


def cluster_spec_hash(cluster_spec: Mapping[str, Any]) -> str:
    """GenerateHashWithoutReplicasAndWorkersToDelete: tolerations, scheduling gates, replica counts,
    workersToDelete and upgradeStrategy do not make a new cluster."""
    spec = copy.deepcopy(dict(cluster_spec))
    _mute_pod_template((spec.get("headGroupSpec") or {}).get("template"))
    for group in spec.get("workerGroupSpecs") or []:
        for field in ("replicas", "minReplicas", "maxReplicas"):
            group.pop(field, None)
        (group.get("scaleStrategy") or {}).pop("workersToDelete", None)
        _mute_pod_template(group.get("template"))
    spec.pop("upgradeStrategy", None)
    return hashlib.sha1(json.dumps(_without_empty(spec), sort_keys=True).encode()).hexdigest()


def cluster_spec_for_hashing(rayservice: Mapping[str, Any]) -> dict[str, Any]:
    """rayClusterSpecForHashing: suspend is the RayCluster's (Kueue's) once it exists."""
    spec = copy.deepcopy(dict((rayservice.get("spec") or {}).get("rayClusterConfig") or {}))
    spec.pop("suspend", None)
    return spec


def cluster_annotations(rayservice: Mapping[str, Any]) -> dict[str, str]:
    """What constructRayClusterForRayService adds to the RayService's annotations."""
    groups = ((rayservice.get("spec") or {}).get("rayClusterConfig") or {}).get("workerGroupSpecs") or []
    return {
        HASH_ANNOTATION: cluster_spec_hash(cluster_spec_for_hashing(rayservice)),
        NUM_WORKER_GROUPS_ANNOTATION: str(len(groups)),
        KUBERAY_VERSION_ANNOTATION: KUBERAY_VERSION,
    }


def is_cluster_spec_hash_equal(rayservice: Mapping[str, Any], cluster: Mapping[str, Any], partial: bool) -> bool:
    """isClusterSpecHashEqual; ``partial`` compares only the cluster's first worker groups (so groups
    appended at the end are an in-place update)."""
    annotations = cluster["metadata"].get("annotations") or {}
    goal = cluster_spec_for_hashing(rayservice)
    goal_hash = ""
    if not partial:
        goal_hash = cluster_spec_hash(goal)
    else:
        try:
            cluster_groups = int(annotations.get(NUM_WORKER_GROUPS_ANNOTATION, ""))
        except ValueError:
            return True
        groups = goal.get("workerGroupSpecs") or []
        if len(groups) >= cluster_groups:
            goal["workerGroupSpecs"] = groups[:cluster_groups]
            goal_hash = cluster_spec_hash(goal)
    stored_hash: str = annotations.get(HASH_ANNOTATION, "")
    return stored_hash == goal_hash


def should_update_cluster(rayservice: Mapping[str, Any], cluster: Mapping[str, Any] | None, is_active: bool) -> bool:
    """shouldUpdateCluster: only appended worker groups (or an older KubeRay's cluster) update in place."""
    if cluster is None:
        return False
    if is_active:
        if condition_true(rayservice.get("status") or {}, UPGRADE_IN_PROGRESS):
            return False
        if (cluster["metadata"].get("annotations") or {}).get(KUBERAY_VERSION_ANNOTATION) != KUBERAY_VERSION:
            return True
    if is_cluster_spec_hash_equal(rayservice, cluster, partial=False):
        return False
    return is_cluster_spec_hash_equal(rayservice, cluster, partial=True)


def is_zero_downtime_upgrade_enabled(rayservice: Mapping[str, Any]) -> bool:
    """isZeroDowntimeUpgradeEnabled: upgradeStrategy.type wins, else the ENABLE_ZERO_DOWNTIME env var."""
    strategy_type = ((rayservice.get("spec") or {}).get("upgradeStrategy") or {}).get("type")
    if strategy_type is not None:
        return strategy_type in ZERO_DOWNTIME_TYPES
    return os.environ.get("ENABLE_ZERO_DOWNTIME", "").lower() != "false"


def should_prepare_new_cluster(
    rayservice: Mapping[str, Any],
    status: Mapping[str, Any],
    active: Mapping[str, Any] | None,
    pending: Mapping[str, Any] | None,
    pending_serving: bool,
) -> bool:
    """shouldPrepareNewCluster: no cluster at all, or the newest one's spec hash differs (and not only
    by appended worker groups) while zero-downtime upgrades are on."""
    if pending_serving or condition_true(status, ROLLBACK_IN_PROGRESS):
        return False
    if active is None and pending is None:
        return True
    cluster = pending if pending is not None else active
    assert cluster is not None
    if is_cluster_spec_hash_equal(rayservice, cluster, partial=False):
        return False
    if is_cluster_spec_hash_equal(rayservice, cluster, partial=True):
        return False
    return is_zero_downtime_upgrade_enabled(rayservice)
