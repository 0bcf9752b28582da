"""Memory of the processes that follow a Ray job's log while the job prints without a newline:
``python -m bench.hostile_output [--mib 1024] [--paced-mib 30]`` prints a table and, last, one JSON line.

Two followers, each in a process of its own, their RSS sampled every 50 ms:

- the worker: ``RayJobOperator(cluster_selector=..., submit_via="sdk").execute()``, the SDK path straight
  to an existing RayCluster (``RayJobRunner.run_on_cluster``: the status polled, the log tailed); its
  log (stdout) is counted, each Ray log line a ``[ray] ...`` record;
- a real ``airflow triggerer`` (supervisor and trigger runner, both counted) running one
  ``RayJobTrigger(stream_logs=True)`` per RayJob, deferred as bench/triggerer_scale.py defers them, the
  RayJobs run by the local controller on the same RayCluster; the trigger's log file is measured.

Each first follows a one-line job (imports, clients, Ray's own start-up); then, per hostile job, RSS
before, peak while following, after. The jobs write "x" and never a newline: "tight" ``--mib`` MiB in
1 MiB blocks as fast as it can (1 GiB in a few seconds), "paced" ``--paced-mib`` MiB at 1 MiB/s. Ray's
dashboard reads a job's log with ``readline()`` and relays what one read returned as one websocket
message, dropping any over 4 MiB between its agent and its head (aiohttp's default limit), so only the
paced job's output reaches a follower. A real local Ray behind the local control plane, as in the
overhead benchmark; about four minutes, so not in ``bench/run``. Children run with the environment
given: ``PYTHONPATH=<an older tree>`` measures older code.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kuberay_provider.core.naming import identity_labels, run_key
from kuberay_provider.core.resources import RAYJOB
from kuberay_provider.core.spec import rayjob

PROJECT_ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = "default"
CLUSTER = "bench-hostile"
SAMPLE_SECONDS = 0.05
CHILD_TIMEOUT_SECONDS = 600.0


# Ray's dashboard relays what one read of the log returned as one websocket message and drops any over
# 4 MiB (aiohttp's default, between its agent and its head); it reads about once a second, so the paced
# job starts quiet (the first read comes after it) and then stays well under that.
PACED_MIB_PER_SECOND = 1
PACED_QUIET_SECONDS = 3


def hostile_entrypoint(mib: int, per_second: float | None = None) -> str:
    """A job printing ``mib`` MiB of "x" without a newline: as fast as it can, or ``per_second`` MiB a second
    (256 KiB at a time) after ``PACED_QUIET_SECONDS`` of silence."""
    if per_second:
        program = (
            f"import sys, time; time.sleep({PACED_QUIET_SECONDS}); b = 'x' * (1 << 18); w = sys.stdout.write; "
            f"f = sys.stdout.flush; [(w(b), f(), time.sleep({0.25 / per_second})) for _ in range({4 * mib})]"
        )
    else:
        program = (
            "import sys; b = 'x' * (1 << 20); w = sys.stdout.write; f = sys.stdout.flush; "
            f"[(w(b), f()) for _ in range({mib})]"
        )
    return shlex.join(["python", "-c", program])


def scenarios(mib: int, paced_mib: int) -> list[tuple[str, str]]:
    return [
        (f"tight {mib} MiB", hostile_entrypoint(mib)),
        (f"paced {paced_mib} MiB", hostile_entrypoint(paced_mib, PACED_MIB_PER_SECOND)),
    ]


QUIET_ENTRYPOINT = shlex.join(["python", "-c", "print('warm')"])


class RssSampler:
    """An RSS (``rss()``, bytes) every ``SAMPLE_SECONDS`` on a thread, per scenario; what it has is written
    to ``out`` each second, so a follower killed at the timeout still reports its peak."""

    def __init__(self, rss: Callable[[], int], out: Path) -> None:
        self.rss = rss
        self.out = out
        self.results: dict[str, dict[str, Any]] = {}
        self.current: dict[str, Any] = {}
        self.peak = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        last_write = 0.0
        while True:
            time.sleep(SAMPLE_SECONDS)
            with self._lock:
                self.peak = max(self.peak, self.rss())
                self.current["peak_mb"] = mb(self.peak)
                if time.monotonic() - last_write >= 1.0:
                    self._write()
                    last_write = time.monotonic()

    def _write(self) -> None:
        self.out.write_text(json.dumps(self.results))

    def begin(self, scenario: str) -> None:
        gc.collect()
        with self._lock:
            self.peak = self.rss()
            self.current = self.results[scenario] = {"before_mb": mb(self.peak), "started": time.monotonic()}
            self._write()

    def end(self, **values: Any) -> None:
        gc.collect()
        with self._lock:
            now = self.rss()
            started = self.current.pop("started")
            self.current.update(
                peak_mb=mb(max(self.peak, now)),
                after_mb=mb(now),
                seconds=round(time.monotonic() - started, 1),
                **values,
            )
            self._write()


def mb(size: float) -> float:
    return round(size / 2**20, 1)


@dataclass
class TaskInstance:
    """What RayJobOperator.execute() reads of Airflow's task instance, for a run outside a DAG."""

    run_id: str
    dag_id: str = "bench_hostile"
    task_id: str = "job"
    map_index: int = -1
    try_number: int = 1

    def xcom_push(self, key: str, value: object) -> None:
        pass


