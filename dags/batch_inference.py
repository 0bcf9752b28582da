"""Daily batch inference on Ray through KubeRay: a DAG to copy and adapt.

Every day, one RayJob with its own Ray cluster scores that day's partition
(``dags/ray_jobs/batch_inference.py --date {{ ds }}``); KubeRay deletes the cluster as soon as the job
ends (``shutdown_after_job_finishes``). A retried try re-attaches to the day's RayJob instead of starting
the job twice, and the task log shows the Ray job's own log as it runs.

Set up once: an Airflow connection ``kuberay_default`` of type ``kuberay`` (a kubeconfig path or content,
or in-cluster; with an ``instance_id`` such as ``prod`` when other Airflow deployments, a staging one say,
run this DAG in the same namespace: docs/airflow.md "Several deployments in one namespace"), and optionally the Variable ``kuberay_example_data_root`` (or the environment variable
``KUBERAY_EXAMPLE_DATA_ROOT``) for where the input and output partitions live; the default is
``~/.kuberay-provider/example-data``. On a real cluster the job script ships in the image (or a remote
``working_dir``) and the data root is shared storage the Ray pods mount.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from airflow.sdk import DAG

from kuberay_provider.airflow.operators import RayJobOperator
from kuberay_provider.core.spec import simple_cluster_spec

RAY_VERSION = "2.60.0"
JOB_SCRIPT = Path(__file__).resolve().parent / "ray_jobs" / "batch_inference.py"
DEFAULT_DATA_ROOT = os.environ.get("KUBERAY_EXAMPLE_DATA_ROOT", str(Path.home() / ".kuberay-provider" / "example-data"))
DATA_ROOT = "{{ var.value.get('kuberay_example_data_root', '" + DEFAULT_DATA_ROOT + "') }}"

with DAG(
    dag_id="batch_inference",
    schedule="@daily",
    start_date=dt.datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": dt.timedelta(minutes=1)},
    tags=["ray", "kuberay", "example"],
):
    RayJobOperator(
        task_id="score",
        entrypoint=f"python {JOB_SCRIPT} --date {{{{ ds }}}} --data-root {DATA_ROOT}",
        ray_cluster_spec=simple_cluster_spec(
            image=f"rayproject/ray:{RAY_VERSION}", ray_version=RAY_VERSION, head_cpu="2", head_memory="4Gi"
        ),
        shutdown_after_job_finishes=True,
        ttl_seconds_after_finished=60,
        active_deadline_seconds=1800,
        wait_timeout=3600,
    )
