"""A RayCluster per DAG run, with Airflow setup / teardown: a DAG to copy and adapt.

``create_cluster`` (a setup task) creates a RayCluster for this run and waits, deferred, until it is ready;
``prepare`` and ``train`` run on it as RayJobs with KubeRay's ``clusterSelector``, ``train`` after
``add_workers`` has scaled the worker group from one worker to two; ``delete_cluster``
(its teardown) deletes the cluster however they ended, so a failed job never leaves a cluster behind.
The cluster's name derives from the run, so a retried ``create_cluster`` re-attaches to it.

Run it with ``{"train_epochs": 0}`` as the run's conf to see the teardown at work: ``train`` fails, the
cluster is deleted anyway, and the run is failed.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Param

from kuberay_provider.airflow.operators import (
    RayClusterCreateOperator,
    RayClusterDeleteOperator,
    RayClusterScaleOperator,
    RayJobOperator,
)
from kuberay_provider.core.spec import simple_cluster_spec

PREPARE = (
    'python -c "import ray; ray.init(); '
    "rows = ray.get([ray.remote(lambda i: i % 7).remote(i) for i in range(1000)]); "
    "print('prepared rows', len(rows), 'checksum', sum(rows))\""
)
TRAIN = (
    "python -c \"import ray; ray.init(); epochs = int('{{ params.train_epochs }}'); "
    "assert epochs > 0, f'train_epochs must be positive, got {epochs}'; "
    "print('trained epochs', sum(ray.get([ray.remote(lambda e: 1).remote(e) for e in range(epochs)])))\""
)

with DAG(
    dag_id="cluster_per_run",
    schedule="@daily",
    start_date=dt.datetime(2026, 1, 1),
    catchup=False,
    params={"train_epochs": Param(3, type="integer")},
    tags=["ray", "kuberay", "example"],
):
    create_cluster = RayClusterCreateOperator(
        task_id="create_cluster",
        spec=simple_cluster_spec(image="rayproject/ray:2.60.0", workers=1, max_workers=2),
        ready_timeout=600,
        deferrable=True,  # the wait until ready holds no worker slot
    )
    cluster = create_cluster.output["name"]
    prepare = RayJobOperator(task_id="prepare", cluster_selector=cluster, entrypoint=PREPARE)
    add_workers = RayClusterScaleOperator(task_id="add_workers", name=cluster, group="workers", replicas=2)
    train = RayJobOperator(task_id="train", cluster_selector=cluster, entrypoint=TRAIN)
    delete_cluster = RayClusterDeleteOperator(task_id="delete_cluster", name=cluster)
    create_cluster >> prepare >> add_workers >> train >> delete_cluster.as_teardown(setups=create_cluster)
