"""Ray jobs with Volcano: a DAG to copy and adapt.

Two ways Volcano and Ray meet, one task each:

* ``preprocess``: a Ray cluster that **Volcano** runs, not KubeRay. A Volcano Job with the ``ray``
  plugin (created by the platform, e.g. ``kubectl apply -f volcano-ray-job.yaml``; see docs/volcano.md)
  starts the head and workers and exposes the head as the Service ``<job>-head-svc``. ``volcano_job``
  submits straight to that head through the Ray Jobs SDK, via the API server's service proxy: there is
  no RayJob and no RayCluster. The submission id derives from the run, so a retried try re-attaches to
  the same Ray job, and killing the task stops it.
* ``train``: a KubeRay RayJob whose cluster Volcano gang-schedules. ``volcano_queue`` labels it
  ``volcano.sh/queue-name`` (and ``ray.io/scheduler-name: volcano``); KubeRay, run with
  ``batchScheduler.name=volcano``, creates the PodGroup and puts it in that Volcano Queue.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Param

from kuberay_provider.airflow.operators import RayJobOperator
from kuberay_provider.core.spec import simple_cluster_spec

with DAG(
    dag_id="volcano_ray_head",
    schedule="@daily",
    start_date=dt.datetime(2026, 1, 1),
    catchup=False,
    tags=["ray", "kuberay", "volcano", "example"],
    params={
        "volcano_job": Param("ray-preprocess", type="string", description="The Volcano Job running the Ray head"),
        "volcano_queue": Param("default", type="string", description="The Volcano Queue of the training cluster"),
    },
):
    preprocess = RayJobOperator(
        task_id="preprocess",
        volcano_job="{{ params.volcano_job }}",
        entrypoint=(
            'python -c "import ray; ray.init(); '
            "print('preprocessed rows:', sum(ray.get([ray.remote(lambda i: i + 1).remote(i) for i in range(100)])))\""
        ),
        runtime_env={"env_vars": {"RUN_DATE": "{{ ds }}"}},
    )
    train = RayJobOperator(
        task_id="train",
        volcano_queue="{{ params.volcano_queue }}",
        ray_cluster_spec=simple_cluster_spec(image="rayproject/ray:2.60.0", ray_version="2.60.0", head_memory="1Gi"),
        shutdown_after_job_finishes=True,
        entrypoint="python -c \"import os; print('trained for', os.environ['RUN_DATE'])\"",
        runtime_env={"env_vars": {"RUN_DATE": "{{ ds }}"}},
    )
    preprocess >> train
