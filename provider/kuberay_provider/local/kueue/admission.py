"""Which queued workloads to admit, as a pure function of the queues and the workloads.

A workload is a RayJob or RayCluster labelled ``kueue.x-k8s.io/queue-name``. It counts against its
ClusterQueue's CPU quota while admitted (not suspended) and not finished; queued ones are taken in
creation order. BestEffortFIFO (Kueue's default) lets a smaller later workload pass one that does not
fit; StrictFIFO does not.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from kuberay_provider.core.schedulers import KUEUE_QUEUE_LABEL

from ..controller.quantity import parse_quantity

STRICT_FIFO = "StrictFIFO"
BEST_EFFORT_FIFO = "BestEffortFIFO"
# KubeRay's default submitter container requests (common/job.go GetDefaultSubmitterContainer); Kueue
# counts the submitter Job's Pod as a PodSet of a K8sJobMode RayJob.
DEFAULT_SUBMITTER_CPU = Decimal("0.5")
FINISHED_DEPLOYMENT_STATUSES = ("Complete", "Failed")


def _map(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _cpu(resources: Mapping[str, Any]) -> Decimal:
    """A container's CPU as Kueue counts it: its request, else its limit (requests default to limits)."""
    value = _map(resources.get("requests")).get("cpu", _map(resources.get("limits")).get("cpu"))
    return parse_quantity(value)[0] if value is not None else Decimal(0)


def pod_cpu(template: Mapping[str, Any]) -> Decimal:
    containers = _map(template.get("spec")).get("containers") or []
    return sum((_cpu(_map(_map(c).get("resources"))) for c in containers), Decimal(0))


def cluster_cpu(spec: Mapping[str, Any]) -> Decimal:
    """The head Pod and every worker Pod of a RayClusterSpec (replicas x numOfHosts per group)."""
    total = pod_cpu(_map(_map(spec.get("headGroupSpec")).get("template")))
    for group in spec.get("workerGroupSpecs") or []:
        group = _map(group)
        if group.get("suspend") is True:
            continue
        replicas: Any = group.get("replicas") if group.get("replicas") is not None else group.get("minReplicas") or 0
        pods = int(replicas)
        total += pod_cpu(_map(group.get("template"))) * pods * int(group.get("numOfHosts") or 1)
    return total


def rayjob_cpu(spec: Mapping[str, Any]) -> Decimal:
    total = cluster_cpu(_map(spec.get("rayClusterSpec")))
    if spec.get("submissionMode", "K8sJobMode") in ("", "K8sJobMode"):
        template = _map(spec.get("submitterPodTemplate"))
        total += pod_cpu(template) if template else DEFAULT_SUBMITTER_CPU
    return total


@dataclass(frozen=True)
class Workload:
    kind: str
    namespace: str
    name: str
    local_queue: str
    created: str
    cpu: Decimal
    suspended: bool
    finished: bool

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.namespace, self.name)

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> Workload | None:
        """None for an object Kueue does not manage: no queue label, or a RayJob on an existing cluster."""
        meta, spec, kind = _map(obj.get("metadata")), _map(obj.get("spec")), str(obj.get("kind", ""))
        queue = _map(meta.get("labels")).get(KUEUE_QUEUE_LABEL)
        if not queue or meta.get("deletionTimestamp"):
            return None
        if kind == "RayJob":
            if _map(spec.get("clusterSelector")):
                return None
            cpu = rayjob_cpu(spec)
            finished = _map(obj.get("status")).get("jobDeploymentStatus") in FINISHED_DEPLOYMENT_STATUSES
        elif kind == "RayCluster":
            cpu, finished = cluster_cpu(spec), False
        else:
            return None
        return cls(
            kind,
            str(meta.get("namespace", "")),
            str(meta.get("name", "")),
            str(queue),
            str(meta.get("creationTimestamp", "")),
            cpu,
            spec.get("suspend") is True,
            finished,
        )


