"""The DAG the crash-safety loop (tests/integration/test_crash_safety.py) runs and SIGKILLs: one task whose
Ray job succeeds, one whose Ray job fails, on a cluster KubeRay deletes when the job ends."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from kuberay_provider.airflow.operators import RayJobOperator
from kuberay_provider.core.spec import simple_cluster_spec

CONN_ID = "kuberay_crash"
CLUSTER = simple_cluster_spec(image="rayproject/ray:2.60.0", ray_version="2.60.0")

with DAG("kuberay_crash_safety", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False):
    for task_id, entrypoint in (("succeeds", "python score.py --marker CRASH-OK"),
                                ("fails", "python score.py --marker CRASH-FAIL")):
        RayJobOperator(task_id=task_id, entrypoint=entrypoint, ray_cluster_spec=CLUSTER, cleanup="delete_cluster",
                       kuberay_conn_id=CONN_ID, stream_logs=False, retries=1)
