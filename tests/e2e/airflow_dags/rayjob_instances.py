"""Test DAG for tests/e2e/test_airflow_instances.py: the same DAG run by two Airflow deployments (one
``kuberay_default`` connection each, with and without an ``instance_id``) in one namespace."""

from __future__ import annotations

import datetime as dt
import os

from airflow.sdk import DAG

from kuberay_provider.airflow.operators import RayJobCleanupOperator, RayJobOperator
from kuberay_provider.core.spec import simple_cluster_spec

CLUSTER = simple_cluster_spec(
    image=os.environ.get("KUBERAY_TEST_RAY_IMAGE") or "rayproject/ray:2.60.0", ray_version="2.60.0", head_memory="1Gi"
)
# Each Ray job prints a token of its own: a task log shows which job the task followed.
PRINTS_TOKEN = "python -c \"import uuid; print('E2E-INSTANCE-MARKER', uuid.uuid4().hex, flush=True)\""

with DAG(
    "kuberay_e2e_instances",
    schedule=None,
    start_date=dt.datetime(2026, 1, 1),
    catchup=False,
    default_args={"retries": 0},
):
    score = RayJobOperator(
        task_id="score",
        entrypoint=PRINTS_TOKEN,
        ray_cluster_spec=CLUSTER,
        shutdown_after_job_finishes=True,
        ttl_seconds_after_finished=30,
    )
    score >> RayJobCleanupOperator(task_id="cleanup", trigger_rule="all_done")
