"""Test DAG of the Airflow UI test (tests/e2e/test_airflow_ui_links.py): a RayJob on a connection with a
browser URL for the Ray dashboard, and a RayCluster on one without (its link leads to the help page)."""

from __future__ import annotations

import datetime as dt
import os

from airflow.sdk import DAG

from kuberay_provider.airflow.operators import RayClusterCreateOperator, RayClusterDeleteOperator, RayJobOperator
from kuberay_provider.core.spec import simple_cluster_spec

CLUSTER = simple_cluster_spec(
    image=os.environ.get("KUBERAY_TEST_RAY_IMAGE") or "rayproject/ray:2.60.0", ray_version="2.60.0", head_memory="1Gi"
)
LINKED_CONN_ID = "kuberay_links"  # set by the test, with dashboard_browser_url

with DAG(
    "kuberay_e2e_ui_links",
    schedule=None,
    start_date=dt.datetime(2026, 1, 1),
    catchup=False,
    default_args={"retries": 0},
):
    RayJobOperator(
        task_id="score",
        kuberay_conn_id=LINKED_CONN_ID,
        entrypoint="python -c \"print('E2E-UI-LINKS', 6 * 7)\"",
        ray_cluster_spec=CLUSTER,
        shutdown_after_job_finishes=True,
        ttl_seconds_after_finished=30,
    )
    create = RayClusterCreateOperator(
        task_id="cluster", spec=CLUSTER, wait_until_ready=False
    )  # on kuberay_default: no browser URL
    delete = RayClusterDeleteOperator(task_id="delete_cluster", name=create.output["name"])
    create >> delete.as_teardown(setups=create)
