"""Crash safety: RayJobOperator and ``@task.kuberay`` tries SIGKILLed at random points, then retried;
50 iterations.

Each try runs in its own process, forked as Airflow's supervisor forks a task (tests/support/task_zygote.py),
against a local control plane over HTTPS with the real KubeRay controller emulation. Ray itself is the
fast backend double with its Jobs REST API (the one real-Ray kill-and-retry is
tests/e2e/test_airflow_rayjob.py): a shipped function really runs there, in a process of its own. A try is
killed before its RayJob exists, right after the create, while the Ray job runs, once the RayJob is
terminal, or once the try has marked the RayJob consumed but not yet handed its outcome to Airflow; the
next try (of the same series: a retry, never a clear) must then end in the job's true state (a function's
retry returns its result, or raises its exception), with no RayJob created twice (a failed one may be
replaced by the retry: that is what a retry is for; a consumed one must not be, except a function's whose
cluster, and with it the result, the killed try had already released), one Ray job per RayJob, and no
RayCluster left once the cleanup is done.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kuberay_provider.core.job_request import RunIdentity
from kuberay_provider.core.naming import ANNOTATION_CONSUMED_BY_TRY, ANNOTATION_TRY_NUMBER
from kuberay_provider.local.controller import ControllerSettings, RayJobSettings
from kuberay_provider.local.plane import LocalControlPlane
from kuberay_provider.local.ray_backend import FakeRayBackend, JobScript
from tests.support import summary

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DAG_FILE = Path(__file__).resolve().parent / "dags" / "crash_safety.py"
DAG_ID, NAMESPACE = "kuberay_crash_safety", "default"
RAYJOBS, RAYCLUSTERS = ("ray.io", "rayjobs"), ("ray.io", "rayclusters")
PHASES = ("before_create", "after_create", "while_running", "after_terminal", "after_outcome_marked")
TASKS = ("succeeds", "fails", "function", "function_fails")  # each task meets each kill point in turn
FUNCTION_TASKS = ("function", "function_fails")
FUNCTION_RESULT = {
    "total": 42,
    "count": 3,
}  # what the DAG's functions return (its FUNCTION_RESULT; not imported: Airflow)
ITERATIONS = int(os.environ.get("KUBERAY_CRASH_ITERATIONS", "50"))
SEED = int(os.environ.get("KUBERAY_CRASH_SEED", str(time.time_ns() % 100_000)))
TERMINAL = {"Complete", "Failed"}
# The double answers at once, so the controller looks at a RayJob every 0.2 s instead of the plane's 1 s:
# the statuses (and so the kill points) come as they would, without a second of idle polling per step.
REQUEUE_SECONDS = 0.2
RUNNING_SECONDS = 0.8  # how long the double runs a job: four controller looks while RUNNING
# K8sJobMode's submitter: still late (the RayJob is Running before its Ray job exists, so a try killed then
# meets that race), but not the plane's 3 s + 1 s a real Pod takes, paid by every iteration.
SUBMITTER_START_SECONDS, SUBMITTER_EXIT_SECONDS = 0.5, 0.2

pytestmark = pytest.mark.timeout(900)


@dataclass
class Zygote:
    """The forking task runner, driven over its stdin/stdout (see tests/support/task_zygote.py)."""

    process: subprocess.Popen[str]
    answers: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()
        assert self.answer(120).get("ready"), "the crash-safety DAG did not load"

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("{"):
                self.answers.put(json.loads(line))
        self.answers.put({"gone": self.process.wait()})  # say so at once instead of timing out

    def answer(self, timeout: float) -> dict[str, Any]:
        try:
            return self.answers.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the task zygote said nothing for {timeout} s") from None

    def start(self, task_id: str, run_id: str, try_number: int, log: Path) -> int:
        assert self.process.stdin is not None
        self.process.stdin.write(
            json.dumps({"task_id": task_id, "run_id": run_id, "try_number": try_number, "log": str(log)}) + "\n"
        )
        self.process.stdin.flush()
        return int(self.answer(30)["pid"])

    def exit_code(self, pid: int, timeout: float) -> int:
        ended = self.answer(timeout)
        assert ended.get("pid") == pid, ended
        return int(ended["exit"])


@pytest.fixture(scope="module")
def crash_plane(crds_dir: Path) -> Iterator[tuple[LocalControlPlane, FakeRayBackend]]:
    backend = FakeRayBackend(default_script=JobScript(pending_seconds=0.1, running_seconds=RUNNING_SECONDS))
    backend.script_entrypoint(
        "CRASH-FAIL",
        JobScript(
            final_status="FAILED",
            pending_seconds=0.1,
            running_seconds=RUNNING_SECONDS,
            message="Job entrypoint command failed with exit code 3",
        ),
    )
    backend.jobs_api = True  # the Ray Jobs SDK submits functions to it
    settings = ControllerSettings(
        rayjob=RayJobSettings(requeue_seconds=REQUEUE_SECONDS),
        submitter_start_delay_seconds=SUBMITTER_START_SECONDS,
        submitter_exit_delay_seconds=SUBMITTER_EXIT_SECONDS,
    )
    with LocalControlPlane(crds_dir=crds_dir, backend=backend, controller_settings=settings) as plane:
        yield plane, backend


@pytest.fixture(scope="module")
def zygote(crash_plane: tuple[LocalControlPlane, FakeRayBackend]) -> Iterator[Zygote]:
    plane, _ = crash_plane
    connection = {
        "conn_type": "kuberay",
        "extra": {"kube_config_path": str(plane.kubeconfig_path), "namespace": NAMESPACE},
    }
    env = {**os.environ, "AIRFLOW_CONN_KUBERAY_CRASH": json.dumps(connection)}
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.task_zygote", str(DAG_FILE), DAG_ID],
        cwd=PROJECT_ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield Zygote(process)
    finally:
        process.kill()
        process.wait(30)


class Observer:
    """Reads the plane's store directly (in its loop): what a RayJob is now, and every event since a point."""

    def __init__(self, plane: LocalControlPlane, backend: FakeRayBackend) -> None:
        self.plane, self.backend = plane, backend

    def _in_loop(self, function: Callable[[], Any]) -> Any:
        return self.plane.run_in_loop(function)

    def rayjob(self, name: str) -> dict[str, Any] | None:
        return self._in_loop(lambda: self.plane.cluster.store.get(RAYJOBS, NAMESPACE, name))

    def clusters_of(self, rayjob_name: str) -> list[str]:
        stored = self._in_loop(lambda: self.plane.cluster.store.list(RAYCLUSTERS, NAMESPACE))
        return [c["metadata"]["name"] for c in stored if c["metadata"]["name"].startswith(rayjob_name)]

    def resource_version(self) -> int:
        return self._in_loop(lambda: self.plane.cluster.store.resource_version)

    def rayjob_events(self, name: str, since: int) -> list[Any]:
        def collect() -> list[Any]:
            events, subscription = self.plane.cluster.store.subscribe(RAYJOBS, NAMESPACE, since)
            self.plane.cluster.store.unsubscribe(subscription)
            return [event for event in events if event.object["metadata"]["name"] == name]

        return self._in_loop(collect)

    def submissions(self) -> int:
        """How many calls the backend has had: a point to count Ray job runs from."""
        return int(self._in_loop(lambda: len(self.backend.calls)))

    def ray_job_runs(self, rayjob_name: str, since: int) -> int:
        """Ray jobs run for the RayJob's clusters since call ``since``: one per (cluster, job id), as Ray
        refuses a second submission of an id on one cluster (an SDK job keeps its id on a replacing cluster)."""
        calls = self._in_loop(lambda: list(self.backend.calls[since:]))
        return len(
            {
                (call[1], call[2])
                for call in calls
                if call[0] == "submit_job" and call[1].startswith(f"{NAMESPACE}/{rayjob_name}")
            }
        )

    def delete_clusters_of(self, rayjob_name: str) -> None:
        """Delete the RayJob's RayClusters through the API, as KubeRay does once their TTL passed."""
        from kubernetes import client

        with self.plane.api_client() as api:
            for name in self.clusters_of(rayjob_name):
                client.CustomObjectsApi(api).delete_namespaced_custom_object(
                    "ray.io", "v1", NAMESPACE, "rayclusters", name
                )

    def ray_clusters(self) -> set[str]:
        return {str(key) for key in self._in_loop(lambda: list(self.backend.clusters))}


