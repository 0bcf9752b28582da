"""Rules of the batch schedulers an object is labelled for, checked before anything is created.

Kueue's come from its webhooks (pkg/controller/jobs/{rayjob,raycluster,rayservice}): a Kueue workload
has at most 8 PodSets (the head and 7 worker groups), "head" names the head's PodSet, the quota Kueue
reserves must not be resized by an autoscaler, and a RayJob must free its cluster when it ends. For
Volcano only the queue name's syntax is checked: KubeRay v1.7.0 picks its batch scheduler from the
operator's configuration, not from a label, so a ``volcano.sh/queue-name`` alone is valid (KubeRay's own
sample has just that).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..errors import FieldError
from ..schedulers import KUEUE_QUEUE_LABEL, SCHEDULER_NAME_LABEL, VOLCANO_QUEUE_LABEL
from .rules import dns1123_subdomain_errors, label_value_errors

KUEUE_MAX_WORKER_GROUPS = 7  # 8 PodSets at most, one of them the head's
KUEUE_HEAD_PODSET = "head"
_CLUSTER_SPEC_PATH = {"RayJob": "spec.rayClusterSpec", "RayCluster": "spec", "RayService": "spec.rayClusterConfig"}


def _kueue(path: str, rule: str, message: str) -> FieldError:
    return FieldError(path, f"kueue:{rule}", message)


def _map(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _at(obj: dict[str, Any], dotted: str) -> dict[str, Any]:
    for key in dotted.split("."):
        obj = _map(obj.get(key))
    return obj


def scheduler_rules(manifest: dict[str, Any]) -> list[FieldError]:
    """Every Kueue / Volcano problem of a ray.io manifest (none when it names no scheduler)."""
    labels = _map(_map(manifest.get("metadata")).get("labels"))
    errors = list(_volcano_rules(labels))
    queue = labels.get(KUEUE_QUEUE_LABEL)
    if queue is None:
        return errors
    path = f"metadata.labels[{KUEUE_QUEUE_LABEL}]"
    for problem in label_value_errors(str(queue)) + dns1123_subdomain_errors(str(queue)):
        errors.append(_kueue(path, "queue-name", f"the LocalQueue name {queue!r} is invalid: {problem}"))
    if volcano := [key for key in (SCHEDULER_NAME_LABEL, VOLCANO_QUEUE_LABEL) if key in labels]:
        errors.append(
            FieldError(
                path,
                "provider:one-batch-scheduler",
                f"queued on Kueue and also labelled for Volcano ({', '.join(volcano)}): choose one batch scheduler",
            )
        )
    kind = str(manifest.get("kind", ""))
    spec = _map(manifest.get("spec"))
    if kind == "RayJob":
        errors += _kueue_rayjob_rules(spec)
        if not _map(spec.get("rayClusterSpec")) or _map(spec.get("clusterSelector")):
            return errors
    if kind in _CLUSTER_SPEC_PATH:
        errors += _kueue_cluster_rules(_at(manifest, _CLUSTER_SPEC_PATH[kind]), _CLUSTER_SPEC_PATH[kind])
    return errors


def _kueue_rayjob_rules(spec: dict[str, Any]) -> Iterator[FieldError]:
    if _map(spec.get("clusterSelector")):
        yield _kueue(
            "spec.clusterSelector",
            "no-existing-cluster",
            "a Kueue-managed RayJob cannot use an existing cluster: Kueue admits the cluster the RayJob creates "
            "(drop the queue or the clusterSelector)",
        )
    elif not _map(spec.get("rayClusterSpec")):
        yield _kueue("spec.rayClusterSpec", "cluster-spec-required", "a Kueue-managed RayJob needs a rayClusterSpec")
    if spec.get("shutdownAfterJobFinishes") is not True:
        yield _kueue(
            "spec.shutdownAfterJobFinishes",
            "shutdown-after-job-finishes",
            "a Kueue-managed RayJob must delete its cluster when it finishes (shutdownAfterJobFinishes: true), "
            "or the cluster keeps holding the queue's quota",
        )


def _kueue_cluster_rules(cluster: dict[str, Any], path: str) -> Iterator[FieldError]:
    if cluster.get("enableInTreeAutoscaling") is True:
        yield _kueue(
            f"{path}.enableInTreeAutoscaling",
            "no-autoscaling",
            "a Kueue-managed cluster cannot autoscale: Kueue reserves its quota once, at admission",
        )
    groups = cluster.get("workerGroupSpecs")
    groups = groups if isinstance(groups, list) else []
    if len(groups) > KUEUE_MAX_WORKER_GROUPS:
        yield _kueue(
            f"{path}.workerGroupSpecs",
            "max-worker-groups",
            f"a Kueue workload has at most {KUEUE_MAX_WORKER_GROUPS} worker groups (8 PodSets with the head); "
            f"this one has {len(groups)}",
        )
    for index, group in enumerate(groups):
        if _map(group).get("groupName") == KUEUE_HEAD_PODSET:
            yield _kueue(
                f"{path}.workerGroupSpecs[{index}].groupName",
                "reserved-group-name",
                f"{KUEUE_HEAD_PODSET!r} is reserved for the head group's PodSet under Kueue",
            )


def _volcano_rules(labels: dict[str, Any]) -> Iterator[FieldError]:
    queue = labels.get(VOLCANO_QUEUE_LABEL)
    if queue is None:
        return
    path = f"metadata.labels[{VOLCANO_QUEUE_LABEL}]"
    for problem in label_value_errors(str(queue)):
        yield FieldError(path, "volcano:queue-name", f"the Volcano queue name {queue!r} is invalid: {problem}")
