"""Test DAG: the task's OpenLineage parent run reaches the Ray job (tests/e2e/test_airflow_lineage.py), through
KubeRay's submitter (RayJobOperator) and through the Ray Jobs SDK (``@task.kuberay``)."""

from __future__ import annotations

import datetime as dt
import os

from airflow.sdk import dag, task

from kuberay_provider.airflow.operators import RayJobOperator
from kuberay_provider.core.spec import simple_cluster_spec

CLUSTER = simple_cluster_spec(
    image=os.environ.get("KUBERAY_TEST_RAY_IMAGE") or "rayproject/ray:2.60.0", ray_version="2.60.0", head_memory="1Gi"
)
# What a lineage-emitting Ray job reads: every OPENLINEAGE_ variable of its driver, as one JSON line.
PRINT_LINEAGE_ENV = (
    "import json, os; print('E2E-LINEAGE', json.dumps({k: v for k, v in os.environ.items() "
    "if k.startswith('OPENLINEAGE_')}, sort_keys=True), flush=True)"
)


@dag(schedule=None, start_date=dt.datetime(2026, 1, 1), catchup=False, default_args={"retries": 0})
def kuberay_e2e_lineage() -> None:
    RayJobOperator(
        task_id="score",
        entrypoint=f'python -c "{PRINT_LINEAGE_ENV}"',
        runtime_env={"env_vars": {"GREETING": "hello"}},
        ray_cluster_spec=CLUSTER,
        shutdown_after_job_finishes=True,
        ttl_seconds_after_finished=30,
    )

    @task.kuberay(ray_cluster_spec=CLUSTER)
    def lineage_env() -> dict:
        import os

        return {name: value for name, value in os.environ.items() if name.startswith("OPENLINEAGE_")}

    lineage_env()


kuberay_e2e_lineage()
