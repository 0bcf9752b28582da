"""Deploy (or update) a model service as a KubeRay RayService: a DAG to copy and adapt.

``deploy`` creates the RayService ``scorer`` or updates it, and ends once KubeRay serves the new spec
(its applications running, as read after the change): a changed Serve config (here the ``weight`` param,
passed to the app as ``user_config``) is redeployed in place; a changed cluster config (here the ``image``
param) is a zero-downtime upgrade, and the task waits until traffic has moved to the new cluster (KubeRay
deletes the old one ``rayClusterDeletionDelaySeconds``, 60 s by default, later). A failed application or a
spec KubeRay refuses fails the task at once. ``check`` waits the same way with a sensor, as a downstream
DAG that only consumes the service would. The endpoint (``http://scorer-serve-svc.<namespace>.svc.cluster.local:8000/score``,
from the head's ``serve`` port, which ``simple_cluster_spec`` declares) is in the task's XCom.

On a real cluster the application's code ships in the image; here ``PYTHONPATH`` points Serve at
``dags/ray_jobs/serve_app.py`` on the local Ray.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from airflow.sdk import DAG, Param

from kuberay_provider.airflow.operators import RayServiceOperator
from kuberay_provider.airflow.sensors import RayServiceSensor
from kuberay_provider.core.spec import simple_cluster_spec

APP_DIR = str(Path(__file__).resolve().parent / "ray_jobs")

with DAG(
    dag_id="rayservice_deploy",
    schedule="@weekly",
    start_date=dt.datetime(2026, 1, 1),
    catchup=False,
    params={"weight": Param(2.0, type="number"), "image": Param("rayproject/ray:2.60.0", type="string")},
    tags=["ray", "kuberay", "example"],
):
    deploy = RayServiceOperator(
        task_id="deploy",
        name="scorer",
        serve_config={
            "applications": [
                {
                    "name": "scorer",
                    "route_prefix": "/score",
                    "import_path": "serve_app:app",
                    "runtime_env": {"env_vars": {"PYTHONPATH": APP_DIR}},
                    "deployments": [
                        {
                            "name": "Scorer",
                            "num_replicas": 1,
                            "user_config": {"weight": "{{ params.weight }}"},
                            "ray_actor_options": {"num_cpus": 0.1},
                        }
                    ],
                }
            ],
        },
        ray_cluster_config=simple_cluster_spec(image="{{ params.image }}", ray_version="2.60.0"),
        ready_timeout=900,
        deferrable=True,  # an upgrade can take minutes: wait in the triggerer
    )
    check = RayServiceSensor(task_id="check", rayservice_name="scorer", poke_interval=5, timeout=600)
    deploy >> check
