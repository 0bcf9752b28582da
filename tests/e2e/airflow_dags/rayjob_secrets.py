"""Test DAGs run on a connection whose kubeconfig is pasted into the connection (tests/e2e/test_airflow_secrets.py)."""

from __future__ import annotations

import datetime as dt
import os

from airflow.sdk import DAG

from kuberay_provider.airflow.operators import RayJobOperator
from kuberay_provider.core.spec import simple_cluster_spec

CLUSTER = simple_cluster_spec(
    image=os.environ.get("KUBERAY_TEST_RAY_IMAGE") or "rayproject/ray:2.60.0", ray_version="2.60.0", head_memory="1Gi"
)

with DAG(
    "kuberay_e2e_secrets", schedule=None, start_date=dt.datetime(2026, 1, 1), catchup=False, default_args={"retries": 0}
):
    RayJobOperator(
        task_id="succeeds",
        kuberay_conn_id="kuberay_inline",
        ray_cluster_spec=CLUSTER,
        entrypoint="python -c \"print('E2E-SECRETS-OK', flush=True)\"",
    )
    RayJobOperator(
        task_id="fails",
        kuberay_conn_id="kuberay_inline",
        ray_cluster_spec=CLUSTER,
        entrypoint="python -c \"import sys; print('E2E-SECRETS-FAILING', flush=True); sys.exit(4)\"",
    )
    RayJobOperator(
        task_id="deferred",
        kuberay_conn_id="kuberay_inline",
        ray_cluster_spec=CLUSTER,
        deferrable=True,
        entrypoint="python -c \"print('E2E-SECRETS-DEFERRED', flush=True)\"",
    )
