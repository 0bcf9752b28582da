"""metav1.Condition handling as apimachinery's meta.SetStatusCondition does it, and status comparisons."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

CLUSTER_STATUS_COMPARED_FIELDS = (
    "state",
    "reason",
    "readyWorkerReplicas",
    "availableWorkerReplicas",
    "desiredWorkerReplicas",
    "minWorkerReplicas",
    "maxWorkerReplicas",
    "endpoints",
    "head",
    "conditions",
)


def set_condition(
    conditions: list[dict[str, Any]], type_: str, status: str, reason: str, message: str, now_text: str
) -> None:
    """meta.SetStatusCondition: lastTransitionTime moves only when status changes."""
    for cond in conditions:
        if cond.get("type") == type_:
            if cond.get("status") != status:
                cond["status"] = status
                cond["lastTransitionTime"] = now_text
            cond["reason"] = reason
            cond["message"] = message
            return
    conditions.append(
        {"type": type_, "status": status, "reason": reason, "message": message, "lastTransitionTime": now_text}
    )


def condition_is_true(conditions: Sequence[Mapping[str, Any]] | None, type_: str) -> bool:
    return any(c.get("type") == type_ and c.get("status") == "True" for c in conditions or [])


def inconsistent_cluster_status(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> bool:
    """utils.InconsistentRayClusterStatus: only these fields make a RayCluster status worth writing."""
    old, new = old or {}, new or {}

    def norm(status: Mapping[str, Any], field: str) -> Any:
        value = status.get(field)
        return value if value not in (None, 0, "", {}, []) else None

    return any(norm(old, f) != norm(new, f) for f in CLUSTER_STATUS_COMPARED_FIELDS)