def _configure_airflow(home: Path, kubeconfig: str, dags: Path = PROJECT_ROOT / "dags") -> None:
    from kuberay_provider.airflow.devenv import configure_airflow_home, kuberay_connection_env

    configure_airflow_home(home, {"bench": dags})
    kuberay_connection_env(Path(kubeconfig), NAMESPACE)


def follow_as_worker(kubeconfig: str, mib: int, paced_mib: int, out: Path) -> None:
    import psutil

    _configure_airflow(Path(tempfile.mkdtemp(prefix="bench-hostile-worker-")), kubeconfig)
    from kuberay_provider.airflow.operators import RayJobOperator

    def execute(entrypoint: str) -> dict[str, Any]:
        operator = RayJobOperator(task_id="job", cluster_selector=CLUSTER, submit_via="sdk", entrypoint=entrypoint)
        return operator.execute({"ti": TaskInstance(run_id=f"hostile-{time.time_ns()}")})  # type: ignore[arg-type]

    execute(QUIET_ENTRYPOINT)
    process = psutil.Process()
    sampler = RssSampler(lambda: process.memory_info().rss, out)
    for scenario, entrypoint in scenarios(mib, paced_mib):
        sampler.begin(scenario)
        outcome = execute(entrypoint)
        sampler.end(job_status=outcome["job_status"])


