"""The core end to end on the local control plane: the README's example job, re-attachment, and the
Ray Jobs API reached through the API server's service proxy with the API client's credentials."""

from __future__ import annotations

import asyncio
import io
import sys
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from kuberay_provider.core.dashboard import raycluster_head_service
from kuberay_provider.core.kube.sync_client import RayObjectsClient
from kuberay_provider.core.lifecycle import NameTakenError, RayJobLifecycle
from kuberay_provider.core.log_follower import FollowedRayJob, LogFollower
from kuberay_provider.core.manifests import load_manifest
from kuberay_provider.core.naming import identity_labels, rayjob_name, run_key
from kuberay_provider.core.resources import RAYCLUSTER, RAYJOB
from kuberay_provider.core.spec import rayjob, simple_cluster_spec
from kuberay_provider.core.status import JobDeploymentStatus, JobStatus, RayJobState
from kuberay_provider.core.validation import SchemaRegistry
from tests.conftest import PROJECT_ROOT, SAMPLES_DIR

JOB_SCRIPT = PROJECT_ROOT / "dags" / "ray_jobs" / "batch_inference.py"

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]


def build_example_rayjob(date: str, data_root: Path, namespace: str) -> dict[str, Any]:
    """The RayJob a daily batch-inference task creates, built with the core alone."""
    import ray

    name = rayjob_name("example_batch_inference", "score", date)
    return rayjob(
        name,
        namespace,
        labels=identity_labels(run_key("example_batch_inference", "score", date)),
        entrypoint=f"python {JOB_SCRIPT} --date {date} --data-root {data_root}",
        shutdown_after_job_finishes=True,
        ttl_seconds_after_finished=0,
        active_deadline_seconds=1800,
        ray_cluster_spec=simple_cluster_spec(image=f"rayproject/ray:{ray.__version__}", ray_version=ray.__version__),
    )


def run_batch_inference(
    lifecycle: RayJobLifecycle, date: str, data_root: Path, namespace: str, timeout: float
) -> RayJobState:
    manifest = build_example_rayjob(date, data_root, namespace)
    lifecycle.validate(manifest)
    launch = lifecycle.create_or_attach(manifest)
    name = manifest["metadata"]["name"]
    say(f"{'Created' if launch.created else 'Re-attached to'} RayJob {namespace}/{name}")
    report = TransitionReporter()
    running = lifecycle.wait(
        namespace,
        name,
        timeout=timeout,
        on_change=report,
        until=lambda s: s.is_terminal or (s.deployment_status == JobDeploymentStatus.RUNNING and bool(s.job_id)),
    )
    follower = None
    if not running.is_terminal:
        followed = FollowedRayJob(running)
        follower = LogFollower(
            lifecycle.rayjob_jobs_client, followed, line_sink=lambda line: sys.stdout.write(indent(line + "\n"))
        ).start()

        def report_and_follow(state: RayJobState) -> None:
            followed.update(state)
            report(state)

    final = lifecycle.wait(namespace, name, timeout=timeout, on_change=report_and_follow if follower else report)
    if follower is not None:
        followed.update(final)
        follower.join(timeout=30)
        follower.stop()
    return final


class TransitionReporter:
    """Prints each state once, across the two waits (each watch starts by replaying the current state)."""

    def __init__(self) -> None:
        self.last = ""

    def __call__(self, state: RayJobState) -> None:
        text = state.describe()
        if text != self.last:
            say(text)
            self.last = text


def indent(chunk: str) -> str:
    return "".join(f"  | {line}" for line in chunk.splitlines(keepends=True))


def say(text: str) -> None:
    print(f"{text}", flush=True)


@pytest.fixture
def lifecycle(local_plane):
    with local_plane.api_client() as api_client:
        yield RayJobLifecycle(RayObjectsClient(api_client), schemas=SchemaRegistry.from_cluster(api_client))


