"""``cleanup=``: one word for what KubeRay does with a RayJob's cluster once the job ends.

KubeRay spreads this over three spec fields with rules between them (shutdownAfterJobFinishes,
ttlSecondsAfterFinished, deletionStrategy). A choice maps to all three at once:

=====================================  ==========================================================
``"keep"``                              shutdownAfterJobFinishes: false (cluster stays until the
                                        RayJob is deleted)
``"delete_cluster"``                    shutdownAfterJobFinishes: true
``"delete_cluster_after:<s>"``          shutdownAfterJobFinishes: true, ttlSecondsAfterFinished: s
``"delete_workers_then_cluster:<w>:<c>"``  deletionStrategy.deletionRules: DeleteWorkers after w s,
                                        DeleteCluster after c s (c >= w), whatever the outcome
=====================================  ==========================================================

A field the choice does not set must be absent. Explicitly given fields (keywords or the base manifest)
that disagree with the choice are refused before anything is created: two sources of truth for one
decision is a mistake, not a preference.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from kuberay_provider.core.errors import ConfigurationError

CLEANUP_FIELDS = ("shutdownAfterJobFinishes", "ttlSecondsAfterFinished", "deletionStrategy")
CLEANUP_CHOICES = (
    "keep",
    "delete_cluster",
    "delete_cluster_after:<seconds>",
    "delete_workers_then_cluster:<seconds>:<seconds>",
)
# The end states a deletion rule can match: the Ray job's own end, and a RayJob that failed before the
# job had a status (submitter failure, deadline).
_END_CONDITIONS = ({"jobStatus": "SUCCEEDED"}, {"jobStatus": "FAILED"}, {"jobDeploymentStatus": "Failed"})
_WITH_SECONDS = re.compile(r"^(delete_cluster_after):(\d+)$|^(delete_workers_then_cluster):(\d+):(\d+)$")


def _deletion_rules(workers_after: int, cluster_after: int) -> dict[str, Any]:
    return {
        "deletionRules": [
            {"policy": policy, "condition": {**condition, "ttlSeconds": ttl}}
            for condition in _END_CONDITIONS
            for policy, ttl in (("DeleteWorkers", workers_after), ("DeleteCluster", cluster_after))
        ]
    }


def cleanup_spec_fields(choice: str) -> dict[str, Any]:
    """The three KubeRay fields a choice stands for; None marks a field that must be absent."""
    fields: dict[str, Any] = dict.fromkeys(CLEANUP_FIELDS)
    text = str(choice).strip()
    if text == "keep":
        return {**fields, "shutdownAfterJobFinishes": False}
    if text == "delete_cluster":
        return {**fields, "shutdownAfterJobFinishes": True}
    match = _WITH_SECONDS.match(text)
    if match is None:
        raise ConfigurationError(f"unknown cleanup choice {choice!r}; choose one of: {', '.join(CLEANUP_CHOICES)}")
    if match.group(1):
        return {**fields, "shutdownAfterJobFinishes": True, "ttlSecondsAfterFinished": int(match.group(2))}
    workers_after, cluster_after = int(match.group(4)), int(match.group(5))
    if cluster_after < workers_after:
        raise ConfigurationError(
            f"cleanup {choice!r}: the cluster cannot go ({cluster_after} s) before its workers ({workers_after} s)"
        )
    # shutdownAfterJobFinishes stays unset: KubeRay refuses it beside deletionRules.
    return {**fields, "deletionStrategy": _deletion_rules(workers_after, cluster_after)}


def held_cleanup(choice: str, hold_seconds: int) -> str:
    """``choice`` with the cluster kept at least ``hold_seconds`` after the job ends. A shipped function's
    result lives in the job's log, on the cluster: the RayJob is created with this, and the task applies
    ``choice`` itself once it has read the result (``core.function_runs``); the hold only matters when no
    try does (a worker died), long enough for a retry. Workers may go as chosen: the log is the head's."""
    cleanup_spec_fields(choice)  # an unknown choice fails here
    if hold_seconds < 0:
        raise ConfigurationError(f"result_hold_seconds must be 0 or more seconds, got {hold_seconds!r}")
    text = str(choice).strip()
    match = _WITH_SECONDS.match(text)
    if text == "keep":
        return text
    if match is None:  # "delete_cluster"
        return f"delete_cluster_after:{hold_seconds}"
    if match.group(1):
        return f"delete_cluster_after:{max(int(match.group(2)), hold_seconds)}"
    return f"delete_workers_then_cluster:{match.group(4)}:{max(int(match.group(5)), hold_seconds)}"


def apply_cleanup(spec: Mapping[str, Any], choice: str) -> dict[str, Any]:
    """``spec`` with the choice's fields written in; ConfigurationError when ``spec`` already sets one differently."""
    wanted = cleanup_spec_fields(choice)
    conflicts = [
        f"{name}={spec[name]!r}" for name in CLEANUP_FIELDS if spec.get(name) is not None and spec[name] != wanted[name]
    ]
    if conflicts:
        raise ConfigurationError(
            f"cleanup={choice!r} decides {', '.join(CLEANUP_FIELDS)} itself; remove the conflicting "
            f"explicit field(s): {', '.join(conflicts)}"
        )
    result = {name: value for name, value in spec.items() if name not in CLEANUP_FIELDS}
    result.update({name: value for name, value in wanted.items() if value is not None})
    return result