def follow_in_triggerer(kubeconfig: str, mib: int, paced_mib: int, out: Path) -> None:
    """A real ``airflow triggerer`` (supervisor and trigger runner, RSS of both) running a
    ``RayJobTrigger(stream_logs=True)`` per RayJob, each deferred as bench.triggerer_scale defers them."""
    from bench.deferred_waits import plain_run
    from bench.triggerer_scale import ProcessTree, resumed_tasks, task_id, wait_for
    from kuberay_provider.airflow.devenv import migrate_database

    home = Path(tempfile.mkdtemp(prefix="bench-hostile-triggerer-"))
    os.environ["KUBERAY_BENCH_WAITS"] = str(1 + len(scenarios(mib, paced_mib)))  # tasks of the bench DAG
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
    _configure_airflow(home, kubeconfig, dags=PROJECT_ROOT / "bench" / "dags")
    migrate_database(home)
    from kuberay_provider.airflow.hooks import KubeRayHook

    kube = KubeRayHook().objects_client
    run_id = plain_run()
    with (home / "triggerer.log").open("wb") as log:
        triggerer = subprocess.Popen(
            [str(Path(sys.executable).parent / "airflow"), "triggerer", "--skip-serve-logs"],
            env=os.environ.copy(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            tree = ProcessTree(triggerer.pid)

            def follow(index: int, entrypoint: str) -> str:
                """The Ray job's status once the trigger fired."""
                name = f"hostile-{time.time_ns()}"
                kube.create(
                    rayjob(
                        name,
                        NAMESPACE,
                        labels=identity_labels(run_key("bench", name)),
                        entrypoint=entrypoint,
                        cluster_selector={"ray.io/cluster": CLUSTER},
                    )
                )
                _defer(run_id, task_id(index), name)
                wait_for(
                    lambda: task_id(index) in resumed_tasks(run_id), CHILD_TIMEOUT_SECONDS, f"RayJob {name}'s trigger"
                )
                return str(((kube.find(RAYJOB, NAMESPACE, name) or {}).get("status") or {}).get("jobStatus"))

            follow(0, QUIET_ENTRYPOINT)
            sampler = RssSampler(lambda: int(tree.rss_mb() * 2**20), out)
            for index, (scenario, entrypoint) in enumerate(scenarios(mib, paced_mib), start=1):
                sampler.begin(scenario)
                status = follow(index, entrypoint)
                shown = sum(
                    path.stat().st_size for path in home.glob(f"logs/**/task_id={task_id(index)}/*.trigger.*.log")
                )
                sampler.end(job_status=status, log_mib=mb(shown))
        finally:
            triggerer.terminate()
            try:
                triggerer.wait(30)
            except subprocess.TimeoutExpired:
                triggerer.kill()


def _defer(run_id: str, task: str, rayjob_name: str) -> None:
    """The task instance DEFERRED on a log-streaming RayJobTrigger, as Airflow's Execution API writes it."""
    from airflow.models.taskinstance import TaskInstance as TaskInstanceRow
    from airflow.models.trigger import Trigger
    from airflow.sdk import timezone
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    from bench.triggerer_scale import DAG_ID
    from kuberay_provider.airflow.triggers import RayJobTrigger

    with create_session() as session:
        row = Trigger.from_object(RayJobTrigger(rayjob_name, NAMESPACE, wait_for="terminal", stream_logs=True))
        session.add(row)
        session.flush()
        ti = session.scalar(
            select(TaskInstanceRow).where(
                TaskInstanceRow.dag_id == DAG_ID, TaskInstanceRow.run_id == run_id, TaskInstanceRow.task_id == task
            )
        )
        ti.try_number, ti.state, ti.trigger_id = 1, TaskInstanceState.DEFERRED, row.id
        ti.next_method, ti.next_kwargs, ti.start_date = "execute_complete", {}, timezone.utcnow()
        session.commit()


class OutputCounter:
    """Reads a follower's stdout (its log: one ``[ray] ...`` record per Ray log line) and counts it."""

    def __init__(self, stream: Any) -> None:
        self.bytes = 0
        self.ray_lines = 0
        self._stream = stream
        self._tail = b""
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while chunk := self._stream.read(1 << 20):
            self.bytes += len(chunk)
            window = self._tail + chunk
            self.ray_lines += window.count(b"[ray] ") - self._tail.count(b"[ray] ")
            self._tail = chunk[-8:]


def run_child(role: str, kubeconfig: Path, mib: int, paced_mib: int, workdir: Path) -> dict[str, Any]:
    """One follower in a process of its own; its stdout (its log, with the job's lines) is counted."""
    out, errors = workdir / f"{role}.json", workdir / f"{role}.stderr"
    command = [
        sys.executable,
        "-m",
        "bench.hostile_output",
        "--role",
        role,
        "--kubeconfig",
        str(kubeconfig),
        "--mib",
        str(mib),
        "--paced-mib",
        str(paced_mib),
        "--out",
        str(out),
    ]
    with errors.open("wb") as stderr:
        child = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=stderr)
        counter = OutputCounter(child.stdout)
        try:
            code: int | None = child.wait(CHILD_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
            code = None
        counter.thread.join(10)
    result: dict[str, Any] = {
        "scenarios": json.loads(out.read_text()) if out.exists() else {},
        "log_mib": round(counter.bytes / 2**20, 1),
        "ray_log_records": counter.ray_lines,
    }
    if code is None:
        result["unfinished"] = f"killed after {CHILD_TIMEOUT_SECONDS:.0f} s"
    elif code != 0:
        tail = errors.read_bytes()[-3000:].decode(errors="replace")
        raise RuntimeError(f"the {role} follower failed (exit {code}):\n{tail}")
    return result


def measure(mib: int, paced_mib: int) -> dict[str, Any]:
    from bench.benchmarks import crds_dir
    from kuberay_provider.core.kube.sync_client import RayObjectsClient
    from kuberay_provider.core.resources import RAYCLUSTER
    from kuberay_provider.core.spec import raycluster, simple_cluster_spec
    from kuberay_provider.local.plane import LocalControlPlane
    from kuberay_provider.local.ray_backend import LocalRayBackend

    backend = LocalRayBackend()
    asyncio.run(backend.start())
    try:
        with LocalControlPlane(crds_dir=crds_dir(), backend=backend) as plane, tempfile.TemporaryDirectory() as workdir:
            with plane.api_client() as api_client:
                kube = RayObjectsClient(api_client)
                kube.create(
                    raycluster(CLUSTER, NAMESPACE, base={"spec": simple_cluster_spec(image="rayproject/ray:2.60.0")})
                )
                for event in kube.watch(RAYCLUSTER, NAMESPACE, name=CLUSTER, timeout_seconds=120):
                    if (event.object.get("status") or {}).get("state") == "ready":
                        break
            kubeconfig = Path(plane.kubeconfig_path)
            return {
                role: run_child(role, kubeconfig, mib, paced_mib, Path(workdir)) for role in ("worker", "triggerer")
            }
    finally:
        asyncio.run(backend.close())


def _shown(numbers: dict[str, Any]) -> str:
    return f", {numbers['log_mib']} MiB in the trigger's log" if "log_mib" in numbers else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024, help="what the tight job prints, MiB (default 1024)")
    parser.add_argument(
        "--paced-mib",
        type=int,
        default=30,
        help=f"what the paced job prints at {PACED_MIB_PER_SECOND} MiB/s (default 30)",
    )
    parser.add_argument("--role", choices=["worker", "triggerer"], help=argparse.SUPPRESS)
    parser.add_argument("--kubeconfig", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role is not None:
        follow = follow_as_worker if args.role == "worker" else follow_in_triggerer
        follow(args.kubeconfig, args.mib, args.paced_mib, args.out)
        return 0
    result = measure(args.mib, args.paced_mib)
    for role, got in result.items():
        print(f"{role}{': ' + got['unfinished'] if 'unfinished' in got else ''}")
        for scenario, numbers in got["scenarios"].items():
            print(
                f"  {scenario:<16} RSS MB before {numbers.get('before_mb')}, peak {numbers.get('peak_mb')}, after "
                f"{numbers.get('after_mb')} ({numbers.get('seconds', '-')} s, {numbers.get('job_status', 'unfinished')}{_shown(numbers)})"
            )
        if got["ray_log_records"]:
            print(f"  its log (stdout): {got['log_mib']} MiB, {got['ray_log_records']} [ray] records")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
