"""``run_rayjob``: the whole of a RayJob as one Prefect flow (create, submit in SDK mode, wait, clean up).

A plain (sync) flow, so ``run_rayjob(block)`` works from plain Python and as a deployment; its tasks are
async and run on the flow's task runner. Async code can await the tasks directly in its own flows.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from kuberay_provider.prefect.blocks import RayJob
from kuberay_provider.prefect.tasks import create_rayjob, delete_rayjob, submit_rayjob, wait_for_rayjob


@flow(name="run-rayjob")
def run_rayjob(rayjob: RayJob | str) -> dict[str, Any]:
    """Run a Ray job on KubeRay and wait for it; ``rayjob`` is a ``RayJob`` block or a saved block's name.

    Returns the outcome (namespace, rayjob_name, job_id, cluster_name, job_status, dashboard_url, ...);
    a failed Ray job fails the flow run with KubeRay's reason and the last lines of its log.
    """
    block = RayJob.load(rayjob) if isinstance(rayjob, str) else rayjob
    if block.runs_without_rayjob:
        return wait_for_rayjob.submit(block).result()
    created = create_rayjob.submit(block).result()
    try:
        if block.submit_via == "sdk":
            submit_rayjob.submit(block, created).result()
        outcome = wait_for_rayjob.submit(block, created).result()
    except Exception:
        if block.delete_on_failure:
            delete_rayjob.submit(block, created).result()
        raise
    if block.delete_on_success:
        delete_rayjob.submit(block, created).result()
    return outcome
