"""RayService decisions as KubeRay v1.7.0 makes them (rayservice_controller.go), pure: promotion,
calculateConditions with the initializing timeout, the consistency check gating status writes
(utils/consistency.go) and the handleSuspend transitions. The cluster-spec hash deciding upgrades is in
rayservice_upgrade.py.

A status here is the JSON dict of RayServiceStatuses; fields KubeRay marshals with omitempty are left out
when empty (see ``normalized``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from .clock import format_time, parse_time
from .conditions import set_condition
from .validation_go import go_atoi, parse_go_duration

FINALIZER = "ray.io/rayservice-finalizer"  # utils.RayServiceFinalizer
INITIALIZING_TIMEOUT_ANNOTATION = "ray.io/initializing-timeout"
KUBERAY_CONTROLLER = "ray.io/kuberay-operator"
DEFAULT_DELETION_DELAY_SECONDS = 60  # RayClusterDeletionDelayDuration
DEFAULT_APP_NAME = "default"  # utils.DefaultServeAppName

READY, UPGRADE_IN_PROGRESS, ROLLBACK_IN_PROGRESS = "Ready", "UpgradeInProgress", "RollbackInProgress"
SUSPENDING, SUSPENDED = "Suspending", "Suspended"
INITIALIZING, INITIALIZING_TIMEOUT, VALIDATION_FAILED = "Initializing", "InitializingTimeout", "ValidationFailed"


# -- conditions ------------------------------------------------------------------------------------
def find_condition(status: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == type_), None)


def condition_true(status: Mapping[str, Any], type_: str) -> bool:
    return (find_condition(status, type_) or {}).get("status") == "True"


def set_service_condition(
    status: dict[str, Any], type_: str, value: str, reason: str, message: str, now: datetime
) -> None:
    """setCondition: meta.SetStatusCondition, stamped with the status's observedGeneration."""
    conditions = status.setdefault("conditions", [])
    set_condition(conditions, type_, value, reason, message, format_time(now))
    condition = next(c for c in conditions if c["type"] == type_)
    condition.pop("observedGeneration", None)
    if status.get("observedGeneration"):
        condition["observedGeneration"] = status["observedGeneration"]


def remove_condition(status: dict[str, Any], type_: str) -> None:
    """meta.RemoveStatusCondition."""
    status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != type_]


# -- Serve applications -----------------------------------------------------------------------------
def need_submit_serve_applications(cached: str, config: str, apps: Mapping[str, Any]) -> tuple[bool, str]:
    """checkIfNeedSubmitServeApplications."""
    if not cached:
        return True, "Nothing has been cached for the cluster."
    if not apps:
        return (
            True,
            "No Serve application found in the RayCluster. A possible reason is that the head Pod crashed and GCS FT was not enabled.",
        )
    if cached != config:
        return True, "Current V2 Serve config doesn't match cached Serve config."
    return False, "Current V2 Serve config matches cached Serve config."


def application_statuses(serve: Mapping[str, Any]) -> dict[str, Any]:
    """getAndCheckServeStatus: Serve's /api/serve/applications/ answer as applicationStatuses."""
    apps: dict[str, Any] = {}
    for name, info in serve.items():
        deployments = {
            dep: {
                key: value
                for key, value in (("status", d.get("status", "")), ("message", d.get("message", "")))
                if value
            }
            for dep, d in (info.get("deployments") or {}).items()
        }
        app = {
            key: value
            for key, value in (("status", info.get("status", "")), ("message", info.get("message", "")))
            if value
        }
        if deployments:
            app["serveDeploymentStatuses"] = deployments
        apps[name or DEFAULT_APP_NAME] = app
    return apps


def all_running(apps: Mapping[str, Any]) -> bool:
    """A cluster is ready for traffic with at least one application and every one RUNNING."""
    return bool(apps) and all(app.get("status") == "RUNNING" for app in apps.values())


# -- initializing timeout ---------------------------------------------------------------------------
def format_go_duration(delta: timedelta) -> str:
    """time.Duration.String, to the microsecond: "1m30s", "2.5s"."""
    total = delta.total_seconds()
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    text = f"{seconds:.6f}".rstrip("0").rstrip(".") + "s"
    if minutes or hours:
        text = f"{int(minutes)}m{text}"
    return f"{int(hours)}h{text}" if hours else text


def initializing_timeout(rayservice: Mapping[str, Any]) -> timedelta | None:
    """getInitializingTimeout: the annotation as a Go duration, else as integer seconds."""
    text = ((rayservice.get("metadata") or {}).get("annotations") or {}).get(INITIALIZING_TIMEOUT_ANNOTATION, "")
    if not text:
        return None
    try:
        return timedelta(microseconds=parse_go_duration(text) / 1000)
    except ValueError:
        pass
    try:
        return timedelta(seconds=go_atoi(text))
    except ValueError:
        return None  # validation refused it already


