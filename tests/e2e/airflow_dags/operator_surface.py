"""Test DAGs for the operators' surface (#19 item 6; tests/e2e/test_airflow_triggerer.py).

``kuberay_e2e_surface``, run with a real triggerer: a RayJobOperator that does not wait (a deferred
RayJobSensor waits for its job), one with ``do_xcom_push=False``, the connection id, annotations and
timeouts templated from params (the timeout rendered as a string); a RayCluster created, scaled and
deleted with every wait deferred; a RayService deployed without waiting and awaited by a deferred
RayServiceSensor.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from airflow.sdk import DAG, Param

from kuberay_provider.airflow.operators import (
    RayClusterCreateOperator,
    RayClusterDeleteOperator,
    RayClusterScaleOperator,
    RayJobOperator,
    RayServiceDeleteOperator,
    RayServiceOperator,
)
from kuberay_provider.airflow.sensors import RayJobSensor, RayServiceSensor
from kuberay_provider.core.spec import simple_cluster_spec

IMAGE, RAY_VERSION = os.environ.get("KUBERAY_TEST_RAY_IMAGE") or "rayproject/ray:2.60.0", "2.60.0"
CLUSTER = simple_cluster_spec(image=IMAGE, ray_version=RAY_VERSION, head_memory="1Gi")
START = dt.datetime(2026, 1, 1)
SURFACE_CLUSTER, SURFACE_SERVICE = "e2e-surface", "e2e-surface-svc"
APP_DIR = str(Path(__file__).resolve().parents[3] / "dags" / "ray_jobs")
CONN = "{{ params.conn_id }}"
WAIT = "{{ params.wait_seconds }}"  # renders "300": a string, read as a number


def printing(marker: str, seconds: float = 0) -> str:
    return f"python -c \"import time; time.sleep({seconds}); print('{marker}', flush=True)\""


with DAG(
    "kuberay_e2e_surface",
    schedule=None,
    start_date=START,
    catchup=False,
    default_args={"retries": 0},
    params={
        "conn_id": Param("kuberay_default", type="string"),
        "team": Param("ml", type="string"),
        "wait_seconds": Param("300", type="string"),
    },
):
    launch = RayJobOperator(
        task_id="launch",
        wait_for_completion=False,
        kuberay_conn_id=CONN,
        annotations={"team": "{{ params.team }}"},
        entrypoint=printing("E2E-SURFACE-LAUNCHED", seconds=6),
        ray_cluster_spec=CLUSTER,
        cleanup="delete_cluster_after:30",
    )
    launch >> RayJobSensor(
        task_id="sensed",
        rayjob_name="{{ ti.xcom_pull(task_ids='launch', key='rayjob')['name'] }}",
        kuberay_conn_id=CONN,
        deferrable=True,
        timeout=300,
    )
    RayJobOperator(
        task_id="quiet",
        do_xcom_push=False,
        kuberay_conn_id=CONN,
        wait_timeout=WAIT,
        entrypoint=printing("E2E-SURFACE-QUIET"),
        ray_cluster_spec=CLUSTER,
        cleanup="delete_cluster_after:30",
    )

    create = RayClusterCreateOperator(
        task_id="create_cluster",
        name=SURFACE_CLUSTER,
        do_xcom_push=False,
        deferrable=True,
        kuberay_conn_id=CONN,
        ready_timeout=WAIT,
        annotations={"team": "{{ params.team }}"},
        spec=simple_cluster_spec(image=IMAGE, ray_version=RAY_VERSION, head_memory="1Gi", workers=1, max_workers=2),
    )
    scale = RayClusterScaleOperator(
        task_id="scale_cluster",
        name=SURFACE_CLUSTER,
        group="workers",
        replicas=2,
        deferrable=True,
        kuberay_conn_id=CONN,
        timeout=WAIT,
    )
    delete = RayClusterDeleteOperator(
        task_id="delete_cluster", name=SURFACE_CLUSTER, deferrable=True, kuberay_conn_id=CONN, timeout=WAIT
    )
    create >> scale >> delete.as_teardown(setups=create)

    deploy = RayServiceOperator(
        task_id="deploy_service",
        name=SURFACE_SERVICE,
        wait=False,
        kuberay_conn_id=CONN,
        serve_config={
            "applications": [
                {
                    "name": "surface",
                    "route_prefix": "/surface",
                    "import_path": "serve_app:app",
                    "runtime_env": {"env_vars": {"PYTHONPATH": APP_DIR}},
                    "deployments": [{"name": "Scorer", "num_replicas": 1, "ray_actor_options": {"num_cpus": 0.1}}],
                }
            ]
        },
        ray_cluster_config=simple_cluster_spec(image=IMAGE, ray_version=RAY_VERSION, head_memory="1Gi"),
    )
    served = RayServiceSensor(
        task_id="service_served", rayservice_name=SURFACE_SERVICE, kuberay_conn_id=CONN, deferrable=True, timeout=300
    )
    remove = RayServiceDeleteOperator(
        task_id="delete_service", name=SURFACE_SERVICE, deferrable=True, kuberay_conn_id=CONN
    )
    deploy >> served >> remove.as_teardown(setups=deploy)
