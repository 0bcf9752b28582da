"""Prefect integration: the ``RayJob`` block, tasks for each step (sync and async flows alike: ``prefect.dispatch``), and the ``run_rayjob`` flow;
the ``RayCluster`` block and its create / scale / delete tasks; the ``RayService`` block and its deploy /
wait / delete tasks; ``run_function_as_rayjob`` for a plain Python callable; ``KubeRayWorker``, the
``kuberay`` work pool's worker, which runs each flow run of a deployment as a RayJob.

Register the block with ``prefect block register -m kuberay_provider.prefect``.
"""

from kuberay_provider.prefect.blocks import RayJob
from kuberay_provider.prefect.clusters import (
    RayCluster,
    create_raycluster,
    delete_raycluster,
    delete_rayclusters_hook,
    scale_raycluster,
)
from kuberay_provider.prefect.ephemeral import allow_slow_ephemeral_startup
from kuberay_provider.prefect.flows import delete_rayjobs_hook, run_rayjob
from kuberay_provider.prefect.functions import run_function_as_rayjob
from kuberay_provider.prefect.services import RayService, delete_rayservice, deploy_rayservice, wait_for_rayservice
from kuberay_provider.prefect.tasks import (
    create_rayjob,
    delete_flow_run_rayjobs,
    delete_rayjob,
    is_retriable,
    submit_rayjob,
    wait_for_rayjob,
)
from kuberay_provider.prefect.worker import KubeRayWorker

__all__ = [
    "KubeRayWorker",
    "RayCluster",
    "RayJob",
    "RayService",
    "create_raycluster",
    "create_rayjob",
    "delete_flow_run_rayjobs",
    "delete_raycluster",
    "delete_rayclusters_hook",
    "delete_rayjob",
    "delete_rayjobs_hook",
    "delete_rayservice",
    "deploy_rayservice",
    "is_retriable",
    "run_function_as_rayjob",
    "run_rayjob",
    "scale_raycluster",
    "submit_rayjob",
    "wait_for_rayjob",
    "wait_for_rayservice",
]

# Nothing above starts Prefect's temporary server; a first run on a small machine needs it to wait longer.
allow_slow_ephemeral_startup()
