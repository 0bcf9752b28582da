"""Batch inference fanned out over the day's partitions: one mapped RayJob per partition, a DAG to copy.

The day's data lands in partitions (here one per region). ``RayJobOperator.partial(...).expand(...)``
runs the Ray job of ``batch_inference.py`` (``dags/ray_jobs/batch_inference.py``) once per partition:
every map index is a RayJob of its own, with its own Ray cluster, sharing what ``partial()`` gives (the
cluster spec, ``cleanup``, the deadline). A retried index re-attaches to its own RayJob (the name derives
from dag, task, run and map index) and KubeRay deletes each cluster as soon as its job ends
(``cleanup="delete_cluster"``). ``summarize`` then reads the mapped results: the outcome every index
returned (XCom, in map-index order) and the summary each job wrote beside its partition's output.

A partition is a data root of its own, ``<data root>/batch_inference_mapped/region=<region>``, holding
``input/date=<ds>`` and ``output/date=<ds>``; the example job makes a missing input from the date. To
map over partitions found at run time instead, expand over an upstream task's list:
``.expand(entrypoint=list_partitions())``, whose strings are used as they are (XComs are not templated).
Connection and data root: as in ``batch_inference.py``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Variable, task

from kuberay_provider.airflow.operators import RayJobOperator
from kuberay_provider.core.spec import simple_cluster_spec

RAY_VERSION = "2.60.0"
JOB_SCRIPT = Path(__file__).resolve().parent / "ray_jobs" / "batch_inference.py"
DEFAULT_DATA_ROOT = os.environ.get("KUBERAY_EXAMPLE_DATA_ROOT", str(Path.home() / ".kuberay-provider" / "example-data"))
DATA_ROOT = "{{ var.value.get('kuberay_example_data_root', '" + DEFAULT_DATA_ROOT + "') }}"
REGIONS = ("emea", "amer", "apac")  # the day's partitions, one map index each


def partition_root(data_root: str, region: str) -> str:
    return f"{data_root}/batch_inference_mapped/region={region}"


with DAG(
    dag_id="batch_inference_mapped",
    schedule="@daily",
    start_date=dt.datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": dt.timedelta(minutes=1)},
    tags=["ray", "kuberay", "example", "mapping"],
):
    score = RayJobOperator.partial(
        task_id="score",
        ray_cluster_spec=simple_cluster_spec(
            image=f"rayproject/ray:{RAY_VERSION}", ray_version=RAY_VERSION, head_memory="2Gi"
        ),
        cleanup="delete_cluster",
        active_deadline_seconds=1800,
        wait_timeout=3600,
        max_active_tis_per_dagrun=2,  # at most two partitions (two Ray clusters) at once
    ).expand(
        # A literal list is templated per index, {{ ds }} included.
        entrypoint=[
            f"python {JOB_SCRIPT} --date {{{{ ds }}}} --data-root {partition_root(DATA_ROOT, region)}"
            for region in REGIONS
        ],
    )

    @task
    def summarize(outcomes: list[dict[str, Any]], ds: str | None = None) -> dict[str, Any]:
        """The day over all partitions: rows scored per region, and the RayJob that scored each."""
        data_root = Variable.get("kuberay_example_data_root", default=DEFAULT_DATA_ROOT)
        partitions: dict[str, Any] = {}
        for region, outcome in zip(REGIONS, outcomes, strict=False):  # mapped XComs come in map-index order
            output = Path(partition_root(data_root, region)) / "output" / f"date={ds}"
            summary = json.loads((output / "_SUMMARY.json").read_text())
            partitions[region] = {
                "rows": summary["rows"],
                "mean_churn_probability": summary["mean_churn_probability"],
                "rayjob": outcome["rayjob_name"],
            }
        total = sum(part["rows"] for part in partitions.values())
        print(f"scored {total} rows for {ds} in {len(partitions)} partitions")
        return {"date": ds, "rows": total, "partitions": partitions}

    summarize(score.output)
