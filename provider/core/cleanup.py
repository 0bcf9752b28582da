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
from typing import Any, Mapping

CLEANUP_FIELDS = ("shutdownAfterJobFinishes", "ttlSecondsAfterFinished", "deletionStrategy")
CLEANUP_CHOICES = ("keep", "delete_cluster", "delete_cluster_after:<seconds>", "delete_workers_then_cluster:<seconds>:<seconds>")
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
        raise ValueError(f"unknown cleanup choice {choice!r}; choose one of: {', '.join(CLEANUP_CHOICES)}")
    if match.group(1):
        return {**fields, "shutdownAfterJobFinishes": True, "ttlSecondsAfterFinished": int(match.group(2))}
    workers_after, cluster_after = int(match.group(4)), int(match.group(5))
    if cluster_after < workers_after:
        raise ValueError(f"cleanup {choice!r}: the cluster cannot go ({cluster_after} s) before its workers ({workers_after} s)")
    # shutdownAfterJobFinishes stays unset: KubeRay refuses it beside deletionRules.
    return {**fields, "deletionStrategy": _deletion_rules(workers_after, cluster_after)}


def apply_cleanup(spec: Mapping[str, Any], choice: str) -> dict[str, Any]:
    """``spec`` with the choice's fields written in; ValueError when ``spec`` already sets one differently."""
    wanted = cleanup_spec_fields(choice)
    conflicts = [f"{name}={spec[name]!r}" for name in CLEANUP_FIELDS if spec.get(name) is not None and spec[name] != wanted[name]]
    if conflicts:
        raise ValueError(
            f"cleanup={choice!r} decides {', '.join(CLEANUP_FIELDS)} itself; remove the conflicting "
            f"explicit field(s): {', '.join(conflicts)}"
        )
    result = {name: value for name, value in spec.items() if name not in CLEANUP_FIELDS}
    result.update({name: value for name, value in wanted.items() if value is not None})
    return result