def phase_of(rayjob: dict[str, Any] | None) -> str:
    """Where a try was when it was killed, from its RayJob at that moment."""
    if rayjob is None:
        return "before_create"
    if ANNOTATION_CONSUMED_BY_TRY in (rayjob["metadata"].get("annotations") or {}):
        return "after_outcome_marked"
    status = rayjob.get("status") or {}
    if status.get("jobDeploymentStatus") in TERMINAL:
        return "after_terminal"
    return "while_running" if status.get("jobStatus") == "RUNNING" else "after_create"


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def kill_at(phase: str, observer: Observer, name: str, pid: int, rng: random.Random) -> None:
    """SIGKILL the try at ``phase`` (a random moment within it), as the OOM killer or a lost node would."""
    if phase == "before_create":
        time.sleep(rng.uniform(0.0, 0.25))
    elif phase == "after_create":
        wait_for(lambda: observer.rayjob(name) is not None, 30)
    elif phase == "while_running":
        wait_for(lambda: phase_of(observer.rayjob(name)) in ("while_running", "after_terminal"), 30)
        # Within the first third of the run, as before (0.5 s of a 1.5 s job): the controller looks every 0.2 s.
        time.sleep(rng.uniform(0.0, RUNNING_SECONDS / 3))
    elif phase == "after_terminal":
        wait_for(lambda: phase_of(observer.rayjob(name)) in ("after_terminal", "after_outcome_marked"), 30)
    else:
        wait_for(lambda: phase_of(observer.rayjob(name)) == "after_outcome_marked", 30)
    with contextlib.suppress(ProcessLookupError):  # it had already finished
        os.kill(pid, signal.SIGKILL)