def is_initializing_timeout(status: Mapping[str, Any]) -> bool:
    """isInitializingTimeout: terminal, whatever the generation."""
    ready = find_condition(status, READY) or {}
    return ready.get("status") == "False" and ready.get("reason") == INITIALIZING_TIMEOUT


def _mark_failed_on_initializing_timeout(
    status: dict[str, Any], timeout: timedelta | None, now: datetime
) -> str | None:
    """markFailedOnInitializingTimeout; returns the Warning event's message when it fires."""
    ready = find_condition(status, READY)
    if timeout is None or ready is None or ready.get("status") != "False" or ready.get("reason") != INITIALIZING:
        return None
    since = now - (parse_time(ready.get("lastTransitionTime")) or now)
    if since < timeout:
        return None
    for key in ("activeServiceStatus", "pendingServiceStatus"):
        status.setdefault(key, {}).pop("rayClusterName", None)  # the clusters become dangling: cleaned up
    message = (
        f"RayService failed to become ready within the configured timeout of {format_go_duration(timeout)}. "
        f"Time spent initializing: {format_go_duration(since)}"
    )
    set_service_condition(status, READY, "False", INITIALIZING_TIMEOUT, message, now)
    return f"RayService initializing timeout exceeded after {format_go_duration(since)} (configured timeout: {format_go_duration(timeout)})"


def calculate_conditions(status: dict[str, Any], timeout: timedelta | None, now: datetime) -> str | None:
    """calculateConditions (after numServeEndpoints is set); returns an InitializingTimeout event message."""
    event = None
    if not status.get("conditions"):
        set_service_condition(status, READY, "False", INITIALIZING, "RayService is initializing", now)
        set_service_condition(status, UPGRADE_IN_PROGRESS, "False", INITIALIZING, "RayService is initializing", now)
    if status.get("numServeEndpoints", 0) > 0:
        set_service_condition(
            status, READY, "True", "NonZeroServeEndpoints", "Number of serve endpoints is greater than 0", now
        )
    elif condition_true(status, READY):
        set_service_condition(
            status, READY, "False", "ZeroServeEndpoints", "Number of serve endpoints dropped to 0", now
        )
    else:
        event = _mark_failed_on_initializing_timeout(status, timeout, now)
    active = (status.get("activeServiceStatus") or {}).get("rayClusterName")
    pending = (status.get("pendingServiceStatus") or {}).get("rayClusterName")
    if active and pending:
        set_service_condition(
            status,
            UPGRADE_IN_PROGRESS,
            "True",
            "BothActivePendingClustersExist",
            "Both active and pending Ray clusters exist",
            now,
        )
    elif active:
        set_service_condition(
            status,
            UPGRADE_IN_PROGRESS,
            "False",
            "NoPendingCluster",
            "Active Ray cluster exists and no pending Ray cluster",
            now,
        )
    else:
        upgrade = find_condition(status, UPGRADE_IN_PROGRESS)
        if upgrade is None or upgrade.get("reason") not in (INITIALIZING, INITIALIZING_TIMEOUT):
            set_service_condition(
                status,
                UPGRADE_IN_PROGRESS,
                "Unknown",
                "NoActiveCluster",
                "No active Ray cluster exists, and the RayService is not initializing. "
                "Please open a GitHub issue in the KubeRay repository.",
                now,
            )
    return event


def promote(status: dict[str, Any], serving_cluster: str) -> bool:
    """reconcilePromotionAndServingStatus (NewCluster): once the Services point at the pending cluster, it
    becomes the active one. Returns whether the Services point at the pending cluster."""
    pending_name: str = (status.get("pendingServiceStatus") or {}).get("rayClusterName", "")
    active_name: str = (status.get("activeServiceStatus") or {}).get("rayClusterName", "")
    if serving_cluster not in (pending_name, active_name):
        raise RuntimeError("clusterName from services is not equal to pendingCluster or activeCluster")
    if active_name != serving_cluster:
        status["activeServiceStatus"], status["pendingServiceStatus"] = status.get("pendingServiceStatus") or {}, {}
    return serving_cluster == pending_name


