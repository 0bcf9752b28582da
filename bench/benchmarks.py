"""Benchmarks of what users pay for, each against a baseline measured in the same run.

  - Detection latency: from the RayJob's status turning terminal to the wait returning, p50 / p99 over
    50 jobs each, vs a 5 s polling wait: the operator's synchronous wait (watch), the deferred wait
    (RayJobTrigger in a real ``airflow triggerer``, until the task instance leaves DEFERRED) and the
    Prefect ``wait_for_rayjob`` task (until its future resolves in the flow).
  - Triggerer scale: 1,000 deferred waits in one real triggerer: RSS and CPU share against the same
    triggerer idle, API requests while holding them, p99 detection (bench/triggerer_scale.py).
  - API load while waiting: requests per job per minute in steady state, by watch vs 5 s polling,
    counted at the local control plane by User-Agent.
  - Backfill throughput: RayJobs created per second from one process through the provider's
    create-or-attach path (validation, dry run, create), vs a bare create loop; and duplicates after
    every creation is retried once.
  - Overhead over plain Ray: the same 2-second job on an existing RayCluster through RayJobOperator
    vs ``ray job submit --wait``, interleaved, medians.
All but the overhead benchmark use the API server alone (no controller, no Ray) and drive the RayJobs'
status themselves, so Ray is not what is measured; the overhead benchmark runs a real local Ray behind
the local control plane. The triggerer and Prefect benchmarks run in processes of their own (Airflow
and Prefect read their configuration once per process).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kuberay_provider.core.kube.sync_client import RayObjectsClient
from kuberay_provider.core.lifecycle import RayJobLifecycle
from kuberay_provider.core.naming import identity_labels, run_key
from kuberay_provider.core.resources import RAYJOB
from kuberay_provider.core.spec import rayjob, simple_cluster_spec
from kuberay_provider.core.validation import SchemaRegistry
from kuberay_provider.local.plane import LocalControlPlane

PROJECT_ROOT = Path(__file__).resolve().parent.parent
POLL_INTERVAL_SECONDS = 5.0


@dataclass(frozen=True)
class Result:
    metric: str
    ours: float
    baseline: float
    target: str
    passed: bool

    @property
    def ratio(self) -> str:
        return f"{self.ours / self.baseline:.2f}" if self.baseline else "-"


def crds_dir() -> Path:
    shared = os.environ.get("KUBERAY_SHARED_DIR")
    return Path(shared) / "crds" if shared else PROJECT_ROOT.parent / "shared" / "kuberay" / "crds"


def manifest(name: str, namespace: str) -> dict:
    return rayjob(
        name,
        namespace,
        labels=identity_labels(run_key("bench", name)),
        entrypoint="python -c 'print(1)'",
        ray_cluster_spec=simple_cluster_spec(image="rayproject/ray:2.60.0"),
    )


def client_for(plane: LocalControlPlane, user_agent: str):
    api_client = plane.api_client()
    api_client.user_agent = user_agent
    return api_client


def api_load(plane: LocalControlPlane, jobs: int, window: float) -> list[Result]:
    with client_for(plane, "bench-setup") as api_client:
        kube = RayObjectsClient(api_client)
        for index in range(jobs):
            kube.create(manifest(f"load-{index}", "default"))
    stop = threading.Event()
    counts = plane.server.request_counts  # type: ignore[union-attr]

    def watcher(name: str) -> None:
        with client_for(plane, "bench-watch") as api_client:
            for _ in RayObjectsClient(api_client).watch(RAYJOB, "default", name=name, timeout_seconds=window + 10):
                if stop.is_set():
                    return

    def poller(name: str) -> None:
        with client_for(plane, "bench-poll") as api_client:
            kube = RayObjectsClient(api_client)
            while not stop.wait(POLL_INTERVAL_SECONDS):
                kube.get(RAYJOB, "default", name)

    threads = [
        threading.Thread(target=f, args=(f"load-{i}",), daemon=True) for f in (watcher, poller) for i in range(jobs)
    ]
    for thread in threads:
        thread.start()
    time.sleep(3)  # warm-up: the initial list and watch of every waiter are not steady state
    before = dict(counts)
    time.sleep(window)
    after = dict(counts)
    stop.set()
    minutes = window / 60
    rate = {
        agent: (after.get(agent, 0) - before.get(agent, 0)) / jobs / minutes for agent in ("bench-watch", "bench-poll")
    }
    return [
        Result(
            "API requests per job per minute while waiting (watch vs 5 s polling)",
            rate["bench-watch"],
            rate["bench-poll"],
            "<= 0.2 (baseline >= 12)",
            rate["bench-watch"] <= 0.2,
        )
    ]


def detection_latency(plane: LocalControlPlane, jobs: int) -> list[Result]:
    """From a RayJob's status turning terminal to the waiter returning: p50 and p99 over ``jobs``."""
    from kubernetes import client

    def by_watch(kube: RayObjectsClient, name: str) -> None:
        RayJobLifecycle(kube).wait("default", name, timeout=120)

    def by_polling(kube: RayObjectsClient, name: str) -> None:
        from kuberay_provider.core.status import RayJobState

        while not RayJobState.from_object(kube.get(RAYJOB, "default", name)).is_terminal:
            time.sleep(POLL_INTERVAL_SECONDS)

    latencies: dict[str, list[float]] = {}
    for label, waiter in (("watch", by_watch), ("poll", by_polling)):
        names = [f"latency-{label}-{i}" for i in range(jobs)]
        returned: dict[str, float] = {}
        with client_for(plane, "bench-setup") as api_client:
            kube = RayObjectsClient(api_client)
            for name in names:
                kube.create(manifest(name, "default"))

        def wait_one(
            name: str, label: str = label, waiter: Callable[..., Any] = waiter, returned: dict[str, float] = returned
        ) -> None:
            with client_for(plane, f"bench-{label}") as api_client:
                waiter(RayObjectsClient(api_client), name)
            returned[name] = time.perf_counter()

        threads = [threading.Thread(target=wait_one, args=(name,), daemon=True) for name in names]
        for thread in threads:
            thread.start()
        time.sleep(3)  # every waiter is waiting
        finished: dict[str, float] = {}
        with client_for(plane, "bench-driver") as api_client:
            custom = client.CustomObjectsApi(api_client)
            for name in names:
                status = {"status": {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}}
                custom.patch_namespaced_custom_object_status("ray.io", "v1", "default", "rayjobs", name, status)
                finished[name] = time.perf_counter()
                time.sleep(0.05)
        for thread in threads:
            thread.join(timeout=POLL_INTERVAL_SECONDS * 3)
        latencies[label] = sorted(returned[name] - finished[name] for name in names if name in returned)
    ours, baseline = latencies["watch"], latencies["poll"]
    return _latency_results("sync wait by watch vs 5 s polling", jobs, ours, baseline)


