"""Daily batch inference on Ray through KubeRay, as a Prefect flow: an example to copy and adapt.

One RayJob with its own Ray cluster scores a day's partition (``dags/ray_jobs/batch_inference.py``);
KubeRay deletes the cluster as soon as the job ends (``shutdown_after_job_finishes``). The RayJob is named
after the flow run and task run, so a retried task re-attaches to it instead of starting the job twice,
and the run log shows the Ray job's own log as it runs.

Run it once from plain Python (``python dags/prefect_batch_inference.py 2026-01-15``), or deploy
``batch_inference`` on a daily schedule. Credentials: a saved ``KubernetesCredentials`` block named by
``KUBERAY_CREDENTIALS_BLOCK``, else in-cluster, else the default kubeconfig. The data root comes from
``KUBERAY_EXAMPLE_DATA_ROOT`` (default ``~/.kuberay-provider/example-data``); on a real cluster the job
script ships in the image (or a remote ``working_dir``) and the data root is storage the Ray pods mount.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path
from typing import Any

from prefect import flow
from prefect_kubernetes.credentials import KubernetesCredentials

from kuberay_provider.core.spec import simple_cluster_spec
from kuberay_provider.prefect import RayJob, run_rayjob

RAY_VERSION = "2.60.0"
JOB_SCRIPT = Path(__file__).resolve().parent / "ray_jobs" / "batch_inference.py"
DEFAULT_DATA_ROOT = str(Path.home() / ".kuberay-provider" / "example-data")


def credentials() -> KubernetesCredentials:
    saved = os.environ.get("KUBERAY_CREDENTIALS_BLOCK")
    return KubernetesCredentials.load(saved) if saved else KubernetesCredentials()


def scoring_job(date: str, data_root: str, kubernetes: KubernetesCredentials) -> RayJob:
    return RayJob(
        entrypoint=f"python {JOB_SCRIPT} --date {date} --data-root {data_root}",
        ray_cluster_spec=simple_cluster_spec(
            image=f"rayproject/ray:{RAY_VERSION}", ray_version=RAY_VERSION, head_cpu="2", head_memory="4Gi"
        ),
        spec_params={
            "shutdown_after_job_finishes": True,
            "ttl_seconds_after_finished": 60,
            "active_deadline_seconds": 1800,
        },
        credentials=kubernetes,
        timeout=3600,
    )


@flow(name="batch-inference")
def batch_inference(
    date: str | None = None, data_root: str | None = None, kubernetes: KubernetesCredentials | None = None
) -> dict[str, Any]:
    """Score ``date``'s partition (default: yesterday, UTC) and return the Ray job's outcome."""
    day = date or (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()
    root = data_root or os.environ.get("KUBERAY_EXAMPLE_DATA_ROOT", DEFAULT_DATA_ROOT)
    job = scoring_job(day, root, kubernetes or credentials())
    # A subflow: the RayJob appears as its own run, with its log, dashboard link and summary.
    return run_rayjob.with_options(name="score")(job)


if __name__ == "__main__":
    print(batch_inference(sys.argv[1] if len(sys.argv) > 1 else None))