# -- handleSuspend ----------------------------------------------------------------------------------
def stage_suspending(status: dict[str, Any], generation: int, now: datetime) -> None:
    """Case 2: the commit point; deletion runs on the next pass."""
    status["observedGeneration"] = generation
    set_service_condition(
        status,
        SUSPENDING,
        "True",
        "SuspendRequested",
        "Spec.Suspend is true; will delete all Kubernetes resources owned by this RayService.",
        now,
    )
    set_service_condition(status, READY, "False", "SuspendInProgress", "RayService is suspending.", now)
    set_service_condition(status, UPGRADE_IN_PROGRESS, "False", "SuspendInProgress", "No upgrade in progress.", now)
    set_service_condition(status, ROLLBACK_IN_PROGRESS, "False", "SuspendInProgress", "No rollback in progress.", now)
    status.update(activeServiceStatus={}, pendingServiceStatus={}, numServeEndpoints=0, serviceStatus="")


def suspend_waiting(status: dict[str, Any], now: datetime) -> None:
    set_service_condition(
        status,
        SUSPENDING,
        "True",
        "SuspendInProgress",
        "Waiting for all Kubernetes resources owned by this RayService to be deleted.",
        now,
    )


def suspend_complete(status: dict[str, Any], now: datetime) -> None:
    message = "All owned resources have been deleted."
    set_service_condition(status, SUSPENDING, "False", "SuspendComplete", message, now)
    set_service_condition(status, SUSPENDED, "True", "SuspendComplete", message, now)
    set_service_condition(status, READY, "False", "SuspendComplete", "RayService is suspended.", now)
    set_service_condition(status, UPGRADE_IN_PROGRESS, "False", "SuspendComplete", "No upgrade in progress.", now)
    set_service_condition(status, ROLLBACK_IN_PROGRESS, "False", "SuspendComplete", "No rollback in progress.", now)


def resume(status: dict[str, Any], generation: int, now: datetime) -> None:
    """Case 1 with suspend false: Ready and UpgradeInProgress are removed and set again, so their
    lastTransitionTime (the initializing timeout's start) is fresh."""
    status["observedGeneration"] = generation
    set_service_condition(
        status, SUSPENDED, "False", "RayServiceResumed", "Spec.Suspend is false; RayService has resumed.", now
    )
    message = "RayService is initializing after resuming from suspend."
    for type_ in (READY, UPGRADE_IN_PROGRESS):
        remove_condition(status, type_)
        set_service_condition(status, type_, "False", INITIALIZING, message, now)


def suspend_is_operative(status: Mapping[str, Any]) -> bool:
    """suspendIsOperative: Suspending or Suspended owns the pass."""
    return condition_true(status, SUSPENDING) or condition_true(status, SUSPENDED)


# -- writes -----------------------------------------------------------------------------------------
def normalized(status: Mapping[str, Any]) -> dict[str, Any]:
    """The status as KubeRay marshals it: omitempty fields left out when empty."""
    result = copy.deepcopy(dict(status))
    for key in ("serviceStatus", "numServeEndpoints", "observedGeneration"):
        if not result.get(key):
            result.pop(key, None)
    for key in ("activeServiceStatus", "pendingServiceStatus"):
        part = result.setdefault(key, {})
        for field in ("rayClusterName", "applicationStatuses"):
            if not part.get(field):
                part.pop(field, None)
    return result


def _inconsistent_service_status(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """inconsistentRayServiceStatus: rayClusterStatus alone never makes a write."""
    if old.get("rayClusterName", "") != new.get("rayClusterName", ""):
        return True
    old_apps, new_apps = old.get("applicationStatuses") or {}, new.get("applicationStatuses") or {}
    if set(old_apps) != set(new_apps):
        return True
    for name, app in new_apps.items():
        before = old_apps[name]
        if (before.get("status", ""), before.get("message", "")) != (app.get("status", ""), app.get("message", "")):
            return True
        old_deps, new_deps = before.get("serveDeploymentStatuses") or {}, app.get("serveDeploymentStatuses") or {}
        if set(old_deps) != set(new_deps) or any(
            (old_deps[d].get("status", ""), old_deps[d].get("message", ""))
            != (dep.get("status", ""), dep.get("message", ""))
            for d, dep in new_deps.items()
        ):
            return True
    return False


def inconsistent_statuses(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """InconsistentRayServiceStatuses: whether a pass's status is worth writing."""
    if (old.get("serviceStatus", ""), old.get("numServeEndpoints", 0)) != (
        new.get("serviceStatus", ""),
        new.get("numServeEndpoints", 0),
    ):
        return True
    if (old.get("conditions") or []) != (new.get("conditions") or []):
        return True
    return any(
        _inconsistent_service_status(old.get(key) or {}, new.get(key) or {})
        for key in ("activeServiceStatus", "pendingServiceStatus")
    )
