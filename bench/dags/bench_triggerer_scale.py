"""The DAG whose task instances the triggerer-scale benchmark defers: one task per wait.

The tasks never run; the benchmark writes each one's deferral (a RayJobTrigger row and the DEFERRED
state) the way Airflow's Execution API does when a task defers, so a real ``airflow triggerer`` runs
the real triggers without a thousand task starts first.
"""

from __future__ import annotations

import os

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

WAITS = int(os.environ.get("KUBERAY_BENCH_WAITS", "1000"))

with DAG("bench_triggerer_scale", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False):
    for index in range(WAITS):
        EmptyOperator(task_id=f"wait_{index:04d}")
