"""Test DAG: an unmapped RayJobOperator whose strings end in .yaml / .yml / .json without being files (an
entrypoint's ``--config``, a runtime_env value, a ``subPath``, a label): they reach the RayJob as written,
while ``rayjob`` (templates/mapped_rayjob.yaml) is still read and rendered as a template file."""

from __future__ import annotations

import copy
import datetime as dt
import os

from airflow.sdk import DAG

from kuberay_provider.airflow.operators import RayJobOperator
from kuberay_provider.core.spec import simple_cluster_spec

PRINT_ARGS = "import sys; print('CONFIG-STRINGS', *sys.argv[1:], flush=True)"


def cluster_with_optional_config() -> dict:
    """A head mounting one key of a ConfigMap by subPath; optional, so it need not exist."""
    spec = copy.deepcopy(
        simple_cluster_spec(
            image=os.environ.get("KUBERAY_TEST_RAY_IMAGE") or "rayproject/ray:2.60.0",
            ray_version="2.60.0",
            head_memory="1Gi",
        )
    )
    pod = spec["headGroupSpec"]["template"]["spec"]
    pod["volumes"] = [{"name": "conf", "configMap": {"name": "kuberay-e2e-optional-conf", "optional": True}}]
    pod["containers"][0]["volumeMounts"] = [
        {"name": "conf", "mountPath": "/home/ray/conf/app.yaml", "subPath": "app.yaml"}
    ]
    return spec


with DAG(
    "kuberay_e2e_config_strings",
    schedule=None,
    start_date=dt.datetime(2026, 1, 1),
    catchup=False,
    default_args={"retries": 0},
):
    RayJobOperator(
        task_id="train",
        rayjob="templates/mapped_rayjob.yaml",
        entrypoint=f'python -c "{PRINT_ARGS}" --day {{{{ ds }}}} --config conf/train.yaml',
        runtime_env={"env_vars": {"EXTRA_CONFIG": "conf/extra.yml"}},
        ray_cluster_spec=cluster_with_optional_config(),
        labels={"config": "train.json"},
        cleanup="delete_cluster",
    )
