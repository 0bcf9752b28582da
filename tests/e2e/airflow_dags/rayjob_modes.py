"""Test DAGs: SDK submission, existing cluster, re-attach on retry, validation, deferrable, sensor."""

from __future__ import annotations

import datetime as dt
import os

from airflow.sdk import DAG

from kuberay_provider.airflow.operators import RayJobCleanupOperator, RayJobOperator
from kuberay_provider.airflow.sensors import RayJobSensor
from kuberay_provider.core.spec import simple_cluster_spec

CLUSTER = simple_cluster_spec(
    image=os.environ.get("KUBERAY_TEST_RAY_IMAGE") or "rayproject/ray:2.60.0", ray_version="2.60.0", head_memory="1Gi"
)
EXISTING_CLUSTER = "e2e-existing"
START = dt.datetime(2026, 1, 1)


def printing(marker: str, seconds: float = 0) -> str:
    return f"python -c \"import time; time.sleep({seconds}); print('{marker}', flush=True)\""


with DAG("kuberay_e2e_sdk", schedule=None, start_date=START, catchup=False):
    RayJobOperator(
        task_id="sdk",
        submit_via="sdk",
        entrypoint=printing("E2E-SDK-MARKER"),
        runtime_env={"env_vars": {"MODE": "sdk"}},
        ray_cluster_spec=CLUSTER,
        shutdown_after_job_finishes=True,
        ttl_seconds_after_finished=30,
    )

with DAG("kuberay_e2e_existing_cluster", schedule=None, start_date=START, catchup=False):
    RayJobOperator(task_id="via_rayjob", cluster_selector=EXISTING_CLUSTER, entrypoint=printing("E2E-SELECTOR-MARKER"))
    RayJobOperator(
        task_id="via_sdk",
        cluster_selector=EXISTING_CLUSTER,
        submit_via="sdk",
        entrypoint=printing("E2E-DIRECT-MARKER"),
    )


class GivesUpOnFirstTry(RayJobOperator):
    """Try 1 stops waiting after a second (as a worker crash would); try 2 must re-attach, not re-create."""

    def execute(self, context):  # type: ignore[override]
        self.wait_timeout = 1.0 if context["ti"].try_number == 1 else None
        return super().execute(context)


with DAG(
    "kuberay_e2e_reattach",
    schedule=None,
    start_date=START,
    catchup=False,
    default_args={"retries": 1, "retry_delay": dt.timedelta(seconds=0)},
):
    GivesUpOnFirstTry(
        task_id="flaky",
        entrypoint=printing("E2E-REATTACH-MARKER", seconds=4),
        ray_cluster_spec=CLUSTER,
        shutdown_after_job_finishes=True,
        ttl_seconds_after_finished=30,
    )

with DAG("kuberay_e2e_invalid", schedule=None, start_date=START, catchup=False, default_args={"retries": 2}):
    RayJobOperator(
        task_id="invalid",
        entrypoint=printing("never"),
        ray_cluster_spec=CLUSTER,
        ttl_seconds_after_finished=-5,  # KubeRay: must be >= 0
        suspend="yes",  # CRD schema: boolean
    )

with DAG("kuberay_e2e_deferrable", schedule=None, start_date=START, catchup=False):
    RayJobOperator(
        task_id="deferred",
        deferrable=True,
        entrypoint=printing("E2E-DEFERRED-MARKER"),
        ray_cluster_spec=CLUSTER,
        shutdown_after_job_finishes=True,
        ttl_seconds_after_finished=30,
    )
    RayJobOperator(
        task_id="deferred_sdk",
        deferrable=True,
        submit_via="sdk",
        entrypoint=printing("E2E-DEFERRED-SDK-MARKER"),
        ray_cluster_spec=CLUSTER,
        shutdown_after_job_finishes=True,
        ttl_seconds_after_finished=30,
    )

with DAG("kuberay_e2e_sensor", schedule=None, start_date=START, catchup=False):
    run = RayJobOperator(task_id="run", entrypoint=printing("E2E-SENSED-MARKER"), ray_cluster_spec=CLUSTER)
    rayjob = "{{ ti.xcom_pull(task_ids='run', key='rayjob')['name'] }}"
    run >> RayJobSensor(task_id="poke", rayjob_name=rayjob, poke_interval=1, timeout=120)
    run >> RayJobSensor(task_id="deferred", rayjob_name=rayjob, deferrable=True, timeout=120)

# The entrypoint is rendered per try: try 1's job fails (AppFailed), try 2's succeeds, and only a new RayJob
# (not a re-attach to the failed one) can run it.
with DAG(
    "kuberay_e2e_retry_after_failure",
    schedule=None,
    start_date=START,
    catchup=False,
    default_args={"retries": 1, "retry_delay": dt.timedelta(seconds=0)},
):
    RayJobOperator(
        task_id="fails_once",
        entrypoint="python -c \"import sys; print('E2E-RETRY-MARKER try {{ ti.try_number }}', flush=True); "
        'sys.exit(3 if {{ ti.try_number }} == 1 else 0)"',
        ray_cluster_spec=CLUSTER,
    )

with DAG("kuberay_e2e_cleanup", schedule=None, start_date=START, catchup=False, default_args={"retries": 0}):
    kept_until_the_end = RayJobOperator(
        task_id="kept", entrypoint=printing("E2E-KEPT-MARKER"), ray_cluster_spec=CLUSTER
    )
    failing = RayJobOperator(
        task_id="failing", entrypoint='python -c "import sys; sys.exit(3)"', ray_cluster_spec=CLUSTER
    )
    only_failing = RayJobCleanupOperator(task_id="cleanup_failing", task_ids=["failing"], trigger_rule="all_done")
    everything = RayJobCleanupOperator(task_id="cleanup_all", trigger_rule="all_done")
    [kept_until_the_end, failing] >> only_failing >> everything

# Run by tests/support/run_task_try.py in a subprocess that the test SIGKILLs while the job runs.
with DAG("kuberay_e2e_worker_killed", schedule=None, start_date=START, catchup=False):
    RayJobOperator(
        task_id="survives",
        entrypoint=printing("E2E-WORKER-KILLED-MARKER", seconds=12),
        ray_cluster_spec=CLUSTER,
    )

with DAG("kuberay_e2e_cleanup_choice", schedule=None, start_date=START, catchup=False):
    RayJobOperator(
        task_id="workers_then_cluster",
        entrypoint=printing("E2E-CLEANUP-CHOICE-MARKER"),
        ray_cluster_spec=CLUSTER,
        cleanup="delete_workers_then_cluster:0:3",
    )
