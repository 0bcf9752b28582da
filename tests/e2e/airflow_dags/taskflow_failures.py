"""A ``@task.kuberay`` function that raises: the task fails with the remote traceback
(tests/e2e/test_taskflow.py)."""

from __future__ import annotations

import datetime as dt

from airflow.sdk import dag, task

from kuberay_provider.core.spec import simple_cluster_spec


def check_rows(rows: int) -> None:
    if rows < 0:
        raise ValueError(f"E2E-REMOTE-ERROR rows must not be negative, got {rows}")


@dag(schedule=None, start_date=dt.datetime(2026, 1, 1), catchup=False, default_args={"retries": 0})
def kuberay_e2e_taskflow_failure() -> None:
    @task.kuberay(ray_cluster_spec=simple_cluster_spec(image="rayproject/ray:2.60.0", ray_version="2.60.0", head_memory="1Gi"))
    def validate(rows: int) -> int:
        check_rows(rows)
        return rows

    validate(-3)


kuberay_e2e_taskflow_failure()
