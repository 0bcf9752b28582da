"""Test DAG: mapped RayJob and RayCluster tasks (partial / expand / expand_kwargs over spec keywords), whose
strings end in .yaml / .yml / .json without being manifest files: an entrypoint's ``--config``, a
runtime_env value, a ``subPath``, annotations. Only ``rayjob`` names a file (templates/mapped_rayjob.yaml).

The test makes the ConfigMap CONFIG_MAP first: ``train.py`` (mounted whole at CODE) and ``train.yaml``
(mounted by ``subPath`` at CONF/train.yaml).
"""

from __future__ import annotations

import copy
import datetime as dt
import os

from airflow.sdk import DAG

from kuberay_provider.airflow.operators import RayClusterCreateOperator, RayJobOperator
from kuberay_provider.core.spec import simple_cluster_spec

CONFIG_MAP = "kuberay-e2e-mapped-train"
CODE, CONF = "/home/ray/code", "/home/ray/conf"
CLUSTER = simple_cluster_spec(
    image=os.environ.get("KUBERAY_TEST_RAY_IMAGE") or "rayproject/ray:2.60.0", ray_version="2.60.0", head_memory="1Gi"
)
DEFAULTS = {"retries": 0}


def cluster_with_train_files() -> dict:
    spec = copy.deepcopy(CLUSTER)
    pod = spec["headGroupSpec"]["template"]["spec"]
    pod["volumes"] = [{"name": "train", "configMap": {"name": CONFIG_MAP}}]
    pod["containers"][0]["volumeMounts"] = [
        {"name": "train", "mountPath": CODE},
        {"name": "train", "mountPath": f"{CONF}/train.yaml", "subPath": "train.yaml"},
    ]
    return spec


WORKERS = simple_cluster_spec(
    image=os.environ.get("KUBERAY_TEST_RAY_IMAGE") or "rayproject/ray:2.60.0", workers=1, worker_memory="1Gi"
)["workerGroupSpecs"]

with DAG("kuberay_e2e_mapped", schedule=None, start_date=dt.datetime(2026, 1, 1), catchup=False, default_args=DEFAULTS):
    RayJobOperator.partial(
        task_id="train",
        rayjob="templates/mapped_rayjob.yaml",
        ray_cluster_spec=cluster_with_train_files(),
        runtime_env={"env_vars": {"EXTRA_CONFIG": "conf/extra.yml"}},
        cleanup="delete_cluster",
    ).expand_kwargs(
        [
            {"entrypoint": f"python {CODE}/train.py --shard 0 --config {CONF}/train.yaml"},
            {
                "entrypoint": f"python {CODE}/train.py --shard 1 --config {CONF}/train.yaml",
                "active_deadline_seconds": 600,
                "metadata": {"config": "shard-1.json"},
            },
        ]
    )

    RayClusterCreateOperator.partial(
        task_id="clusters",
        head_group_spec=CLUSTER["headGroupSpec"],
        ray_version="2.60.0",
        head_service_annotations={"kuberay-e2e/config": "serve.yaml"},
        labels={"config": "cluster.json"},
        ready_timeout=300,
    ).expand(worker_group_specs=[[], WORKERS])