def test_example_job_scores_a_partition_and_a_rerun_reattaches(lifecycle, namespace: str, tmp_path: Path):
    printed = io.StringIO()
    with redirect_stdout(printed):
        final = run_batch_inference(lifecycle, "2026-01-15", tmp_path, namespace, timeout=240)
    assert final.succeeded_job, final.failure_summary()
    output = tmp_path / "output" / "date=2026-01-15"
    assert len(pd.read_parquet(output)) == 2000
    # The Ray job's own log came through the service proxy into our output while it ran.
    assert "scored 2000 rows for 2026-01-15" in printed.getvalue()

    again = lifecycle.create_or_attach(build_example_rayjob("2026-01-15", tmp_path, namespace))
    assert again.created is False and again.state.succeeded_job
    assert len(lifecycle.kube.list(RAYJOB, namespace)) == 1


def test_a_rayjob_of_another_run_is_never_taken_over(lifecycle, namespace: str, tmp_path: Path):
    mine = build_example_rayjob("2026-01-16", tmp_path, namespace)
    mine["spec"]["suspend"] = True  # nothing needs to run for this test
    lifecycle.create_or_attach(mine)
    impostor = build_example_rayjob("2026-01-17", tmp_path, namespace)
    impostor["metadata"]["name"] = mine["metadata"]["name"]
    with pytest.raises(NameTakenError, match="not created by this run"):
        lifecycle.create_or_attach(impostor)


def test_invalid_manifest_is_refused_before_anything_is_created(lifecycle, namespace: str, tmp_path: Path):
    manifest = build_example_rayjob("2026-01-18", tmp_path, namespace)
    manifest["spec"]["clusterSelector"] = {"ray.io/cluster": "elsewhere"}
    manifest["spec"]["shutdownAfterJobFinish"] = True
    with pytest.raises(Exception) as refused:
        lifecycle.validate(manifest)
    text = str(refused.value)
    assert "spec.shutdownAfterJobFinish" in text and "schema:unknown-field" in text
    assert "kuberay:cluster-selector-with-cluster-spec" in text
    assert lifecycle.kube.list(RAYJOB, namespace) == []


def test_ray_jobs_api_through_the_service_proxy(lifecycle, kubectl, namespace: str):
    cluster = load_manifest(SAMPLES_DIR / "ray-cluster.sample.yaml", kind="RayCluster")
    kubectl.ok("apply", "-n", namespace, "-f", str(SAMPLES_DIR / "ray-cluster.sample.yaml"))
    name = cluster["metadata"]["name"]
    kubectl.wait("jsonpath={.status.state}=ready", f"raycluster/{name}", namespace=namespace, timeout=120)
    service = raycluster_head_service(lifecycle.kube.get(RAYCLUSTER, namespace, name))
    jobs = lifecycle.jobs_client(namespace, service)
    assert "/services/" in jobs.endpoint.url and "Bearer" not in repr(jobs.endpoint)
    job_id = f"{namespace}-proxied"
    assert jobs.submit(submission_id=job_id, entrypoint="python -c \"print('through the proxy', 6 * 7)\"")

    async def tail() -> str:
        return "".join([chunk async for chunk in jobs.tail(job_id)])

    text = asyncio.run(asyncio.wait_for(tail(), timeout=120))
    assert "through the proxy 42" in text
    assert jobs.status(job_id) is JobStatus.SUCCEEDED


def test_validate_cli_reads_the_crds_installed_in_the_cluster(local_plane, tmp_path: Path):
    import subprocess

    def validate(path: Path) -> subprocess.CompletedProcess:
        command = [
            sys.executable,
            "-m",
            "kuberay_provider.cli",
            "validate",
            "--kubeconfig",
            str(local_plane.kubeconfig_path),
            str(path),
        ]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    assert validate(SAMPLES_DIR / "ray-job.sample.yaml").returncode == 0
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        (SAMPLES_DIR / "ray-job.sample.yaml").read_text().replace("rayClusterSpec:", "rayClusterSpecs:", 1)
    )
    result = validate(broken)
    assert (
        result.returncode == 1 and "spec.rayClusterSpecs" in result.stderr and "schema:unknown-field" in result.stderr
    )
