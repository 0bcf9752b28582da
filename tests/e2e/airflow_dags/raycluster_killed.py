"""Test DAG (tests/e2e/test_cluster_per_run.py): a RayCluster create that ``execution_timeout`` kills
mid-wait (a suspended cluster never becomes ready); Airflow then calls ``on_kill``, which deletes the
cluster the try created."""

from __future__ import annotations

import datetime as dt
import os

from airflow.sdk import DAG

from kuberay_provider.airflow.operators import RayClusterCreateOperator
from kuberay_provider.core.spec import simple_cluster_spec

with DAG(
    "kuberay_e2e_cluster_killed",
    schedule=None,
    start_date=dt.datetime(2026, 1, 1),
    catchup=False,
    default_args={"retries": 0},
):
    RayClusterCreateOperator(
        task_id="killed_create",
        name="e2e-killed",
        execution_timeout=dt.timedelta(seconds=10),
        spec={
            **simple_cluster_spec(
                image=os.environ.get("KUBERAY_TEST_RAY_IMAGE") or "rayproject/ray:2.60.0",
                ray_version="2.60.0",
                head_memory="1Gi",
            ),
            "suspend": True,
        },
    )
