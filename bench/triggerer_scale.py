"""Triggerer scale: N deferred RayJob waits in one real ``airflow triggerer`` process.

Run by ``bench.benchmarks`` in a process of its own (Airflow reads its configuration once per process):
``python -m bench.triggerer_scale --waits 1000 --window 30 [--stages 100] [--rate 50]`` prints one JSON line.

What it does, against a local control plane without controller or Ray (the benchmark drives each
RayJob's status itself, so Ray is not what is measured):
  1. N RayJobs, Running; an ``airflow triggerer`` on a fresh SQLite home; its idle RSS and CPU over the
     window are the baseline.
  2. N task instances deferred on N RayJobTriggers, written as the Execution API writes a deferral;
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

from kuberay_provider.airflow.devenv import configure_airflow_home, kuberay_connection_env, migrate_database
from kuberay_provider.core.kube.sync_client import RayObjectsClient
from kuberay_provider.local.plane import LocalControlPlane

BENCH_DIR = Path(__file__).resolve().parent
DAG_ID = "bench_triggerer_scale"
NAMESPACE = "default"
PATCHES_PER_SECOND = 50


def rayjob_name(index: int) -> str:
    return f"bench-wait-{index:04d}"


def task_id(index: int) -> str:
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


def create_rayjobs(plane: LocalControlPlane, count: int) -> None:
    from kubernetes import client

    from kuberay_provider.core.naming import identity_labels, run_key
    from kuberay_provider.core.spec import rayjob, simple_cluster_spec

    with plane.api_client() as api_client:
        kube = RayObjectsClient(api_client)
        custom = client.CustomObjectsApi(api_client)
        for index in range(count):
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
            custom.patch_namespaced_custom_object_status(
                "ray.io",
                "v1",
                NAMESPACE,
                "rayjobs",
                name,
                {"status": {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}},
            )


def make_trigger(index: int, polling: bool) -> Any:
    if polling:
        from bench.polling_trigger import PollingRayJobTrigger

        return PollingRayJobTrigger(rayjob_name(index), NAMESPACE)
    from kuberay_provider.airflow.triggers import RayJobTrigger

    return RayJobTrigger(rayjob_name(index), NAMESPACE, wait_for="terminal")


def new_run() -> str:
    """A DAG run of the bench DAG, its task instances not yet deferred. Returns the run id."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
    from airflow.models.dagrun import DagRun, get_or_create_dagrun
    from airflow.sdk import timezone
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.utils.session import create_session
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    manager = DagBundlesManager()
    manager.sync_bundles_to_db()
    bundle = manager.get_bundle("bench")
    bag = BundleDagBag(dag_folder=bundle.path, bundle_path=bundle.path, bundle_name=bundle.name)
    sync_bag_to_db(bag, bundle.name, bundle.version)
    dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(bag.dags[DAG_ID]))
    now = timezone.utcnow()
    run_id = DagRun.generate_run_id(run_type=DagRunType.MANUAL, logical_date=None, run_after=now)
    with create_session() as session:
        get_or_create_dagrun(
            dag=dag,
            run_id=run_id,
            logical_date=None,
            data_interval=None,
            run_after=now,
            conf=None,
            triggered_by=DagRunTriggeredByType.TEST,
            triggering_user_name="bench",
            start_date=now,
            session=session,
        )
    return run_id


def defer(run_id: str, indexes: range, polling: set[int]) -> None:
    """Every task instance of ``indexes`` DEFERRED on its own trigger (RayJobTrigger, or for the indexes in
    ``polling`` the 5 s polling baseline), written as Airflow's Execution API writes a deferral."""
    from airflow.models.dagrun import DagRun
    from airflow.models.trigger import Trigger
    from airflow.sdk import timezone
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    now = timezone.utcnow()
    with create_session() as session:
        run = session.scalars(select(DagRun).where(DagRun.dag_id == DAG_ID, DagRun.run_id == run_id)).one()
        by_task = {ti.task_id: ti for ti in run.get_task_instances(session=session)}
        for index in indexes:
            row = Trigger.from_object(make_trigger(index, index in polling))
            session.add(row)
            session.flush()
            ti = by_task[task_id(index)]
            ti.try_number, ti.state, ti.trigger_id = 1, TaskInstanceState.DEFERRED, row.id
            ti.next_method, ti.next_kwargs, ti.start_date = "execute_complete", {}, now
        session.commit()


def count_where(query: Callable[[Any], Any]) -> int:
    from airflow.utils.session import create_session

    with create_session() as session:
        return int(session.scalar(query(session)) or 0)


def assigned_triggers() -> int:
    from airflow.models.trigger import Trigger
    from sqlalchemy import func, select

    return count_where(lambda _: select(func.count()).select_from(Trigger).where(Trigger.triggerer_id.is_not(None)))


