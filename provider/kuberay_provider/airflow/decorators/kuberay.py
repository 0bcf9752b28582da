"""``@task.kuberay``: run a Python function as a Ray job on KubeRay, and get its return value as XCom.

::

    @task.kuberay(ray_cluster_spec=cluster, runtime_env={"pip": ["pandas"]})
    def score(day: str) -> dict:
        import ray
        ...
        return {"rows": 1000}

    score("{{ ds }}") >> report()

The function and its (rendered) arguments are pickled with Ray's cloudpickle and uploaded with the
submission (``core.functions``); they run inside the Ray job, where ``ray`` is at hand. The return value
comes back as the task's XCom (pickled, or JSON with ``result_format="json"``, up to ``max_result_bytes``;
``result_path`` writes a larger one there and returns the path); an exception fails the task with the
remote traceback. The result is believed only from this run's job and authenticated with this try's key
(``core.function_keys``); a deferred task reads it from the job's log, not from the trigger's event.

The result lives in the job's log, on the cluster, so the task owns the cluster's deletion: KubeRay keeps
the function's own cluster until a try has read the result (at most ``result_hold_seconds`` after the
job), then ``cleanup`` applies (default: the cluster goes at once). A retry of a try killed after the job
reads the result then; one that comes after the hold runs the function again (``core.function_runs``).

Every RayJobOperator choice applies: an own cluster (``ray_cluster_spec=``, a RayJob in InteractiveMode
the task submits to), an existing one (``cluster_selector=``), a Volcano head (``volcano_job=``),
``runtime_env``, entrypoint resources, cleanup, Kueue, ``deferrable``. Submission is always through the
Ray Jobs SDK, which is what uploads the function. The Airflow context is not passed to the function.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

from airflow.sdk import Context
from airflow.sdk.bases.decorator import DecoratedOperator, TaskDecorator, task_decorator_factory
from airflow.sdk.exceptions import AirflowException

from kuberay_provider.airflow.operators.common import as_airflow_errors, run_identity
from kuberay_provider.airflow.operators.rayjob import RayJobOperator
from kuberay_provider.airflow.operators.rayjob_steps import Step
from kuberay_provider.airflow.params import push_extra
from kuberay_provider.core.errors import ConfigurationError
from kuberay_provider.core.function_keys import TryKey
from kuberay_provider.core.function_runs import DEFAULT_RESULT_HOLD_SECONDS, FunctionRun
from kuberay_provider.core.functions import (
    DEFAULT_MAX_RESULT_BYTES,
    FunctionCall,
    ShippedFunction,
    check_result_format,
    is_marker_line,
    shipped,
    shown_line,
)
from kuberay_provider.core.job_request import RayJobRequest, SubmitVia
from kuberay_provider.core.job_runner import RayJobFailed, RayJobOutcome, RayJobRunner

PLACEHOLDER_ENTRYPOINT = "python -m kuberay_fn_pending"  # replaced by the shipped package's at run time


class KubeRayDecoratedOperator(DecoratedOperator, RayJobOperator):
    """The operator behind ``@task.kuberay``.

    :param result_path: write the encoded result (pickle, or JSON text) to this path (local to the cluster, or an fsspec URL
        such as ``s3://bucket/key``; the cluster's image needs fsspec then) and return the path instead.
    :param max_result_bytes: the largest encoded result returned inline as XCom (default 512 KiB).
    :param result_format: ``"pickle"`` (default: any picklable value) or ``"json"`` (no pickle crosses from
        the cluster to the worker; the function must return JSON values).
    :param check_versions: compare Python and Ray with the cluster's before submitting: a different
        Python (read from the image tag) fails the task, a different Ray minor version is a warning.
    :param result_hold_seconds: how long after the job KubeRay keeps the function's own cluster (and the
        job's log, which holds the result) while no try has read the result, e.g. because the worker died:
        a retry within it reads the result, a later one runs the function again. Default one hour.
    """

    custom_operator_name = "@task.kuberay"
    template_fields: Sequence[str] = (*RayJobOperator.template_fields, "op_args", "op_kwargs", "result_path")
    template_fields_renderers: ClassVar[dict[str, str]] = {
        **RayJobOperator.template_fields_renderers,
        "op_args": "py",
        "op_kwargs": "py",
    }

    def __init__(
        self,
        *,
        result_path: str | None = None,
        max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
        result_format: str = "pickle",
        check_versions: bool = True,
        result_hold_seconds: int = DEFAULT_RESULT_HOLD_SECONDS,
        **kwargs: Any,
    ) -> None:
        check_result_format(result_format)
        if isinstance(result_hold_seconds, bool) or not isinstance(result_hold_seconds, int) or result_hold_seconds < 0:
            raise ConfigurationError(
                f"result_hold_seconds must be whole seconds, 0 or more, got {result_hold_seconds!r}"
            )
        if kwargs.get("entrypoint"):
            raise ValueError("@task.kuberay runs the decorated function: it takes no entrypoint")
        if kwargs.setdefault("submit_via", SubmitVia.SDK.value) != SubmitVia.SDK.value:
            raise ValueError(
                "@task.kuberay submits through the Ray Jobs SDK (it uploads the function): submit_via must be 'sdk'"
            )
        if not kwargs.get("wait_for_completion", True):
            raise ValueError(
                "@task.kuberay returns the function's result, so it waits for the job: wait_for_completion=False "
                "is not available; use RayJobOperator(wait_for_completion=False) with a RayJobSensor"
            )
        super().__init__(entrypoint=PLACEHOLDER_ENTRYPOINT, **kwargs)
        self.result_path = result_path
        self.max_result_bytes = max_result_bytes
        self.result_format = result_format
        self.check_versions = check_versions
        self.result_hold_seconds = result_hold_seconds
        self._marker_lines: list[str] = []

    # --- what RayJobOperator runs: the function's package as the entrypoint --------------------------

    def build_request(self, context: Context, shipment: ShippedFunction | None = None) -> RayJobRequest:
        """The task's request, running ``shipment`` (None: a step that submits nothing, which ships nothing)."""
        return FunctionRun.request_for(super().build_request(context), shipment, self.result_hold_seconds)

    @contextlib.contextmanager
    def _step_scope(self, context: Context, step: Step) -> Iterator[RayJobRequest]:
        """The steps that may submit ship the function; those that may see the job end turn its failure into
        the function's error. The wait for Kueue's admission does neither."""
        if step is Step.ADMITTED:
            yield self._request(context)
            return
        with contextlib.ExitStack() as stack:
            shipment = stack.enter_context(self._shipping(context)) if step in (Step.LAUNCH, Step.STARTED) else None
            request = self._completed(context, self.build_request(context, shipment))
            with self._function_errors(request):
                if step is Step.LAUNCH and self.check_versions:
                    with as_airflow_errors():
                        FunctionRun(self._runner()).check_versions(request, self.log.warning)
                yield request

    @contextlib.contextmanager
    def _shipping(self, context: Context) -> Iterator[ShippedFunction]:
        call = FunctionCall(
            self.python_callable,
            tuple(self.op_args),
            dict(self.op_kwargs),
            result_path=self.result_path or None,
            max_result_bytes=self.max_result_bytes,
            result_format=self.result_format,
        )
        # Derived again in every process of the try (a deferred task resumes in a new one): same run, same key.
        key = TryKey.derive(run_identity(context), getattr(context["ti"], "try_number", None))
        with shipped(call, key) as shipment:
            self.log.info(
                "Shipping %s (%d bytes pickled) as Ray job package %s",
                call.name,
                shipment.payload_bytes,
                shipment.package,
            )
            yield shipment

    def _ray_log_line(self, line: str) -> None:
        # The function's marker lines (its result or error) are kept for reading back, and shown shrunk.
        if is_marker_line(line):
            self._marker_lines.append(line)
        super()._ray_log_line(shown_line(line))

    # --- running -----------------------------------------------------------------------------------
    # The event of execute_complete is left alone: it carries a capped log tail with markers shrunk, and the
    # result is read (and authenticated) from the job's own log, never through the metadata database.

    def _functions(self, runner: RayJobRunner) -> FunctionRun:
        return FunctionRun(runner, self.result_format, warn=self.log.warning)

    def _finish(self, context: Context, request: RayJobRequest, runner: RayJobRunner, outcome: RayJobOutcome) -> Any:
        """The function's return value, read before any cleanup can take the cluster (and its log) away;
        the cluster is released last, so a try killed before that leaves the result to its retry."""
        functions = self._functions(runner)
        result = functions.result(request, outcome, self._marker_lines)
        push_extra(self, context, "rayjob_outcome", outcome.to_dict())
        super()._finish(context, request, runner, outcome)
        functions.release(request)
        self.log.info(
            "The function returned %s",
            "its result to XCom" if result.kind == "result" else f"its result at {result.value}",
        )
        return result.value

    @contextlib.contextmanager
    def _function_errors(self, request: RayJobRequest) -> Iterator[None]:
        """A failed Ray job whose function raised fails the task with the remote traceback."""
        try:
            yield
        except (RayJobFailed, AirflowException) as raised:
            failed = raised if isinstance(raised, RayJobFailed) else raised.__cause__
            if not isinstance(failed, RayJobFailed):
                raise
            functions = self._functions(self._runner())
            error = functions.failure(request, failed, self._marker_lines)
            functions.release(request)  # the exception is read: the cluster need not wait for a retry
            raise AirflowException(str(error)) from failed


def kuberay_task(
    python_callable: Callable[..., Any] | None = None, multiple_outputs: bool | None = None, **kwargs: Any
) -> TaskDecorator:
    """``@task.kuberay``: wrap a function into a task that runs it as a Ray job on KubeRay.

    Takes every RayJobOperator parameter (``ray_cluster_spec=``, ``cluster_selector=``, ``runtime_env=``,
    ``cleanup=``, ``deferrable=``, ``queue_name=``...) plus ``result_path``, ``max_result_bytes``,
    ``result_format``, ``check_versions`` and ``result_hold_seconds``.
    """
    return task_decorator_factory(
        python_callable=python_callable,
        multiple_outputs=multiple_outputs,
        decorated_operator_class=KubeRayDecoratedOperator,
        **kwargs,
    )
