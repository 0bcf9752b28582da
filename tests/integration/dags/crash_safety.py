"""The DAG the crash-safety loop (tests/integration/test_crash_safety.py) runs and SIGKILLs: one task whose
Ray job succeeds, one whose Ray job fails, on a cluster KubeRay deletes when the job ends; and the same
pair as ``@task.kuberay`` functions (one returns a value, one raises), whose results live in the job's log."""

from __future__ import annotations

import time
from typing import Any

import pendulum
from airflow.sdk import DAG
from airflow.sdk.bases.decorator import task_decorator_factory

from kuberay_provider.airflow.decorators.kuberay import KubeRayDecoratedOperator
from kuberay_provider.airflow.operators import RayJobOperator
from kuberay_provider.core.spec import simple_cluster_spec

CONN_ID = "kuberay_crash"
CLUSTER = simple_cluster_spec(image="rayproject/ray:2.60.0", ray_version="2.60.0")
REPORT_SECONDS = 0.3  # between marking the RayJob consumed and handing the outcome to Airflow
FUNCTION_ARGS = ([1, 2, 3], 7)
FUNCTION_RESULT = {"total": 42, "count": 3}  # what scaled(*FUNCTION_ARGS) returns


class SlowToReport(RayJobOperator):
    """Takes a moment to hand its outcome over once the RayJob is marked consumed, as a slow XCom push or
    API call would: the window of the loop's last kill point, "marked but not reported"."""

    def execute(self, context: Any) -> Any:
        outcome = super().execute(context)
        time.sleep(REPORT_SECONDS)
        return outcome


class SlowFunctionToReport(KubeRayDecoratedOperator):
    """``@task.kuberay`` with the same slow hand-over."""

    def execute(self, context: Any) -> Any:
        outcome = super().execute(context)
        time.sleep(REPORT_SECONDS)
        return outcome


def scaled(values: list[int], factor: int) -> dict[str, int]:
    return {"total": sum(values) * factor, "count": len(values)}


def raising() -> None:
    raise ValueError("CRASH-FN-FAIL: the function raised")


def function_task(function: Any, task_id: str, **kwargs: Any) -> Any:
    decorator = task_decorator_factory(
        decorated_operator_class=SlowFunctionToReport,
        task_id=task_id,
        ray_cluster_spec=CLUSTER,
        kuberay_conn_id=CONN_ID,
        stream_logs=False,
        retries=1,
        **kwargs,
    )
    return decorator(function)


with DAG("kuberay_crash_safety", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False):
    for task_id, entrypoint in (
        ("succeeds", "python score.py --marker CRASH-OK"),
        ("fails", "python score.py --marker CRASH-FAIL"),
    ):
        SlowToReport(
            task_id=task_id,
            entrypoint=entrypoint,
            ray_cluster_spec=CLUSTER,
            cleanup="delete_cluster",
            kuberay_conn_id=CONN_ID,
            stream_logs=False,
            retries=1,
        )
    # The functions' cleanup is KubeRay's "delete the cluster when the job ends"; "function_ttl" keeps it 1 s.
    function_task(scaled, "function", cleanup="delete_cluster")(*FUNCTION_ARGS)
    function_task(raising, "function_fails", cleanup="delete_cluster")()
    function_task(scaled, "function_ttl", cleanup="delete_cluster_after:1")(*FUNCTION_ARGS)