def resumed_tasks(run_id: str) -> set[str]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    with create_session() as session:
        query = select(TaskInstance.task_id).where(
            TaskInstance.dag_id == DAG_ID,
            TaskInstance.run_id == run_id,
            TaskInstance.state == TaskInstanceState.SCHEDULED,
        )
        return set(session.scalars(query))


def all_assigned(count: int) -> bool:
    return assigned_triggers() == count


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what} after {timeout} s")
        time.sleep(0.5)


def finish_all(
    plane: LocalControlPlane, run_id: str, count: int, timeout: float, rate: float = PATCHES_PER_SECOND
) -> tuple[dict[str, float], dict[str, float]]:
    """Turn every RayJob Complete, ``rate`` a second. By task id: the seconds until it left DEFERRED, and the
    wall-clock time of its patch (to compare with the triggerer's log)."""
    import threading

    from kubernetes import client

    patched: dict[str, float] = {}
    patched_at: dict[str, float] = {}
    resumed: dict[str, float] = {}

    def drive() -> None:
        next_at = time.monotonic()
        with plane.api_client() as api_client:
            custom = client.CustomObjectsApi(api_client)
            for index in range(count):
                custom.patch_namespaced_custom_object_status(
                    "ray.io",
                    "v1",
                    NAMESPACE,
                    "rayjobs",
                    rayjob_name(index),
                    {"status": {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}},
                )
                patched[task_id(index)], patched_at[task_id(index)] = time.monotonic(), time.time()
                time.sleep(max(0.0, next_at - time.monotonic()))
                next_at += 1 / rate

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    deadline = time.monotonic() + count / rate + timeout
    while len(resumed) < count and time.monotonic() < deadline:
        now = time.monotonic()
        for task in resumed_tasks(run_id) - resumed.keys():
            resumed[task] = now
        time.sleep(0.05)
    driver.join(5)
    return {task: resumed[task] - patched[task] for task in resumed if task in patched}, patched_at


def fired_at(home: Path) -> dict[str, float]:
    """By task id, when its trigger fired, from the triggerer's per-task logs (INFO level only)."""
    import datetime as dt

    fired: dict[str, float] = {}
    for path in home.glob(f"logs/dag_id={DAG_ID}/*/task_id=*/*.trigger.*.log"):
        for line in path.read_text(errors="replace").splitlines():
            if '"Trigger fired event"' in line:
                stamp = json.loads(line)["timestamp"].replace("Z", "+00:00")
                fired[path.parent.name.removeprefix("task_id=")] = dt.datetime.fromisoformat(stamp).timestamp()
    return fired


def run(
    waits: int, window: float, polling: int = 0, stages: tuple[int, ...] = (), rate: float = PATCHES_PER_SECOND
) -> dict[str, Any]:
    """``waits`` RayJobTriggers and, as a baseline beside them, ``polling`` 5 s polling triggers (the
    two kinds interleaved, so both see the same load), deferred in ``stages`` (cumulative counts of
    triggers held, measured at each; the last is always all of them)."""
    total = waits + polling
    steps = sorted({*(s for s in stages if 0 < s < total), total})
    polling_indexes = set(range(1, 2 * polling, 2)) if polling <= waits else set(range(waits, total))
    home = Path(tempfile.mkdtemp(prefix="bench-triggerer-"))
    os.environ["KUBERAY_BENCH_WAITS"] = str(total)
    configure_airflow_home(home, {"bench": BENCH_DIR / "dags"})
    os.environ["AIRFLOW__TRIGGERER__CAPACITY"] = str(total + 100)
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
            run_id, held, by_step = new_run(), 0, {}
            for step in steps:
                defer(run_id, range(held, step), polling_indexes)
                held = step
                wait_for(
                    functools.partial(all_assigned, held), 180 + held / 50, f"the triggerer to take {held} triggers"
                )
                time.sleep(10 if step == total else 5)  # the last ones loaded have opened their waits
                by_step[step] = steady_state(tree, window if step == total else min(window, 15.0), requests)
            holding = by_step[total]
            latencies, patched_at = finish_all(plane, run_id, total, timeout=60, rate=rate)
            peak_rss = max(holding["rss_mb"], tree.rss_mb())
        finally:
            triggerer.terminate()
            try:
                triggerer.wait(30)
            except subprocess.TimeoutExpired:
                triggerer.kill()
            log.close()
    polled = {task_id(index) for index in polling_indexes}
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
        "log": str(home / "triggerer.log"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waits", type=int, default=1000)
    parser.add_argument("--polling", type=int, default=0, help="as many 5 s polling triggers beside them, the baseline")
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--stages", default="", help="comma-separated counts of waits to measure on the way up")
    parser.add_argument("--rate", type=float, default=PATCHES_PER_SECOND, help="RayJobs finished per second")
    args = parser.parse_args(argv)
    stages = tuple(int(s) for s in args.stages.split(",") if s.strip())
    print(json.dumps(run(args.waits, args.window, args.polling, stages, args.rate)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
