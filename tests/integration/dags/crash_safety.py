"""The DAG the crash-safety loop (tests/integration/test_crash_safety.py) runs and SIGKILLs: one task whose
Ray job succeeds, one whose Ray job fails, on a cluster KubeRay deletes when the job ends."""

from __future__ import annotations

import time
from typing import Any

import pendulum
from airflow.sdk import DAG

from kuberay_provider.airflow.operators import RayJobOperator
from kuberay_provider.core.spec import simple_cluster_spec

CONN_ID = "kuberay_crash"
CLUSTER = simple_cluster_spec(image="rayproject/ray:2.60.0", ray_version="2.60.0")
REPORT_SECONDS = 0.3  # between marking the RayJob consumed and handing the outcome to Airflow


class SlowToReport(RayJobOperator):
    """Takes a moment to hand its outcome over once the RayJob is marked consumed, as a slow XCom push or
    API call would: the window of the loop's last kill point, "marked but not reported"."""

    def execute(self, context: Any) -> Any:
        outcome = super().execute(context)
        time.sleep(REPORT_SECONDS)
        return outcome


with DAG("kuberay_crash_safety", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False):
    for task_id, entrypoint in (("succeeds", "python score.py --marker CRASH-OK"),
                                ("fails", "python score.py --marker CRASH-FAIL")):
        SlowToReport(task_id=task_id, entrypoint=entrypoint, ray_cluster_spec=CLUSTER, cleanup="delete_cluster",
                     kuberay_conn_id=CONN_ID, stream_logs=False, retries=1)
