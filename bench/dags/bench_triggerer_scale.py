"""The DAG whose task instances the triggerer-scale benchmark defers: one mapped task, one instance per wait.

``wait`` is mapped over the output of ``rayjobs`` (as a DAG that waits on a list of RayJobs would be).
Neither ever runs: the benchmark marks ``rayjobs`` done with N values, lets Airflow expand ``wait`` into
map indexes 0..N-1, and writes each one's deferral (a RayJobTrigger row and the DEFERRED state) the way
Airflow's Execution API does, so a real ``airflow triggerer`` runs the real triggers without N task
starts first. One mapped task rather than N tasks: the triggerer deserialises the whole serialized DAG
for every trigger it loads, so a DAG of N tasks makes loading N triggers cost O(N²).

``KUBERAY_BENCH_WAITS`` (default 0) adds that many plain tasks ``wait_0000``..., which
bench/hostile_output.py defers by task id (a handful; not for scale).
"""

from __future__ import annotations

import os

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, task


@task
def rayjobs() -> list[int]:
    raise RuntimeError("never run: the benchmark records this task's result itself")


@task
def wait(index: int) -> None:
    raise RuntimeError("never run: the benchmark defers each instance on a RayJobTrigger itself")


with DAG("bench_triggerer_scale", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False):
    wait.expand(index=rayjobs())
    for index in range(int(os.environ.get("KUBERAY_BENCH_WAITS", "0"))):
        EmptyOperator(task_id=f"wait_{index:04d}")