@dataclass
class Tally:
    iterations: int = 0
    killed_in: Counter[str] = field(default_factory=Counter)
    functions_killed_in: Counter[str] = field(default_factory=Counter)
    finished_before_kill: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    creations: int = 0
    replacements_of_failed: int = 0
    reruns_of_released: int = 0
    duplicates: int = 0
    orphaned_clusters: int = 0


RERUN_REASON = "and with it the Ray job's log"  # how a retry says a succeeded function's result is gone


def outcome_of(output: str) -> Any:
    """What the try returned (run_task_try prints it as its last ``OUTCOME {...}`` line), None if nothing."""
    lines = [line for line in output.splitlines() if line.startswith("OUTCOME ")]
    return json.loads(lines[-1][len("OUTCOME ") :]) if lines else None


def retry_problems(task_id: str, retry_exit: int, output: str) -> list[str]:
    """What is wrong with the retry's end: each task's true outcome, a function's own result or exception."""
    if task_id == "succeeds" and (retry_exit != 0 or '"job_status": "SUCCEEDED"' not in output):
        return ["the retry did not succeed"]
    if task_id == "fails" and (retry_exit == 0 or "FAILED" not in output):
        return ["the retry did not fail with the job"]
    if task_id == "function" and (retry_exit != 0 or outcome_of(output) != FUNCTION_RESULT):
        return [f"the retry did not return the function's result {FUNCTION_RESULT} (got {outcome_of(output)!r})"]
    if task_id == "function_fails" and (retry_exit == 0 or "CRASH-FN-FAIL" not in output):
        return ["the retry did not fail with the function's own exception"]
    return []


