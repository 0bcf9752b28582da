"""`kuberay-provider example`: the README's main job, end to end on this machine.

Starts the local control plane (a development stand-in for Kubernetes + KubeRay, on a real local Ray),
then runs the example batch-inference job the way a task does: builds and validates a RayJob, creates
it (or re-attaches), follows it by watch, streams the Ray job's log, and reports where the output went.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
from pathlib import Path
from typing import Any

from kuberay_provider.core.lifecycle import RayJobLifecycle
from kuberay_provider.core.log_follower import LogFollower
from kuberay_provider.core.naming import identity_labels, rayjob_name, run_key
from kuberay_provider.core.spec import rayjob, simple_cluster_spec
from kuberay_provider.core.status import JobDeploymentStatus, RayJobState

PROJECT_ROOT = Path(__file__).resolve().parent.parent
JOB_SCRIPT = PROJECT_ROOT / "dags" / "ray_jobs" / "batch_inference.py"


def default_crds_dir() -> Path:
    shared = os.environ.get("KUBERAY_SHARED_DIR")
    return Path(shared) / "crds" if shared else PROJECT_ROOT.parent / "shared" / "kuberay" / "crds"


def add_example_arguments(parser: argparse.ArgumentParser) -> None:
    yesterday = (dt.date.today() - dt.timedelta(days=1)).isoformat()
    parser.add_argument("--date", default=yesterday, help="logical date to score (default: yesterday)")
    parser.add_argument("--data-root", type=Path, default=Path.home() / ".kuberay-provider" / "example-data")
    parser.add_argument("--crds", type=Path, default=None, help="KubeRay CRDs to install (default: ../shared/kuberay/crds)")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the RayJob")


def build_example_rayjob(date: str, data_root: Path, namespace: str) -> dict[str, Any]:
    """The RayJob a daily batch-inference task creates: one run per logical date, cluster removed after."""
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


def run_example(args: argparse.Namespace) -> int:
    from kuberay_provider.core.validation import SchemaRegistry
    from kuberay_provider.local.plane import LocalControlPlane
    from kuberay_provider.core.kube.sync_client import RayObjectsClient

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    crds = args.crds or default_crds_dir()
    if not crds.is_dir():
        print(f"error: KubeRay CRDs not found at {crds}; pass --crds DIR or set KUBERAY_SHARED_DIR", file=sys.stderr)
        return 2
    say(f"Starting the local control plane (API server, KubeRay controller, a local Ray) with the CRDs in {crds} ...")
    with LocalControlPlane(crds_dir=crds) as plane:
        say(f"API server at {plane.url}")
        with plane.api_client() as api_client:
            kube = RayObjectsClient(api_client)
            lifecycle = RayJobLifecycle(kube, schemas=SchemaRegistry.from_cluster(api_client))
            final = run_batch_inference(lifecycle, args.date, args.data_root.resolve(), args.namespace, args.timeout)
    if not final.succeeded_job:
        say(f"FAILED: {final.failure_summary()}")
        return 1
    output = args.data_root.resolve() / "output" / f"date={args.date}"
    say(f"SUCCEEDED: the scored partition for {args.date} is in {output}")
    return 0


def run_batch_inference(lifecycle: RayJobLifecycle, date: str, data_root: Path, namespace: str, timeout: float) -> RayJobState:
    manifest = build_example_rayjob(date, data_root, namespace)
    lifecycle.validate(manifest)
    launch = lifecycle.create_or_attach(manifest)
    name = manifest["metadata"]["name"]
    say(f"{'Created' if launch.created else 'Re-attached to'} RayJob {namespace}/{name}")
    report = TransitionReporter()
    running = lifecycle.wait(
        namespace, name, timeout=timeout, on_change=report,
        until=lambda s: s.is_terminal or (s.deployment_status == JobDeploymentStatus.RUNNING and bool(s.job_id)),
    )
    follower = None
    if not running.is_terminal:
        jobs = lifecycle.jobs_client(namespace, lifecycle.head_service(running))
        follower = LogFollower(jobs, running.job_id, lambda chunk: sys.stdout.write(indent(chunk))).start()
    final = lifecycle.wait(namespace, name, timeout=timeout, on_change=report)
    if follower is not None:
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
    print(f"[example] {text}", flush=True)
