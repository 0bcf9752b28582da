"""Test DAGs for deferred waits run by a real triggerer (tests/e2e/test_airflow_triggerer.py)."""

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


def sleeping_then_printing(marker: str, seconds: float) -> str:
    return f"python -c \"import time; time.sleep({seconds}); print('{marker}', flush=True)\""


# Long enough for the test to SIGKILL the triggerer mid-wait and start another one.
with DAG("kuberay_e2e_triggerer_restart", schedule=None, start_date=START, catchup=False):
    RayJobOperator(
        task_id="outlives_its_triggerer",
        deferrable=True,
        ray_cluster_spec=CLUSTER,
        entrypoint=sleeping_then_printing("E2E-TRIGGERER-RESTART-MARKER", 25),
        shutdown_after_job_finishes=True,
        ttl_seconds_after_finished=30,
    )

# The test marks the deferred task failed, as a user would in the UI: the trigger deletes the RayJob.
with DAG("kuberay_e2e_deferred_kill", schedule=None, start_date=START, catchup=False, default_args={"retries": 0}):
    RayJobOperator(
        task_id="killed_while_deferred",
        deferrable=True,
        ray_cluster_spec=CLUSTER,
        entrypoint="python -c \"import time; print('E2E-DEFERRED-KILL-MARKER started', flush=True); time.sleep(300)\"",
    )
