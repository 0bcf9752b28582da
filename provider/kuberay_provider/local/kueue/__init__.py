"""A minimal Kueue for the local control plane: ClusterQueues with a CPU quota admit queued RayJobs and
RayClusters in order, by unsuspending them, as Kueue does. A development and test stand-in only.

What it does: LocalQueue -> ClusterQueue lookup, ``nominalQuota`` of ``cpu`` summed over the queue's
flavors, requests counted as Kueue counts a RayCluster's PodSets (head + replicas of every worker group,
container requests, else limits), BestEffortFIFO or StrictFIFO by creation time, quota freed when a
RayJob reaches Complete / Failed or the object goes, queue status counts for ``kubectl get``.
What it does not: Workload objects, preemption, cohorts and borrowing, other resources than CPU,
flavor assignment, priorities, RayServices.
"""

from .admission import QueueView, Workload, plan_admissions
from .controller import run_kueue
from .crds import KUEUE_CRDS, kueue_crds

__all__ = ["KUEUE_CRDS", "QueueView", "Workload", "kueue_crds", "plan_admissions", "run_kueue"]
