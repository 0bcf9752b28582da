"""Jobs on a long-lived, shared RayCluster chosen with ``cluster_selector``: a DAG to copy and adapt.

Teams that keep one warm RayCluster (``shared-ray`` here, created once with ``kubectl apply`` or a
RayCluster manifest) run short jobs on it instead of paying for a cluster per job. Two ways:

* ``report``: a RayJob with KubeRay's ``clusterSelector``: KubeRay submits the job to the selected cluster
  and the RayJob records it (status, reason, the job's log in the task log). Deleting that RayJob never
  deletes the cluster;
* ``refresh_features``: ``submit_via="sdk"``: no RayJob at all; the operator submits straight to the
  cluster's head through the Ray Jobs SDK (reached through the API server's service proxy) under a
  submission id derived from the run, so a retried try re-attaches to the same Ray job.

Killing either task stops its Ray job; the shared cluster is never deleted by these tasks. When a staging
and a prod Airflow both run this DAG on the same cluster, give each one's ``kuberay_default`` connection
its own ``instance_id`` (``{"in_cluster": true, "namespace": "ml", "instance_id": "prod"}``): it enters
the RayJob names and submission ids, so neither re-attaches to the other's job.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG

from kuberay_provider.airflow.operators import RayJobOperator

SHARED_CLUSTER = "shared-ray"

with DAG(
    dag_id="shared_cluster_jobs",
    schedule="@hourly",
    start_date=dt.datetime(2026, 1, 1),
    catchup=False,
    tags=["ray", "kuberay", "example"],
):
    refresh_features = RayJobOperator(
        task_id="refresh_features",
        cluster_selector=SHARED_CLUSTER,
        submit_via="sdk",
        entrypoint=(
            'python -c "import ray; ray.init(); '
            "print('feature rows', sum(ray.get([ray.remote(lambda i: i * i).remote(i) for i in range(100)])))\""
        ),
        runtime_env={"env_vars": {"RUN_HOUR": "{{ logical_date.hour }}"}},
    )
    report = RayJobOperator(
        task_id="report",
        cluster_selector=SHARED_CLUSTER,
        entrypoint="python -c \"import os; print('report for hour', os.environ['RUN_HOUR'])\"",
        runtime_env={"env_vars": {"RUN_HOUR": "{{ logical_date.hour }}"}},
    )
    refresh_features >> report
