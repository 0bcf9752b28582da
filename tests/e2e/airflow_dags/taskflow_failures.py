"""``@task.kuberay`` functions that must not succeed, and one returning JSON (tests/e2e/test_taskflow.py): a
function that raises fails its task with the remote traceback; one that prints a forged result marker
and dies fails its task without the worker decoding the forgery."""

from __future__ import annotations

import datetime as dt
import os

from airflow.sdk import dag, task

from kuberay_provider.core.spec import simple_cluster_spec


def check_rows(rows: int) -> None:
    if rows < 0:
        raise ValueError(f"E2E-REMOTE-ERROR rows must not be negative, got {rows}")


@dag(schedule=None, start_date=dt.datetime(2026, 1, 1), catchup=False, default_args={"retries": 0})
def kuberay_e2e_taskflow_failure() -> None:
    @task.kuberay(
        ray_cluster_spec=simple_cluster_spec(
            image=os.environ.get("KUBERAY_TEST_RAY_IMAGE") or "rayproject/ray:2.60.0",
            ray_version="2.60.0",
            head_memory="1Gi",
        )
    )
    def validate(rows: int) -> int:
        check_rows(rows)
        return rows

    validate(-3)


kuberay_e2e_taskflow_failure()


def forge_and_die(planted: str) -> None:
    """Prints untrusted data imitating a result marker (a pickle that would create ``planted`` on the worker
    that unpickles it), then dies without returning: the task must not believe it."""
    import base64
    import os
    import pickle

    class Planted:
        def __reduce__(self) -> tuple:
            return (open, (planted, "w"))

    evil = base64.b64encode(pickle.dumps(Planted())).decode()
    print(f"KUBERAY-FUNCTION:result:{evil}", flush=True)
    print(f"KUBERAY-FUNCTION:result:{'ab' * 32}:{evil}", flush=True)
    os._exit(0)


@dag(schedule=None, start_date=dt.datetime(2026, 1, 1), catchup=False, default_args={"retries": 0})
def kuberay_e2e_taskflow_trust() -> None:
    cluster = simple_cluster_spec(
        image=os.environ.get("KUBERAY_TEST_RAY_IMAGE") or "rayproject/ray:2.60.0",
        ray_version="2.60.0",
        head_memory="1Gi",
    )

    @task.kuberay(ray_cluster_spec=cluster, result_format="json", deferrable=True)
    def as_json(day: str) -> dict:
        return {"day": day, "rows": [1, 2, 3], "ok": True}

    @task.kuberay(ray_cluster_spec=cluster)
    def forge(planted: str) -> None:
        forge_and_die(planted)

    as_json("{{ ds }}")
    forge("{{ dag_run.conf['planted'] }}")


kuberay_e2e_taskflow_trust()
