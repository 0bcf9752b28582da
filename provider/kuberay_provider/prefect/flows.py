"""``run_rayjob``: the whole of a RayJob as one Prefect flow (create, submit in SDK mode, wait, clean up).

A plain (sync) flow, so ``run_rayjob(block)`` works from plain Python and as a deployment; its tasks are
async and run on the flow's task runner. Async code can await the tasks directly in its own flows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from prefect import flow
from prefect.context import FlowRunContext
from prefect.logging.loggers import flow_run_logger

from kuberay_provider.prefect.blocks import RayJob
from kuberay_provider.prefect.tasks import create_rayjob, delete_rayjob, submit_rayjob, wait_for_rayjob


def load_block_now(name: str) -> RayJob:
    """The saved ``RayJob`` block ``name``, loaded synchronously: hooks and this sync flow run sync code,
    even inside an async engine, where Prefect's ``load`` would otherwise hand back a coroutine."""
    loaded = RayJob.load(name, _sync=True)  # type: ignore[call-arg]  # _sync is async_dispatch's keyword, not load's
    return cast(RayJob, loaded)  # _sync=True: the sync implementation ran, so this is the block


def _block_of(flow_run: Any, parameter: str) -> RayJob | None:
    """The flow run's ``RayJob`` parameter: the live object when the hook runs inside the run (in-process
    cancellation or crash), else rebuilt from the run's stored parameters (a runner's hook, after the
    run's process was stopped): a saved block's name is loaded, a serialised block validated."""
    context = FlowRunContext.get()
    if context is not None and context.flow_run is not None and context.flow_run.id == flow_run.id:
        value = (context.parameters or {}).get(parameter)
    else:
        value = (flow_run.parameters or {}).get(parameter)
    if isinstance(value, RayJob) or value is None:
        return value
    if isinstance(value, str):
        return load_block_now(value)
    if isinstance(value, dict) and "$ref" in value:  # a saved block passed to a deployment
        loaded = RayJob.load_from_ref(value["$ref"], _sync=True)  # type: ignore[call-arg]  # as in load_block_now
        return cast(RayJob, loaded)  # _sync=True: the sync implementation ran
    return RayJob.model_validate(value)


def delete_rayjobs_hook(rayjob: RayJob | str | None = None, parameter: str = "rayjob") -> Callable[..., None]:
    """A flow hook for ``on_cancellation`` / ``on_crashed``: delete every RayJob the flow run created
    (found by the run's labels), unless the block has ``delete_on_cancel=False``. The block is ``rayjob``
    (a block or a saved block's name), else the flow's parameter named ``parameter``."""

    def delete_rayjobs(flow: Any, flow_run: Any, state: Any) -> None:
        log = flow_run_logger(flow_run, flow)  # into the run's own log, with or without a run context
        try:
            if isinstance(rayjob, str):
                block: RayJob | None = load_block_now(rayjob)
            else:
                block = rayjob or _block_of(flow_run, parameter)
            if block is None or not block.delete_on_cancel or block.runs_without_rayjob:
                return
            deleted = block.delete_run_now(flow.name, str(flow_run.id))
        except Exception as error:
            log.warning("could not delete the RayJobs of flow run %s (%s): %s", flow_run.id, state.name, error)
            return
        log.warning(
            "flow run %s is %s: deleted its RayJobs %s", flow_run.id, state.name, ", ".join(deleted) or "(none left)"
        )

    return delete_rayjobs


_cleanup = delete_rayjobs_hook()


@flow(name="run-rayjob", on_cancellation=[_cleanup], on_crashed=[_cleanup])
def run_rayjob(rayjob: RayJob | str) -> dict[str, Any]:
    """Run a Ray job on KubeRay and wait for it; ``rayjob`` is a ``RayJob`` block or a saved block's name.

    Returns the outcome (namespace, rayjob_name, job_id, cluster_name, job_status, dashboard_url, ...);
    a failed Ray job fails the flow run with KubeRay's reason and the last lines of its log. A cancelled
    or crashed flow run deletes its RayJob (``delete_on_cancel``, default on).
    """
    block = load_block_now(rayjob) if isinstance(rayjob, str) else rayjob
    # The tasks are called the sync way: this flow is sync (prefect.dispatch).
    if block.runs_without_rayjob:
        return cast(dict[str, Any], wait_for_rayjob(block))
    created = create_rayjob(block)
    try:
        if block.submit_via == "sdk":
            submit_rayjob(block, created)
        outcome: dict[str, Any] = wait_for_rayjob(block, created)
    except Exception:
        if block.delete_on_failure:
            delete_rayjob(block, created)
        raise
    if block.delete_on_success:
        delete_rayjob(block, created)
    return outcome