def test_fifty_sigkilled_tries_and_their_retries_end_true_with_no_duplicate_and_no_orphan(
    crash_plane: tuple[LocalControlPlane, FakeRayBackend], zygote: Zygote, tmp_path: Path
) -> None:
    plane, backend = crash_plane
    observer, rng, tally = Observer(plane, backend), random.Random(SEED), Tally()
    problems: list[str] = []
    for iteration in range(ITERATIONS):
        phase = PHASES[iteration % len(PHASES)]
        task_id = TASKS[(iteration // len(PHASES)) % len(TASKS)]
        run_id = f"crash-{SEED}-{iteration}"
        name = RunIdentity(DAG_ID, task_id, run_id, -1).rayjob_name
        since, calls_before = observer.resource_version(), observer.submissions()
        first_log, retry_log = tmp_path / f"{iteration}-try1.log", tmp_path / f"{iteration}-try2.log"

        pid = zygote.start(task_id, run_id, 1, first_log)
        kill_at(phase, observer, name, pid, rng)
        killed_phase = phase_of(observer.rayjob(name))
        first_exit = zygote.exit_code(pid, 60)
        killed = first_exit == -signal.SIGKILL
        if killed:
            tally.killed_in[killed_phase] += 1
            tally.functions_killed_in[killed_phase] += task_id in FUNCTION_TASKS
        else:
            tally.finished_before_kill += 1
        retry_exit = zygote.exit_code(zygote.start(task_id, run_id, 2, retry_log), 120)

        where = f"iteration {iteration} ({task_id}, killed {phase}/{killed_phase}, seed {SEED})"
        retry_output = retry_log.read_text()
        tally.iterations += 1
        tally.outcomes[f"{task_id} {'succeeded' if retry_exit == 0 else 'failed'}"] += 1
        problems += [
            f"{where}: {problem}:\n{retry_output[-2000:]}"
            for problem in retry_problems(task_id, retry_exit, retry_output)
        ]
        if (
            task_id == "succeeds"
            and killed
            and killed_phase == "after_outcome_marked"
            and "Re-attached to RayJob" not in retry_output
        ):
            problems.append(
                f"{where}: the retry did not re-attach to the RayJob the killed try had marked:\n{retry_output[-2000:]}"
            )

        events = observer.rayjob_events(name, since)
        created = [event for event in events if event.type == "ADDED"]
        tally.creations += len(created)
        # A try that read a function's result released its cluster: its retry (a worker that died before
        # Airflow recorded the success) finds the result gone and runs the function again, saying why.
        released = task_id == "function" and (not killed or killed_phase == "after_outcome_marked")
        for earlier, later in itertools.pairwise(created):
            # A second RayJob is allowed only as the retry replacing one whose job had failed (or, above, released).
            final = [
                e.object.get("status") or {}
                for e in events
                if e.object["metadata"]["uid"] == earlier.object["metadata"]["uid"]
            ]
            failed_first = any(status.get("jobDeploymentStatus") == "Failed" for status in final)
            by_retry = later.object["metadata"].get("annotations", {}).get(ANNOTATION_TRY_NUMBER) == "2"
            if failed_first and by_retry:
                tally.replacements_of_failed += 1
            elif released and by_retry and RERUN_REASON in retry_output:
                tally.reruns_of_released += 1
            else:
                tally.duplicates += 1
                problems.append(f"{where}: RayJob {name} was created again although the first had not failed")
        if not created:
            problems.append(f"{where}: no RayJob was ever created")
        runs = observer.ray_job_runs(name, calls_before)
        if runs != len(created):
            problems.append(f"{where}: {runs} Ray job run(s) for {len(created)} RayJob(s)")
        if (
            task_id == "function"
            and killed
            and killed_phase != "after_outcome_marked"
            and (runs, len(created)) != (1, 1)
        ):
            problems.append(
                f"{where}: the function ran {runs} time(s) in {len(created)} RayJob(s) for one result, not once"
            )

        # KubeRay deletes the cluster once the job ends (a function's once its try read the result), and
        # with a replaced RayJob.
        if not wait_for(lambda name=name: not observer.clusters_of(name), 15):
            tally.orphaned_clusters += 1
            problems.append(f"{where}: RayCluster(s) left: {observer.clusters_of(name)}")

    leaked_ray_clusters = observer.ray_clusters()
    summary.add(
        "crash safety",
        (
            f"{tally.iterations} iterations (seed {SEED}): killed before create {tally.killed_in['before_create']}, "
            f"after create {tally.killed_in['after_create']}, while running {tally.killed_in['while_running']}, "
            f"after terminal {tally.killed_in['after_terminal']}, after the outcome was marked but not reported "
            f"{tally.killed_in['after_outcome_marked']} (of which @task.kuberay: {dict(tally.functions_killed_in)}), "
            f"finished before the kill {tally.finished_before_kill}; retries: {dict(tally.outcomes)}; RayJobs created "
            f"{tally.creations} ({tally.replacements_of_failed} replacing a failed one, {tally.reruns_of_released} re-running "
            f"a function whose released cluster took its result), duplicates {tally.duplicates}, orphaned RayClusters "
            f"{tally.orphaned_clusters}, Ray clusters left in the backend {len(leaked_ray_clusters)}"
        ),
    )
    assert not problems, "\n".join(problems[:10])
    assert not leaked_ray_clusters, leaked_ray_clusters
    assert tally.iterations == ITERATIONS
    # Every kill point was hit (the after-terminal one may lose the race to a try that is already done; the
    # DAG's operators hold the marked-but-unreported window open for REPORT_SECONDS), functions included.
    assert all(tally.killed_in[phase] for phase in (*PHASES[:3], "after_outcome_marked")), tally.killed_in
    assert all(tally.functions_killed_in[phase] for phase in PHASES[:3]), tally.functions_killed_in


# --- a function's result outlives a dead worker ---------------------------------------------------------


def killed_while_running_then_ended(observer: Observer, zygote: Zygote, task_id: str, run_id: str, log: Path) -> str:
    """Try 1 runs the function and is SIGKILLed while it runs; the job goes on to succeed with no try
    watching (what a worker dying after the job's success leaves). Returns the RayJob's name."""
    name = RunIdentity(DAG_ID, task_id, run_id, -1).rayjob_name
    pid = zygote.start(task_id, run_id, 1, log)
    assert wait_for(lambda: phase_of(observer.rayjob(name)) == "while_running", 60), log.read_text()[-2000:]
    os.kill(pid, signal.SIGKILL)
    assert zygote.exit_code(pid, 30) == -signal.SIGKILL
    assert wait_for(lambda: ((observer.rayjob(name) or {}).get("status") or {}).get("jobStatus") == "SUCCEEDED", 60)
    return name


def test_a_function_retried_after_its_clusters_ttl_passed_still_returns_its_result(
    crash_plane: tuple[LocalControlPlane, FakeRayBackend], zygote: Zygote, tmp_path: Path
) -> None:
    """cleanup="delete_cluster_after:1", the worker gone once the job succeeded, the retry 4 s later (KubeRay's
    TTL plus its 2 s requeue buffer): the cluster was held for the result, the retry re-attaches and reads it."""
    observer, run_id = Observer(*crash_plane), f"ttl-{SEED}"
    calls_before = observer.submissions()
    name = killed_while_running_then_ended(observer, zygote, "function_ttl", run_id, tmp_path / "try1.log")
    time.sleep(4.0)
    retry_exit = zygote.exit_code(zygote.start("function_ttl", run_id, 2, tmp_path / "try2.log"), 120)
    output = (tmp_path / "try2.log").read_text()
    assert retry_exit == 0 and outcome_of(output) == FUNCTION_RESULT, output[-3000:]
    assert "Re-attached to RayJob" in output
    assert observer.ray_job_runs(name, calls_before) == 1  # the function ran once: its result was read, not redone
    # Once read, the cleanup the task chose applies: 1 s after the job, long past.
    assert wait_for(lambda: not observer.clusters_of(name), 15), observer.clusters_of(name)


def test_a_function_whose_result_went_with_its_cluster_is_run_again_by_the_retry(
    crash_plane: tuple[LocalControlPlane, FakeRayBackend], zygote: Zygote, tmp_path: Path
) -> None:
    """The worker gone once the job succeeded, and the cluster (its log, the result) gone before the retry,
    as when no retry came within the hold: the retry replaces the succeeded RayJob and runs the function
    again instead of failing for a result nobody can read."""
    observer, run_id = Observer(*crash_plane), f"gone-{SEED}"
    calls_before = observer.submissions()
    name = killed_while_running_then_ended(observer, zygote, "function", run_id, tmp_path / "try1.log")
    observer.delete_clusters_of(name)
    assert wait_for(lambda: not observer.clusters_of(name), 15)
    retry_exit = zygote.exit_code(zygote.start("function", run_id, 2, tmp_path / "try2.log"), 120)
    output = (tmp_path / "try2.log").read_text()
    assert retry_exit == 0 and outcome_of(output) == FUNCTION_RESULT, output[-3000:]
    assert "Running the job anew" in output and RERUN_REASON in output, output[-3000:]
    assert observer.ray_job_runs(name, calls_before) == 2
    assert ((observer.rayjob(name) or {}).get("metadata") or {}).get("annotations", {}).get(
        ANNOTATION_TRY_NUMBER
    ) == "2"
    assert wait_for(lambda: not observer.clusters_of(name), 15), observer.clusters_of(name)
