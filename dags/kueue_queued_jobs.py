"""Ray jobs queued by Kueue: a DAG to copy and adapt.

The platform team gives each team a Kueue LocalQueue backed by a ClusterQueue with a CPU quota (see
docs/kueue.md for the two small manifests). Every RayJob of this DAG names that queue with
``queue_name``: it is created suspended, Kueue admits it when its cluster fits in the quota, and
KubeRay starts the cluster only then. Jobs that do not fit wait their turn instead of competing for
nodes, and the task log says so ("queued for admission on Kueue LocalQueue ..."), then how long the
wait took. ``admission_timeout`` bounds that wait: a RayJob still queued after it is deleted and the try
fails, so it can never start later with nobody watching.

The two scoring tasks run side by side in Airflow, both deferred (no worker slot while queued or
running); with a quota for one cluster, Kueue runs them one after the other.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Param

from kuberay_provider.airflow.operators import RayJobOperator
from kuberay_provider.core.spec import simple_cluster_spec

# What Kueue counts against the quota: the head's and workers' CPU requests (and the submitter Pod's).
CLUSTER = simple_cluster_spec(image="rayproject/ray:2.60.0", ray_version="2.60.0", head_cpu="1", head_memory="1Gi")

with DAG(
    dag_id="kueue_queued_jobs",
    schedule="@daily",
    start_date=dt.datetime(2026, 1, 1),
    catchup=False,
    tags=["ray", "kuberay", "kueue", "example"],
    params={
        "queue": Param("team-a", type="string", description="The Kueue LocalQueue of this team"),
        "seconds": Param(5, type="integer", minimum=0, description="How long each scoring job works"),
    },
):
    for shard in ("a", "b"):
        RayJobOperator(
            task_id=f"score_shard_{shard}",
            queue_name="{{ params.queue }}",
            admission_timeout=1800,
            deferrable=True,
            ray_cluster_spec=CLUSTER,
            shutdown_after_job_finishes=True,  # Kueue requires it: the quota is freed with the cluster
            ttl_seconds_after_finished=30,
            entrypoint=(
                'python -c "import ray, time; ray.init(); time.sleep({{ params.seconds }}); '
                f"print('scored shard {shard}:', sum(ray.get([ray.remote(lambda i: i * i).remote(i) for i in range(50)])))\""
            ),
        )
