"""Test DAGs for tests/e2e/test_airflow_reruns.py: a cleared task and a run reprocessed by a backfill run
their Ray job again; a timeout on the last try leaves no RayJob behind."""

from __future__ import annotations

import datetime as dt
import os

from airflow.sdk import DAG

from kuberay_provider.airflow.operators import RayJobOperator
from kuberay_provider.core.spec import simple_cluster_spec

CLUSTER = simple_cluster_spec(
    image=os.environ.get("KUBERAY_TEST_RAY_IMAGE") or "rayproject/ray:2.60.0", ray_version="2.60.0", head_memory="1Gi"
)
START = dt.datetime(2026, 1, 1)
# Each Ray job prints a token of its own: two lines with different tokens are two jobs that ran.
RUN_ONCE = "python -c \"import uuid; print('E2E-RERUN-MARKER {{ ds }}', uuid.uuid4().hex, flush=True)\""
SLEEPS = "python -c \"import time; print('E2E-TIMEOUT-MARKER', flush=True); time.sleep(300)\""

with DAG("kuberay_e2e_clear", schedule=None, start_date=START, catchup=False, default_args={"retries": 1}):
    RayJobOperator(
        task_id="score",
        entrypoint=RUN_ONCE,
        ray_cluster_spec=CLUSTER,
        shutdown_after_job_finishes=True,
        ttl_seconds_after_finished=30,
    )

with DAG(
    "kuberay_e2e_backfill_reprocess",
    schedule="@daily",
    start_date=dt.datetime(2026, 3, 1),
    catchup=False,
    default_args={"retries": 1, "retry_delay": dt.timedelta(seconds=0)},
):
    RayJobOperator(
        task_id="score",
        entrypoint=RUN_ONCE,
        ray_cluster_spec=CLUSTER,
        shutdown_after_job_finishes=True,
        ttl_seconds_after_finished=30,
    )

# No retries: each try is the last. wait_timeout ends the wait in the provider's watch; execution_timeout in
# Airflow's own timer, with delete_on_kill=False so on_kill deletes nothing: the timeout rule does.
with DAG("kuberay_e2e_final_timeout", schedule=None, start_date=START, catchup=False, default_args={"retries": 0}):
    RayJobOperator(
        task_id="wait_times_out", entrypoint=SLEEPS, ray_cluster_spec=CLUSTER, wait_timeout=5, stream_logs=False
    )
    RayJobOperator(
        task_id="execution_times_out",
        entrypoint=SLEEPS,
        ray_cluster_spec=CLUSTER,
        stream_logs=False,
        execution_timeout=dt.timedelta(seconds=10),
        delete_on_kill=False,
    )
    RayJobOperator(
        task_id="kept",
        entrypoint=SLEEPS,
        ray_cluster_spec=CLUSTER,
        wait_timeout=5,
        stream_logs=False,
        delete_on_final_timeout=False,
    )
