"""Triggerer scale: N deferred RayJob waits in one real ``airflow triggerer`` process.

Run by ``bench.benchmarks`` in a process of its own (Airflow reads its configuration once per process):
``python -m bench.triggerer_scale --waits 1000 --window 30 [--stages 100] [--rate 50]`` prints one JSON line.

What it does, against a local control plane without controller or Ray (the benchmark drives each
RayJob's status itself, so Ray is not what is measured):
  1. N RayJobs, Running; an ``airflow triggerer`` on a fresh SQLite home; its idle RSS and CPU over the
     window are the baseline.
  2. N task instances (one mapped task, map indexes 0..N-1; bench/deferred_waits.py) deferred on N
     RayJobTriggers, written as the Execution API writes a deferral;
     once the triggerer holds them all: RSS, CPU share and API requests over the same window. With
     ``--stages``, deferred in steps (e.g. 100, then up to N), each step measured the same way: the cost
     of a wait, as the slope between steps.
  3. Every RayJob turned Complete through ``/status`` (``--rate`` a second, default 50); detection latency
     is from each patch to its task instance leaving DEFERRED (the triggerer's event stored in the database).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from bench.deferred_waits import DAG_ID as DAG_ID  # bench/hostile_output.py reads these here
from bench.deferred_waits import assigned_triggers, defer, fired_at, new_run, resumed_indexes
from bench.deferred_waits import resumed_tasks as resumed_tasks
from kuberay_provider.airflow.devenv import configure_airflow_home, kuberay_connection_env, migrate_database
from kuberay_provider.core.kube.sync_client import RayObjectsClient
from kuberay_provider.local.plane import LocalControlPlane

BENCH_DIR = Path(__file__).resolve().parent
NAMESPACE = "default"
PATCHES_PER_SECOND = 50


def rayjob_name(index: int) -> str:
    return f"bench-wait-{index:04d}"


def task_id(index: int) -> str:
    """A plain task of the bench DAG (``KUBERAY_BENCH_WAITS`` of them), as bench/hostile_output.py defers."""
    return f"wait_{index:04d}"


class ProcessTree:
    """A process and its children (the triggerer runs its triggers in a child): RSS and CPU seconds."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)

    def _all(self) -> list[psutil.Process]:
        return [self.root, *self.root.children(recursive=True)]

    def rss_mb(self) -> float:
        total = 0
        for process in self._all():
            with contextlib.suppress(psutil.NoSuchProcess):
                total += process.memory_info().rss
        return total / 2**20

    def cpu_seconds(self) -> float:
        total = 0.0
        for process in self._all():
            try:
                times = process.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
        return total


def steady_state(tree: ProcessTree, window: float, requests: Callable[[], int]) -> dict[str, float]:
    """CPU share of one core, peak RSS and API requests over ``window`` seconds."""
    cpu_before, requests_before, start = tree.cpu_seconds(), requests(), time.monotonic()
    peak = tree.rss_mb()
    while time.monotonic() - start < window:
        time.sleep(1)
        peak = max(peak, tree.rss_mb())
    elapsed = time.monotonic() - start
    return {
        "cpu_share": (tree.cpu_seconds() - cpu_before) / elapsed,
        "rss_mb": peak,
        "requests": requests() - requests_before,
        "seconds": elapsed,
    }


