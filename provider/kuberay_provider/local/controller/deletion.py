"""What happens to a finished RayJob's resources (rayjob_controller.go, case Complete / Failed).

Three mechanisms, first match wins: deletionStrategy.deletionRules (handleDeletionRules), the legacy
deletionStrategy.onSuccess/onFailure (handleLegacyDeletionPolicy), shutdownAfterJobFinishes
(handleShutdownAfterJobFinishes). Pure: returns actions and the requeue delay.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .actions import Action, DeleteRayCluster, DeleteSelf, SuspendWorkerGroups
from .clock import parse_time

if TYPE_CHECKING:
    from .rayjob_model import RayJobSettings

# selectMostImpactfulRule
POLICY_IMPACT = {"DeleteSelf": 4, "DeleteCluster": 3, "DeleteWorkers": 2, "DeleteNone": 1}
REQUEUE_BUFFER_SECONDS = 2  # requeueDelayFor adds 2 s


Decision = tuple[list[Action], "float | None"]  # actions, requeue delay (None: no requeue)


def _cluster_gone(cluster: Mapping[str, Any] | None) -> bool:
    return cluster is None or bool(cluster["metadata"].get("deletionTimestamp"))


def _delete_cluster(cluster: Mapping[str, Any] | None) -> list[Action]:
    """deleteClusterResources: delete unless it is already gone or going."""
    if cluster is None or _cluster_gone(cluster):
        return []
    return [DeleteRayCluster(cluster["metadata"]["name"])]


def policy_actions(policy: str, rayjob: Mapping[str, Any], cluster: Mapping[str, Any] | None) -> list[Action]:
    """executeDeletionPolicy."""
    if policy == "DeleteCluster":
        return _delete_cluster(cluster)
    if policy == "DeleteWorkers":
        return [SuspendWorkerGroups((rayjob.get("status") or {}).get("rayClusterName", ""))]
    if policy == "DeleteSelf":
        return [DeleteSelf()]
    return []


def is_deletion_action_completed(policy: str, cluster: Mapping[str, Any] | None) -> bool:
    """isDeletionActionCompleted: judged from the cluster's actual state, for idempotency."""
    if policy == "DeleteNone":
        return True
    if policy == "DeleteSelf":
        return False
    if cluster is None or _cluster_gone(cluster):
        return True
    if policy == "DeleteWorkers":
        groups = (cluster.get("spec") or {}).get("workerGroupSpecs") or []
        return all(group.get("suspend") is True for group in groups)
    return False


def is_rule_matched(rule: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    """isDeletionRuleMatched: exactly one of jobStatus / jobDeploymentStatus is set."""
    condition = rule.get("condition") or {}
    if "jobStatus" in condition:
        wanted_job_status: str = condition["jobStatus"]
        job_status: str = status.get("jobStatus", "")
        return wanted_job_status == job_status
    wanted_deployment_status: str | None = condition.get("jobDeploymentStatus")
    deployment_status: str = status.get("jobDeploymentStatus", "")
    return wanted_deployment_status == deployment_status


def _requeue_delay(at: datetime, now: datetime) -> float:
    return (at - now).total_seconds() + REQUEUE_BUFFER_SECONDS


def handle_deletion_rules(rayjob: Mapping[str, Any], cluster: Mapping[str, Any] | None, now: datetime) -> Decision:
    """handleDeletionRules: run the most impactful overdue rule (one per reconcile), requeue for the next."""
    status = rayjob.get("status") or {}
    end = parse_time(status.get("endTime")) or now
    overdue: list[Mapping[str, Any]] = []
    next_at: datetime | None = None
    for rule in rayjob["spec"]["deletionStrategy"]["deletionRules"]:
        if not is_rule_matched(rule, status):
            continue
        at = end + timedelta(seconds=int((rule.get("condition") or {}).get("ttlSeconds") or 0))
        if now < at:
            next_at = at if next_at is None or at < next_at else next_at
            continue
        if not is_deletion_action_completed(rule["policy"], cluster):
            overdue.append(rule)
    actions: list[Action] = []
    if overdue:
        chosen = overdue[0]
        for rule in overdue[1:]:
            if POLICY_IMPACT.get(rule["policy"], 0) > POLICY_IMPACT.get(chosen["policy"], 0):
                chosen = rule
        actions = policy_actions(chosen["policy"], rayjob, cluster)
    return actions, _requeue_delay(next_at, now) if next_at is not None else None


def _after_ttl(rayjob: Mapping[str, Any], now: datetime) -> float | None:
    """Seconds to wait before the top-level ttlSecondsAfterFinished has passed, or None when it has."""
    end = parse_time((rayjob.get("status") or {}).get("endTime")) or now
    at = end + timedelta(seconds=int(rayjob["spec"].get("ttlSecondsAfterFinished") or 0))
    return _requeue_delay(at, now) if at > now else None


def handle_legacy_policy(rayjob: Mapping[str, Any], cluster: Mapping[str, Any] | None, now: datetime) -> Decision:
    """handleLegacyDeletionPolicy: onSuccess / onFailure by jobStatus, after ttlSecondsAfterFinished."""
    strategy = rayjob["spec"]["deletionStrategy"]
    job_status = (rayjob.get("status") or {}).get("jobStatus")
    side = {"SUCCEEDED": "onSuccess", "FAILED": "onFailure"}.get(job_status or "")
    if side is None:
        return [], None
    policy = (strategy.get(side) or {}).get("policy", "DeleteNone")
    if policy == "DeleteNone":
        return [], None
    wait = _after_ttl(rayjob, now)
    if wait is not None:
        return [], wait
    return policy_actions(policy, rayjob, cluster), None


def handle_shutdown_after_job_finishes(
    rayjob: Mapping[str, Any], cluster: Mapping[str, Any] | None, now: datetime, delete_rayjob: bool
) -> Decision:
    """handleShutdownAfterJobFinishes: delete the cluster (or, with DELETE_RAYJOB_CR_AFTER_JOB_FINISHES,
    the RayJob) once ttlSecondsAfterFinished has passed."""
    wait = _after_ttl(rayjob, now)
    if wait is not None:
        return [], wait
    return ([DeleteSelf()] if delete_rayjob else _delete_cluster(cluster)), None


def handle_finished_rayjob(
    rayjob: Mapping[str, Any], cluster: Mapping[str, Any] | None, now: datetime, settings: RayJobSettings
) -> Decision:
    spec = rayjob.get("spec") or {}
    strategy = spec.get("deletionStrategy")
    if settings.deletion_policy_feature_gate and strategy is not None:
        if strategy.get("deletionRules") is not None:
            return handle_deletion_rules(rayjob, cluster, now)
        return handle_legacy_policy(rayjob, cluster, now)
    if spec.get("shutdownAfterJobFinishes"):
        return handle_shutdown_after_job_finishes(rayjob, cluster, now, settings.delete_rayjob_after_job_finishes)
    return [], None
