"""Test DAGs: create mode (success and application failure) on the local control plane."""

from __future__ import annotations

import datetime as dt
import os

from airflow.sdk import DAG

from kuberay_provider.airflow.operators import RayJobOperator
from kuberay_provider.core.spec import simple_cluster_spec

CLUSTER = simple_cluster_spec(
    image=os.environ.get("KUBERAY_TEST_RAY_IMAGE") or "rayproject/ray:2.60.0", ray_version="2.60.0", head_memory="1Gi"
)
DEFAULTS = {"retries": 0}
SUCCESS_CODE = (
    "import ray; ray.init(); print('E2E-MARKER answer', ray.get(ray.remote(lambda: 6 * 7).remote()), flush=True)"
)
FAILING_CODE = "import sys; print('E2E-MARKER about to fail', flush=True); sys.exit(3)"

with DAG(
    "kuberay_e2e_success", schedule=None, start_date=dt.datetime(2026, 1, 1), catchup=False, default_args=DEFAULTS
):
    RayJobOperator(
        task_id="score",
        entrypoint=f'python -c "{SUCCESS_CODE}"',
        runtime_env={"env_vars": {"GREETING": "hello"}},
        ray_cluster_spec=CLUSTER,
        shutdown_after_job_finishes=True,
        ttl_seconds_after_finished=30,
    )

with DAG(
    "kuberay_e2e_app_failure", schedule=None, start_date=dt.datetime(2026, 1, 1), catchup=False, default_args=DEFAULTS
):
    RayJobOperator(
        task_id="boom",
        entrypoint=f'python -c "{FAILING_CODE}"',
        ray_cluster_spec=CLUSTER,
        shutdown_after_job_finishes=True,
        ttl_seconds_after_finished=30,
        delete_on_failure=False,
    )

# backoffLimit 1: KubeRay's first attempt fails, its retry runs on a new cluster under a new job id. The
# attempts share a flag file (the local plane's clusters share this machine's disk), unique per DAG run.
RETRY_CODE = (
    "import os, sys; p = os.environ['ATTEMPT_FLAG']; first = not os.path.exists(p); open(p, 'a').close(); "
    "print('E2E-RETRY-MARKER', 'first attempt fails' if first else 'second attempt succeeds', flush=True); "
    "sys.exit(3 if first else 0)"
)

with DAG(
    "kuberay_e2e_backoff_retry", schedule=None, start_date=dt.datetime(2026, 1, 1), catchup=False, default_args=DEFAULTS
):
    RayJobOperator(
        task_id="flaky",
        entrypoint=f'python -c "{RETRY_CODE}"',
        runtime_env={
            "env_vars": {
                "ATTEMPT_FLAG": "/tmp/kuberay-e2e-attempt-{{ run_id | replace(':', '_') | replace('+', '_') }}"
            }
        },
        ray_cluster_spec=CLUSTER,
        backoff_limit=1,
        shutdown_after_job_finishes=True,
    )