def settle(tree: ProcessTree, timeout: float, busy_share: float = 0.3, sample: float = 5.0) -> float:
    """Seconds until the triggerer's CPU share over ``sample`` s drops under ``busy_share``: taking a trigger
    (its row assigned) comes before loading it, which for thousands takes a while; measure after."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        cpu_before = tree.cpu_seconds()
        time.sleep(sample)
        if (tree.cpu_seconds() - cpu_before) / sample < busy_share:
            break
    return time.monotonic() - start


def create_rayjobs(plane: LocalControlPlane, count: int, workers: int = 4) -> None:
    """``count`` RayJobs, Running, created by a few threads (10,000 one by one took minutes)."""
    from concurrent.futures import ThreadPoolExecutor

    from kubernetes import client

    from kuberay_provider.core.naming import identity_labels, run_key
    from kuberay_provider.core.spec import rayjob, simple_cluster_spec

    def create_share(share: range) -> None:
        with plane.api_client() as api_client:
            kube, custom = RayObjectsClient(api_client), client.CustomObjectsApi(api_client)
            for index in share:
                name = rayjob_name(index)
                kube.create(
                    rayjob(
                        name,
                        NAMESPACE,
                        labels=identity_labels(run_key("bench", name)),
                        entrypoint="python -c 'print(1)'",
                        ray_cluster_spec=simple_cluster_spec(image="rayproject/ray:2.60.0"),
                    )
                )
                running = {"status": {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}}
                custom.patch_namespaced_custom_object_status("ray.io", "v1", NAMESPACE, "rayjobs", name, running)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(create_share, (range(first, count, workers) for first in range(workers))))  # re-raises


def make_trigger(index: int, polling: bool) -> Any:
    if polling:
        from bench.polling_trigger import PollingRayJobTrigger

        return PollingRayJobTrigger(rayjob_name(index), NAMESPACE)
    from kuberay_provider.airflow.triggers import RayJobTrigger

    return RayJobTrigger(rayjob_name(index), NAMESPACE, wait_for="terminal")


def all_assigned(count: int) -> bool:
    return assigned_triggers() == count


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what} after {timeout} s")
        time.sleep(0.5)


def finish_all(
    plane: LocalControlPlane,
    run_id: str,
    count: int,
    timeout: float,
    rate: float = PATCHES_PER_SECOND,
    start_at: float | None = None,
    also_awaited: frozenset[int] = frozenset(),
) -> tuple[dict[int, float], dict[int, float], dict[int, float]]:
    """Turn every RayJob Complete, index i at wall-clock ``start_at`` + i / ``rate`` (default: now). Waits
    as well for the map indexes ``also_awaited`` (triggers that watch no RayJob) to leave DEFERRED. By map
    index: the seconds until it left DEFERRED, the wall-clock time of its patch (to compare with the
    triggerer's log), and the wall-clock time every awaited index left DEFERRED."""
    import threading

    from kubernetes import client

    start = time.time() if start_at is None else start_at
    patched: dict[int, float] = {}
    patched_at: dict[int, float] = {}
    resumed: dict[int, float] = {}
    resumed_at: dict[int, float] = {}

    def drive() -> None:
        with plane.api_client() as api_client:
            custom = client.CustomObjectsApi(api_client)
            for index in range(count):
                time.sleep(max(0.0, start + index / rate - time.time()))
                custom.patch_namespaced_custom_object_status(
                    "ray.io",
                    "v1",
                    NAMESPACE,
                    "rayjobs",
                    rayjob_name(index),
                    {"status": {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}},
                )
                patched[index], patched_at[index] = time.monotonic(), time.time()

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    awaited = count + len(also_awaited)
    deadline = time.monotonic() + max(0.0, start - time.time()) + count / rate + timeout
    while len(resumed) < awaited and time.monotonic() < deadline:
        now, wall = time.monotonic(), time.time()
        for index in resumed_indexes(run_id) - resumed.keys():
            resumed[index], resumed_at[index] = now, wall
        time.sleep(0.05)
    driver.join(5)
    return {index: resumed[index] - patched[index] for index in resumed if index in patched}, patched_at, resumed_at


def run(
    waits: int,
    window: float,
    polling: int = 0,
    stages: tuple[int, ...] = (),
    rate: float = PATCHES_PER_SECOND,
    floor: int = 0,
) -> dict[str, Any]:
    """``waits`` RayJobTriggers and, as a baseline beside them, ``polling`` 5 s polling triggers (the
    two kinds interleaved, so both see the same load), deferred in ``stages`` (cumulative counts of
    triggers held, measured at each; the last is always all of them). With ``floor``, that many more
    triggers firing at the very instants the first ``floor`` RayJobTriggers' RayJobs are patched
    (bench/floor_trigger.py): Airflow's own hand-over, measured beside them."""
    total = waits + polling
    steps = sorted({*(s for s in stages if 0 < s < total), total})
    polling_indexes = set(range(1, 2 * polling, 2)) if polling <= waits else set(range(waits, total))
    home = Path(tempfile.mkdtemp(prefix="bench-triggerer-"))
    os.environ["KUBERAY_BENCH_WAITS"] = "0"  # the mapped task only (see bench/dags/bench_triggerer_scale.py)
    configure_airflow_home(home, {"bench": BENCH_DIR / "dags"})
    # SQLite's 5 s lock wait is too short on a loaded machine: the triggerer died on "database is locked".
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] += "?timeout=60"
    os.environ["AIRFLOW__TRIGGERER__CAPACITY"] = str(total + 100)
    # One triggerer, so no other to balance against: take up to 1,000 new triggers a loop, not Airflow's 50
    # (at 50 a loop, taking 10,000 took three minutes; what is measured is holding them, not taking them).
    os.environ["AIRFLOW__TRIGGERER__MAX_TRIGGER_TO_SELECT_PER_LOOP"] = "1000"
    os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = os.environ.get("KUBERAY_BENCH_TRIGGER_LOG_LEVEL", "WARNING")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH_DIR.parent), os.environ.get("PYTHONPATH")]))
    crds = Path(os.environ.get("KUBERAY_SHARED_DIR", BENCH_DIR.parent.parent / "shared" / "kuberay")) / "crds"
    with LocalControlPlane(crds_dir=crds, controller=False) as plane:
        kuberay_connection_env(Path(plane.kubeconfig_path))
        migrate_database(home)
        create_rayjobs(plane, total)
        counts = plane.server.request_counts  # type: ignore[union-attr]
        requests = lambda: sum(counts.values())  # noqa: E731 - nothing but the triggerer calls during a window
        log = (home / "triggerer.log").open("wb")
        triggerer = subprocess.Popen(
            [str(Path(sys.executable).parent / "airflow"), "triggerer", "--skip-serve-logs"],
            env=os.environ.copy(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            tree = ProcessTree(triggerer.pid)
            time.sleep(10)  # started: imports done, first heartbeats sent
            idle = steady_state(tree, window, requests)
            run_id, held, by_step = new_run(total + floor), 0, {}
            for step in steps:
                defer(run_id, {index: make_trigger(index, index in polling_indexes) for index in range(held, step)})
                taken_from, held = time.monotonic(), step
                wait_for(
                    functools.partial(all_assigned, held), 180 + held / 50, f"the triggerer to take {held} triggers"
                )
                taken = time.monotonic() - taken_from
                settled = settle(tree, timeout=180 + held / 20)
                time.sleep(10 if step == total else 5)  # the last ones loaded have opened their waits
                by_step[step] = steady_state(tree, window if step == total else min(window, 15.0), requests)
                by_step[step] |= {"taken_seconds": taken, "settled_seconds": settled}
            holding = by_step[total]
            start_at, moments = defer_floor(run_id, total, floor, polling_indexes, rate)
            latencies, patched_at, resumed_at = finish_all(
                plane, run_id, total, timeout=60, rate=rate, start_at=start_at, also_awaited=frozenset(moments)
            )
            peak_rss = max(holding["rss_mb"], tree.rss_mb())
        finally:
            triggerer.terminate()
            try:
                triggerer.wait(30)
            except subprocess.TimeoutExpired:
                triggerer.kill()
            log.close()
    polled = polling_indexes
    fired = fired_at(home)
    return {
        "fired_latencies": sorted(fired[t] - patched_at[t] for t in fired if t in patched_at and t not in polled),
        "polling_fired_latencies": sorted(fired[t] - patched_at[t] for t in fired if t in patched_at and t in polled),
        "waits": waits,
        "polling": polling,
        "idle": idle,
        "holding": holding,
        "holding_by_waits": by_step,
        "rate": rate,
        "peak_rss_mb": peak_rss,
        "latencies": sorted(v for k, v in latencies.items() if k not in polled),
        "polling_latencies": sorted(v for k, v in latencies.items() if k in polled),
        "latency_by_index": {k: v for k, v in latencies.items() if k not in polled},
        "floor_latencies": sorted(resumed_at[i] - moment for i, moment in moments.items() if i in resumed_at),
        "floor_fired_latencies": sorted(fired[i] - moment for i, moment in moments.items() if i in fired),
        "log": str(home / "triggerer.log"),
    }


def defer_floor(
    run_id: str, total: int, floor: int, polling_indexes: set[int], rate: float, lead: float = 15.0
) -> tuple[float | None, dict[int, float]]:
    """Map indexes ``total``.. deferred on triggers firing when the first ``floor`` RayJobTriggers' RayJobs
    will be patched, the patches starting ``lead`` s from now (time for the triggerer to take and start
    them). Returns that start (None without a floor) and each floor index's moment (wall clock)."""
    if not floor:
        return None, {}
    import datetime

    from bench.floor_trigger import ExactMomentTrigger

    start_at = time.time() + lead
    ours = [index for index in range(total) if index not in polling_indexes][:floor]
    moments = {total + slot: start_at + index / rate for slot, index in enumerate(ours)}
    utc = datetime.UTC
    defer(run_id, {i: ExactMomentTrigger(datetime.datetime.fromtimestamp(m, utc)) for i, m in moments.items()})
    wait_for(functools.partial(all_assigned, total + floor), lead, f"the triggerer to take {floor} floor triggers")
    return start_at, moments


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waits", type=int, default=1000)
    parser.add_argument("--polling", type=int, default=0, help="as many 5 s polling triggers beside them, the baseline")
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--stages", default="", help="comma-separated counts of waits to measure on the way up")
    parser.add_argument("--floor", type=int, default=0, help="as many triggers firing at the patches' instants")
    parser.add_argument("--rate", type=float, default=PATCHES_PER_SECOND, help="RayJobs finished per second")
    args = parser.parse_args(argv)
    stages = tuple(int(s) for s in args.stages.split(",") if s.strip())
    print(json.dumps(run(args.waits, args.window, args.polling, stages, args.rate, args.floor)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
