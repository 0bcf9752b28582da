"""Batch schedulers in front of KubeRay: Kueue (quota and admission) and Volcano (gang scheduling).

Both are chosen by labels on the ray.io object; KubeRay copies a RayJob's or RayService's labels onto
the RayCluster it creates, so the label on the object we create is the only one to set.

* **Kueue** reads ``kueue.x-k8s.io/queue-name`` (a LocalQueue in the object's namespace). It admits a
  workload by unsuspending it: ``spec.suspend`` for RayJob and RayCluster, ``spec.rayClusterConfig.suspend``
  for RayService. We create the object suspended, so KubeRay never starts a cluster Kueue has not
  admitted, whether or not Kueue's own webhook would have suspended it.
* **Volcano** is KubeRay's batch scheduler when the operator runs with ``batchScheduler.name=volcano``
  (v1.7.0 chooses it by that setting): KubeRay then creates a PodGroup ``ray-<name>-pg`` for the
  cluster and ``volcano.sh/queue-name`` puts it in a Volcano Queue. We also set
  ``ray.io/scheduler-name: volcano``, the label older operators (``--enable-batch-scheduler``) read;
  v1.7.0 ignores it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
SCHEDULER_NAME_LABEL = "ray.io/scheduler-name"  # KubeRay's RaySchedulerName label
VOLCANO = "volcano"
VOLCANO_QUEUE_LABEL = "volcano.sh/queue-name"


def scheduling_labels(queue_name: str | None = None, volcano_queue: str | None = None) -> dict[str, str]:
    """The labels that put an object in a Kueue LocalQueue and/or a Volcano Queue."""
    labels: dict[str, str] = {}
    if queue_name:
        labels[KUEUE_QUEUE_LABEL] = queue_name
    if volcano_queue:
        labels[SCHEDULER_NAME_LABEL] = VOLCANO
        labels[VOLCANO_QUEUE_LABEL] = volcano_queue
    return labels


def kueue_queue_of(manifest: Mapping[str, Any] | None) -> str:
    """The Kueue LocalQueue an object is queued on ("" when Kueue does not manage it)."""
    labels = (((manifest or {}).get("metadata") or {}).get("labels")) or {}
    return str(labels.get(KUEUE_QUEUE_LABEL) or "")


def suspend_path(kind: str) -> tuple[str, ...]:
    """Where Kueue suspends an object of ``kind`` (under ``spec``)."""
    return ("rayClusterConfig", "suspend") if kind == "RayService" else ("suspend",)


def is_held_by_kueue(manifest: Mapping[str, Any]) -> bool:
    """Queued on Kueue and still suspended: waiting for admission."""
    if not kueue_queue_of(manifest):
        return False
    node: Any = manifest.get("spec") or {}
    for key in suspend_path(str(manifest.get("kind", ""))):
        node = node.get(key) if isinstance(node, Mapping) else None
    return node is True


def suspend_for_kueue(manifest: dict[str, Any]) -> dict[str, Any]:
    """Mark a manifest queued on Kueue as suspended (in place, and returned); others are left alone."""
    if not kueue_queue_of(manifest):
        return manifest
    *parents, leaf = suspend_path(str(manifest.get("kind", "")))
    node = manifest.setdefault("spec", {})
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = True
    return manifest
