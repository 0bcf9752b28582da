"""``run_function_as_rayjob``: run a plain Python callable as a Ray job from a Prefect flow and get its
return value, on the same core as ``@task.kuberay`` (``core.functions``, ``core.function_runs``).

::

    @flow
    def nightly():
        block = RayJob(ray_cluster_spec=cluster, runtime_env={"pip": ["pandas"]})
        stats = run_function_as_rayjob(block, summarize, "2026-01-01", top=10)

The callable and its arguments are pickled with Ray's cloudpickle and uploaded with the submission; the
return value comes back as the task's result (pickled, or JSON with ``result_format="json"``, up to
``max_result_bytes``; ``result_path`` writes a larger one there and returns the path); an exception fails
the task with the remote traceback. The result is believed only from this run's job and authenticated
with this try's key (``core.function_keys``). KubeRay keeps the function's own cluster (and the job's log,
which holds the result) until a try has read the result, at most ``result_hold_seconds`` after the job;
then the block's ``cleanup`` applies. A retry after the hold runs the function again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect.cache_policies import NO_CACHE

from kuberay_provider.core.function_keys import TryKey
from kuberay_provider.core.function_runs import DEFAULT_RESULT_HOLD_SECONDS, FunctionRun
from kuberay_provider.core.functions import DEFAULT_MAX_RESULT_BYTES, FunctionCall, shipped, shown_line
from kuberay_provider.core.job_outcome import RayJobFailed
from kuberay_provider.prefect.blocks import RayJob
from kuberay_provider.prefect.dispatch import sync_and_async
from kuberay_provider.prefect.identity import current_call, fingerprint
from kuberay_provider.prefect.tasks import RunLog, delete_when_interrupted, is_retriable

PLACEHOLDER_ENTRYPOINT = "python -m kuberay_fn_pending"  # the block needs one; the shipped package's replaces it


@sync_and_async(name="run_function_as_rayjob", cache_policy=NO_CACHE, retry_condition_fn=is_retriable)
def run_function_as_rayjob(
    rayjob: RayJob,
    function: Callable[..., Any],
    *args: Any,
    result_path: str | None = None,
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
    result_format: str = "pickle",
    check_versions: bool = True,
    result_hold_seconds: int = DEFAULT_RESULT_HOLD_SECONDS,
    **kwargs: Any,
) -> Any:
    """Run ``function(*args, **kwargs)`` inside a Ray job as the ``rayjob`` block says (own cluster,
    ``cluster_selector``, ``volcano_job``; runtime_env, cleanup, Kueue) and return what it returned."""
    run_log = RunLog()

    def ray_line(line: str) -> None:
        run_log.ray(shown_line(line))  # markers shrunk: they are read back from runner.received_markers

    block = (
        rayjob
        if rayjob.entrypoint or rayjob.manifest
        else rayjob.model_copy(update={"entrypoint": PLACEHOLDER_ENTRYPOINT})
    )
    call = FunctionCall(
        function, args, kwargs, result_path=result_path, max_result_bytes=max_result_bytes, result_format=result_format
    )
    # The pickled call is part of the job: two calls with other arguments never trade RayJobs in a retry.
    task_call = current_call(
        fingerprint(block.job_fingerprint(), call.payload(), [result_path, max_result_bytes, result_format])
    )
    identity, try_number = task_call.identity, task_call.try_number
    with (
        shipped(call, TryKey.derive(identity, try_number)) as shipment,
        block.runner(ray_line, run_log.status) as runner,
    ):
        request = FunctionRun.request_for(block.request(identity, try_number=try_number), shipment, result_hold_seconds)
        run_log.status(
            f"Shipping {call.name} ({shipment.payload_bytes} bytes pickled) as Ray job package {shipment.package}"
        )
        functions = FunctionRun(runner, result_format, warn=run_log.logger.warning)
        if check_versions:
            functions.check_versions(request, run_log.logger.warning)
        try:
            outcome = runner.run(request, block.timeout)
        except RayJobFailed as failed:
            error = functions.failure(request, failed, runner.received_markers)
            functions.release(request)
            raise error from failed
        except BaseException as exc:
            if not request.runs_without_rayjob:
                delete_when_interrupted(
                    block, {"namespace": request.resolved_namespace, "name": request.rayjob_name}, exc, run_log.logger
                )
            raise
        result = functions.result(request, outcome, runner.received_markers)
        if not request.runs_without_rayjob:
            runner.cleanup(
                request.resolved_namespace,
                request.rayjob_name,
                succeeded=True,
                delete_on_success=block.delete_on_success,
                delete_on_failure=block.delete_on_failure,
            )
        functions.release(request)  # last: a task killed before this leaves the result for its retry
    run_log.status(
        f"{call.name} returned {'its result' if result.kind == 'result' else f'its result at {result.value}'}"
    )
    return result.value