def _pct(values: list[float], percentile: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, round(percentile / 100 * (len(values) - 1)))]


def backfill(plane: LocalControlPlane, count: int) -> list[Result]:
    with client_for(plane, "bench-backfill") as api_client:
        kube = RayObjectsClient(api_client)
        lifecycle = RayJobLifecycle(kube, schemas=SchemaRegistry.from_cluster(api_client))

        def provider_path(index: int) -> None:
            job = manifest(f"backfill-{index}", "bench-backfill")
            lifecycle.validate(job)
            lifecycle.create_or_attach(job)

        def bare_create(index: int) -> None:
            kube.create(manifest(f"bare-{index}", "bench-bare"))

        ours = _rate(provider_path, count)
        baseline = _rate(bare_create, count)
        for index in range(count):  # every try retried once: re-attach, never a second object
            provider_path(index)
        duplicates = len(kube.list(RAYJOB, "bench-backfill")) - count
    return [
        Result(
            f"backfill: RayJobs created per second ({count}, validated, dry run first)",
            ours,
            baseline,
            ">= 50/s",
            ours >= 50,
        ),
        Result("backfill: duplicate RayJobs after retrying every creation", duplicates, 0, "0", duplicates == 0),
    ]


TWO_SECOND_JOB = ["python", "-c", "import time; time.sleep(2); print('done', flush=True)"]


@dataclass
class _TaskInstance:
    """What RayJobOperator.execute() reads of Airflow's task instance, for a run outside a DAG."""

    run_id: str
    dag_id: str = "bench_overhead"
    task_id: str = "job"
    map_index: int = -1
    try_number: int = 1

    def xcom_push(self, key: str, value: object) -> None:
        pass