@dataclass(frozen=True)
class ClusterQueueView:
    name: str
    cpu_quota: Decimal
    strategy: str = BEST_EFFORT_FIFO

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> ClusterQueueView:
        spec = _map(obj.get("spec"))
        quota = Decimal(0)
        for group in spec.get("resourceGroups") or []:
            for flavor in _map(group).get("flavors") or []:
                for resource in _map(flavor).get("resources") or []:
                    resource = _map(resource)
                    if resource.get("name") == "cpu" and resource.get("nominalQuota") is not None:
                        quota += parse_quantity(resource["nominalQuota"])[0]
        return cls(
            str(_map(obj.get("metadata")).get("name", "")), quota, str(spec.get("queueingStrategy") or BEST_EFFORT_FIFO)
        )


@dataclass(frozen=True)
class QueueView:
    """The queues: ClusterQueues by name, and each LocalQueue (namespace, name) -> its ClusterQueue."""

    cluster_queues: Mapping[str, ClusterQueueView]
    local_queues: Mapping[tuple[str, str], str]

    @classmethod
    def from_objects(
        cls, cluster_queues: Iterable[Mapping[str, Any]], local_queues: Iterable[Mapping[str, Any]]
    ) -> QueueView:
        cqs = {view.name: view for view in map(ClusterQueueView.from_object, cluster_queues)}
        lqs = {
            (str(_map(lq.get("metadata")).get("namespace", "")), str(_map(lq.get("metadata")).get("name", ""))): str(
                _map(lq.get("spec")).get("clusterQueue", "")
            )
            for lq in local_queues
        }
        return cls(cqs, lqs)

    def cluster_queue_of(self, workload: Workload) -> ClusterQueueView | None:
        return self.cluster_queues.get(self.local_queues.get((workload.namespace, workload.local_queue), ""))


@dataclass
class QueueCounts:
    pending: int = 0
    admitted: int = 0
    cpu_used: Decimal = Decimal(0)


@dataclass
class AdmissionPlan:
    admit: list[Workload] = field(default_factory=list)
    cluster_queues: dict[str, QueueCounts] = field(default_factory=dict)
    local_queues: dict[tuple[str, str], QueueCounts] = field(default_factory=dict)


def plan_admissions(queues: QueueView, workloads: Iterable[Workload]) -> AdmissionPlan:
    plan = AdmissionPlan(
        cluster_queues={name: QueueCounts() for name in queues.cluster_queues},
        local_queues={key: QueueCounts() for key in queues.local_queues},
    )
    waiting: dict[str, list[Workload]] = {}
    for workload in workloads:
        if workload.finished:
            continue
        local = plan.local_queues.setdefault((workload.namespace, workload.local_queue), QueueCounts())
        cluster_queue = queues.cluster_queue_of(workload)
        if not workload.suspended:
            local.admitted += 1
            if cluster_queue is not None:
                counts = plan.cluster_queues[cluster_queue.name]
                counts.admitted += 1
                counts.cpu_used += workload.cpu
            continue
        local.pending += 1
        if cluster_queue is not None:  # a missing LocalQueue / ClusterQueue: pending until one exists
            plan.cluster_queues[cluster_queue.name].pending += 1
            waiting.setdefault(cluster_queue.name, []).append(workload)
    for name, queued in waiting.items():
        view, counts = queues.cluster_queues[name], plan.cluster_queues[name]
        for workload in sorted(queued, key=lambda w: (w.created, w.namespace, w.name)):
            if counts.cpu_used + workload.cpu <= view.cpu_quota:
                counts.cpu_used += workload.cpu
                plan.admit.append(workload)
                local = plan.local_queues[(workload.namespace, workload.local_queue)]
                for moved in (counts, local):
                    moved.pending -= 1
                    moved.admitted += 1
            elif view.strategy == STRICT_FIFO:
                break
    return plan
