"""Backfilling batch inference over a date range: a DAG to copy and adapt.

The same Ray job as ``batch_inference.py`` (``dags/ray_jobs/batch_inference.py --date {{ ds }}``), set up
for backfills, where many dates run side by side and nothing may pile up in the cluster:

* each date's RayJob is named after its DAG run, so a retried or re-run date re-attaches to, or replaces,
  that date's RayJob and never starts a second one; the job itself replaces the date's output partition,
  so re-running a date never duplicates rows;
* KubeRay deletes each date's Ray cluster as soon as its job ends (``cleanup="delete_cluster"``), and the
  operator deletes the RayJob once it succeeded (``delete_on_success=True``): a finished backfill leaves
  no RayJob and no RayCluster behind; a failed date keeps its RayJob for inspection;
* ``max_active_runs`` bounds how many dates (Ray clusters) run at once.

Backfill three days with Airflow 3's backfill command (the scheduler runs the dates)::

    airflow backfill create --dag-id batch_inference_backfill --from-date 2026-01-01 --to-date 2026-01-03

or, without a scheduler, one date at a time with ``dag.test(logical_date=...)`` as the tests do.
Connection and data root: as in ``batch_inference.py``.
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
    dag_id="batch_inference_backfill",
    schedule="@daily",
    start_date=dt.datetime(2026, 1, 1),
    catchup=False,  # dates are backfilled on purpose, not by the scheduler catching up
    max_active_runs=3,
    default_args={"retries": 2, "retry_delay": dt.timedelta(minutes=1)},
    tags=["ray", "kuberay", "example", "backfill"],
):
    RayJobOperator(
        task_id="score",
        entrypoint=f"python {JOB_SCRIPT} --date {{{{ ds }}}} --data-root {DATA_ROOT}",
        ray_cluster_spec=simple_cluster_spec(
            image=f"rayproject/ray:{RAY_VERSION}", ray_version=RAY_VERSION, head_memory="2Gi"
        ),
        cleanup="delete_cluster",
        delete_on_success=True,
        active_deadline_seconds=1800,
        wait_timeout=3600,
    )