def overhead(runs: int) -> list[Result]:
    """The same 2-second job on an existing RayCluster through RayJobOperator (straight through the Ray
    Jobs SDK, via the API server's service proxy, its log streamed) vs ``ray job submit``, which waits
    and streams the log too, to the same Ray's dashboard; runs interleaved, medians compared."""
    import asyncio
    import tempfile

    from kuberay_provider.airflow.devenv import configure_airflow_home
    from kuberay_provider.local.ray_backend import LocalRayBackend

    # Airflow reads its configuration at first import: a throwaway home before the operator is imported.
    configure_airflow_home(Path(tempfile.mkdtemp(prefix="bench-airflow-")), {"bench": PROJECT_ROOT / "dags"})
    backend = LocalRayBackend()
    asyncio.run(backend.start())
    try:
        ours, baseline = _overhead_runs(backend, runs)
    finally:
        asyncio.run(backend.close())
    ratio = _pct(ours, 50) / _pct(baseline, 50)
    return [
        Result(
            f"overhead: a 2 s job on an existing cluster, median s of {runs} (operator vs ray CLI)",
            _pct(ours, 50),
            _pct(baseline, 50),
            "<= 1.15x",
            ratio <= 1.15,
        )
    ]


def _overhead_runs(backend: object, runs: int) -> tuple[list[float], list[float]]:
    import shlex
    import subprocess

    from kuberay_provider.airflow.devenv import kuberay_connection_env
    from kuberay_provider.airflow.operators import RayJobOperator
    from kuberay_provider.core.resources import RAYCLUSTER
    from kuberay_provider.core.spec import raycluster

    ray_cli = str(Path(sys.executable).parent / "ray")
    with LocalControlPlane(crds_dir=crds_dir(), backend=backend) as plane:
        kuberay_connection_env(Path(plane.kubeconfig_path))
        with plane.api_client() as api_client:
            kube = RayObjectsClient(api_client)
            kube.create(
                raycluster("bench-shared", "default", base={"spec": simple_cluster_spec(image="rayproject/ray:2.60.0")})
            )
            for event in kube.watch(RAYCLUSTER, "default", name="bench-shared", timeout_seconds=120):
                if (event.object.get("status") or {}).get("state") == "ready":
                    break
        ours, baseline = [], []
        for index in range(runs + 1):  # the first pair warms both paths up and is not counted
            operator = RayJobOperator(
                task_id="job", cluster_selector="bench-shared", submit_via="sdk", entrypoint=shlex.join(TWO_SECOND_JOB)
            )
            start = time.perf_counter()
            operator.execute({"ti": _TaskInstance(run_id=f"overhead-{time.time_ns()}")})  # type: ignore[arg-type]
            elapsed_ours = time.perf_counter() - start
            start = time.perf_counter()
            subprocess.run(
                [
                    ray_cli,
                    "job",
                    "submit",
                    "--address",
                    backend.dashboard_url,  # type: ignore[attr-defined]
                    "--submission-id",
                    f"plain-{time.time_ns()}",
                    "--",
                    *TWO_SECOND_JOB,
                ],
                check=True,
                capture_output=True,
                timeout=300,
            )
            elapsed_baseline = time.perf_counter() - start
            if index:
                ours.append(elapsed_ours)
                baseline.append(elapsed_baseline)
    return sorted(ours), sorted(baseline)


def _rate(create: Callable[[int], None], count: int) -> float:
    start = time.perf_counter()
    for index in range(count):
        create(index)
    return count / (time.perf_counter() - start)


def _in_own_process(module: str, *args: str, timeout: float = 900) -> dict:
    """Run ``python -m bench.<module> ARGS`` and read the JSON its last line carries."""
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0 or not lines:
        raise RuntimeError(
            f"bench.{module} failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return json.loads(lines[-1].removeprefix("RESULT "))


def _latency_results(label: str, jobs: int, ours: list[float], baseline: list[float]) -> list[Result]:
    complete = len(ours) == jobs and len(baseline) == jobs
    return [
        Result(
            f"detection latency p50, s ({jobs} jobs, {label})",
            _pct(ours, 50),
            _pct(baseline, 50),
            "<= 0.5",
            complete and _pct(ours, 50) <= 0.5,
        ),
        Result(
            f"detection latency p99, s ({jobs} jobs, {label})",
            _pct(ours, 99),
            _pct(baseline, 99),
            "<= 2",
            complete and _pct(ours, 99) <= 2,
        ),
    ]


def deferred_latency(jobs: int) -> list[Result]:
    """Until the task instance leaves DEFERRED (what the scheduler acts on), and, read from the triggerer's
    log, until the trigger fired: the provider's share, before Airflow's own once-a-second hand-over."""
    os.environ["KUBERAY_BENCH_TRIGGER_LOG_LEVEL"] = "INFO"  # the "Trigger fired event" lines
    try:
        got = _in_own_process("triggerer_scale", "--waits", str(jobs), "--polling", str(jobs), "--window", "5")
    finally:
        del os.environ["KUBERAY_BENCH_TRIGGER_LOG_LEVEL"]
    fired, polled = got["fired_latencies"], got["polling_fired_latencies"]
    until_fired = [
        Result(
            r.metric.replace("detection latency", "status change to trigger event"),
            r.ours,
            r.baseline,
            r.target,
            r.passed,
        )
        for r in _latency_results("deferred, read from the triggerer's log", jobs, fired, polled)
    ]
    return (
        _latency_results(
            "deferred: RayJobTrigger vs a 5 s polling trigger", jobs, got["latencies"], got["polling_latencies"]
        )
        + until_fired
    )


def prefect_latency(jobs: int) -> list[Result]:
    got = _in_own_process("prefect_latency", "--jobs", str(jobs))
    return _latency_results(
        "Prefect wait_for_rayjob vs a 5 s polling task", jobs, got["latencies"], got["polling_latencies"]
    )


def triggerer_scale(waits: int, window: float) -> list[Result]:
    got = _in_own_process("triggerer_scale", "--waits", str(waits), "--window", str(window))
    idle, holding, latencies = got["idle"], got["holding"], got["latencies"]
    rate = holding["requests"] / waits / (holding["seconds"] / 60)
    added_mb = got["peak_rss_mb"] - idle["rss_mb"]
    return [
        Result(
            f"triggerer RSS, MB, holding {waits} waits vs idle (whole triggerer: supervisor + runner)",
            got["peak_rss_mb"],
            idle["rss_mb"],
            "<= 300 added",
            added_mb <= 300,
        ),
        Result(
            f"triggerer CPU, share of one core, holding {waits} waits vs idle",
            holding["cpu_share"],
            idle["cpu_share"],
            "<= 0.10",
            holding["cpu_share"] <= 0.10,
        ),
        Result(f"triggerer API requests per wait per minute, holding {waits} waits", rate, 0, "<= 0.2", rate <= 0.2),
        Result(
            f"triggerer detection latency p99, s ({waits} waits)",
            _pct(latencies, 99),
            0,
            "<= 2",
            len(latencies) == waits and _pct(latencies, 99) <= 2,
        ),
    ]


def print_table(results: list[Result]) -> None:
    print(f"{'metric':<96} {'ours':>9} {'baseline':>9} {'ratio':>7}  {'target':<24} result")
    for r in results:
        print(
            f"{r.metric:<96} {r.ours:>9.3f} {r.baseline:>9.3f} {r.ratio:>7}  {r.target:<24} {'pass' if r.passed else 'FAIL'}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer jobs and a shorter window (a couple of minutes)")
    args = parser.parse_args(argv)
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    with LocalControlPlane(crds_dir=crds_dir(), controller=False) as plane:
        with plane.api_client() as api_client:
            from kubernetes import client

            for namespace in ("bench-backfill", "bench-bare"):
                client.CoreV1Api(api_client).create_namespace({"metadata": {"name": namespace}})
        results = api_load(plane, jobs=10 if args.quick else 50, window=30 if args.quick else 120)
        results += detection_latency(plane, jobs=50)
        results += backfill(plane, count=200)
    results += deferred_latency(jobs=50)
    results += prefect_latency(jobs=50)
    results += triggerer_scale(waits=1000, window=10 if args.quick else 60)
    results += overhead(runs=3 if args.quick else 10)
    print_table(results)
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
