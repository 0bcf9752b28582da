"""RayJob state sequences, as a watch sees them, against KubeRay v1.7.0's rayjob_controller.go.

One LocalControlPlane (the real local API server with the emulated KubeRay operator) on the fast Ray
double serves the whole module. Every scenario drives one RayJob in its own namespace through the official
``kubernetes`` client and records the watch of rayjobs and rayclusters in that namespace. The module's fixture
starts all scenarios at once on threads of their own (each is mostly seconds of waiting, for the
submitter above all), and each test then asserts on its own scenario's recording: the exact sequence of distinct
(jobDeploymentStatus, jobStatus, reason), consecutive duplicates collapsed, plus the facts around it.

The plane keeps KubeRay's timing defaults for the submitter: it submits the Ray job 3 s after Running
and is seen to finish 1 s after the Ray job ends. Go references are to
ray-operator/controllers/ray/rayjob_controller.go at v1.7.0.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client, watch

from kuberay_provider.local.controller.reconciler import (
    DEFAULT_SUBMITTER_EXIT_DELAY_SECONDS,
    DEFAULT_SUBMITTER_START_DELAY_SECONDS,
)
from kuberay_provider.local.plane import LocalControlPlane
from kuberay_provider.local.ray_backend import FakeRayBackend, JobScript

pytestmark = pytest.mark.timeout(180)

T = TypeVar("T")
State = tuple[str, str, str]  # (jobDeploymentStatus, jobStatus, reason)
GROUP, VERSION = "ray.io", "v1"
WAIT = 40.0  # the longest any single wait may take; a scenario normally needs a few seconds per step

# The double's Ray jobs, chosen by a marker in the entrypoint. Every status is polled at least once:
# PENDING by the pass that submits, RUNNING by the next poll (the controller requeues every 1 s), and the
# terminal status while the submitter has not been seen to exit (1 s).
PENDING_SECONDS, RUNNING_SECONDS = 0.5, 2.0
SUCCEEDS = JobScript(pending_seconds=PENDING_SECONDS, running_seconds=RUNNING_SECONDS)
FAILS = JobScript(
    final_status="FAILED",
    pending_seconds=PENDING_SECONDS,
    running_seconds=RUNNING_SECONDS,
    message="Job entrypoint command failed with exit code 1",
)
RUNS_ON = JobScript(final_status=None, pending_seconds=PENDING_SECONDS)  # RUNNING until stopped
SCRIPTS = {"APP-FAIL": FAILS, "RUNS-ON": RUNS_ON}


def cluster_spec() -> dict[str, Any]:
    container = {
        "name": "ray-head",
        "image": "rayproject/ray:2.60.0",
        "ports": [
            {"containerPort": 6379, "name": "gcs-server"},
            {"containerPort": 8265, "name": "dashboard"},
            {"containerPort": 10001, "name": "client"},
        ],
    }
    worker = {"name": "ray-worker", "image": "rayproject/ray:2.60.0"}
    return {
        "rayVersion": "2.60.0",
        "headGroupSpec": {"rayStartParams": {}, "template": {"spec": {"containers": [container]}}},
        "workerGroupSpecs": [
            {
                "groupName": "workers",
                "replicas": 1,
                "minReplicas": 0,
                "maxReplicas": 2,
                "rayStartParams": {},
                "template": {"spec": {"containers": [worker]}},
            }
        ],
    }


def rayjob(name: str, marker: str = "OK", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"entrypoint": f"python -c 'print(1)' # {marker}", "rayClusterSpec": cluster_spec()}
    body.update(spec)
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "RayJob", "metadata": {"name": name}, "spec": body}


def state_of(obj: Mapping[str, Any]) -> State:
    status = obj.get("status") or {}
    return (status.get("jobDeploymentStatus", ""), status.get("jobStatus", ""), status.get("reason", ""))


def distinct(states: list[State]) -> list[State]:
    """Collapse consecutive duplicates: writes that changed other fields only look the same here."""
    collapsed: list[State] = []
    for state in states:
        if not collapsed or collapsed[-1] != state:
            collapsed.append(state)
    return collapsed


def epoch(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


# -- watching --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One watch event and the wall-clock time it arrived."""

    at: float
    type: str
    obj: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def rv(self) -> int:
        """The store's resourceVersion is one counter for all kinds: it orders events across watches."""
        return int(self.obj["metadata"]["resourceVersion"])

    @property
    def status(self) -> dict[str, Any]:
        return self.obj.get("status") or {}

    @property
    def state(self) -> State:
        return state_of(self.obj)


class WatchLog:
    """Every event of one custom resource in one namespace from a resourceVersion on, kept in order."""

    def __init__(self, api: client.CustomObjectsApi, namespace: str, plural: str, since: str) -> None:
        self.api, self.namespace, self.plural, self.since = api, namespace, plural, since
        self.events: list[Seen] = []
        self.error: BaseException | None = None
        self.stopped = False
        self.changed = threading.Condition()
        self.watch = watch.Watch()
        threading.Thread(target=self.run, name=f"watch-{namespace}-{plural}", daemon=True).start()

    def run(self) -> None:
        try:
            while not self.stopped:  # the server ends a watch after timeout_seconds: resume where it was
                for event in self.watch.stream(
                    self.api.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self.namespace,
                    self.plural,
                    resource_version=self.since,
                    timeout_seconds=30,
                ):
                    if event["type"] == "ERROR":
                        raise AssertionError(f"watch of {self.plural} failed: {event['object']}")
                    seen = Seen(time.time(), event["type"], event["object"])
                    with self.changed:
                        self.events.append(seen)
                        self.since = seen.obj["metadata"]["resourceVersion"]
                        self.changed.notify_all()
        except BaseException as error:
            if not self.stopped:
                with self.changed:
                    self.error = error
                    self.changed.notify_all()

    def stop(self) -> None:
        self.stopped = True
        self.watch.stop()

    def wait_for(
        self, predicate: Callable[[Seen], bool], what: str, timeout: float = WAIT, after: Seen | None = None
    ) -> Seen:
        """The first event (after ``after``, if given) that satisfies ``predicate``."""
        deadline = time.monotonic() + timeout
        with self.changed:
            start = 0 if after is None else next(i for i, seen in enumerate(self.events) if seen is after) + 1
            while True:
                for seen in self.events[start:]:
                    if predicate(seen):
                        return seen
                start = len(self.events)
                if self.error is not None:
                    raise AssertionError(f"{self.namespace}: the watch broke while waiting for {what}") from self.error
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"{self.namespace}: no {what} within {timeout} s; {self.plural} seen: "
                        f"{[(s.type, s.name, s.state) for s in self.events]}"
                    )
                self.changed.wait(left)

    def snapshot(self) -> list[Seen]:
        with self.changed:
            return list(self.events)


# -- one scenario's RayJob ---------------------------------------------------------------------------


@dataclass
class Run:
    """One RayJob in its own namespace, with the watches of its namespace's rayjobs and rayclusters."""

    plane: LocalControlPlane
    backend: FakeRayBackend
    namespace: str
    name: str
    api: client.CustomObjectsApi
    jobs: WatchLog
    clusters: WatchLog
    notes: dict[str, Any] = field(default_factory=dict)

    def job_events(self) -> list[Seen]:
        return [s for s in self.jobs.snapshot() if s.name == self.name]

    def states(self) -> list[State]:
        return distinct([s.state for s in self.job_events()])

    def until(
        self, predicate: Callable[[Seen], bool], what: str, timeout: float = WAIT, after: Seen | None = None
    ) -> Seen:
        return self.jobs.wait_for(lambda s: s.name == self.name and predicate(s), what, timeout, after)

    def until_state(self, state: State, timeout: float = WAIT, after: Seen | None = None) -> Seen:
        return self.until(lambda s: s.state == state, f"RayJob {self.name} in {state}", timeout, after)

    def cluster_event(self, type_: str, cluster: str, timeout: float = WAIT) -> Seen:
        return self.clusters.wait_for(
            lambda s: s.type == type_ and s.name == cluster, f"{type_} of RayCluster {cluster}", timeout
        )

    def cluster_deleted_within(self, cluster: str, seconds: float) -> bool:
        """Whether the cluster went within ``seconds`` (used only to show that it stays)."""
        try:
            self.cluster_event("DELETED", cluster, seconds)
        except AssertionError:
            return False
        return True

    def patch_spec(self, **spec: Any) -> None:
        self.api.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, "rayjobs", self.name, {"spec": spec})

    def current(self) -> dict[str, Any]:
        return self.api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, "rayjobs", self.name)

    def in_plane(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run a coroutine of the backend on the plane's event loop, where the backend lives."""
        result: concurrent.futures.Future[T] = concurrent.futures.Future()

        def finished(task: asyncio.Future[T]) -> None:
            error = task.exception()
            if error is not None:
                result.set_exception(error)
            else:
                result.set_result(task.result())

        self.plane.run_in_loop(lambda: asyncio.ensure_future(make()).add_done_callback(finished))
        return result.result(timeout=10)

    def job_info_calls(self, cluster: str, job_id: str) -> int:
        """How often the controller asked Ray about the job on that cluster: each Running pass asks once."""
        call = ("job_info", f"{self.namespace}/{cluster}", job_id)
        return self.plane.run_in_loop(lambda: sum(1 for made in self.backend.calls if made == call))

    def close(self) -> None:
        self.jobs.stop()
        self.clusters.stop()
        self.api.api_client.close()


class Scenarios:
    """Starts each scenario on its own thread at once; a test waits for its own."""

    def __init__(self, plane: LocalControlPlane, backend: FakeRayBackend) -> None:
        self.plane, self.backend = plane, backend
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=len(DRIVERS), thread_name_prefix="scenario")
        self.runs: list[Run] = []
        self.lock = threading.Lock()
        self.futures = {name: self.pool.submit(driver, self) for name, driver in DRIVERS.items()}

    def start(self, namespace: str, body: dict[str, Any], before: Callable[[Run], None] | None = None) -> Run:
        """A namespace, watches from its current resourceVersion on, then the RayJob."""
        api_client = self.plane.api_client()
        client.CoreV1Api(api_client).create_namespace({"metadata": {"name": namespace}})
        api = client.CustomObjectsApi(api_client)
        since = api.list_namespaced_custom_object(GROUP, VERSION, namespace, "rayjobs")["metadata"]["resourceVersion"]
        run = Run(
            self.plane,
            self.backend,
            namespace,
            body["metadata"]["name"],
            api,
            WatchLog(api, namespace, "rayjobs", since),
            WatchLog(api, namespace, "rayclusters", since),
        )
        with self.lock:
            self.runs.append(run)
        if before is not None:
            before(run)
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, "rayjobs", body)
        return run

    def result(self, name: str) -> Run:
        return self.futures[name].result(timeout=150)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        for run in self.runs:
            run.close()


# -- the scenarios (each runs on its own thread and returns its recording) ----------------------------


def drive_success(s: Scenarios) -> Run:
    run = s.start("seq-success", rayjob("success", shutdownAfterJobFinishes=True))
    complete = run.until_state(("Complete", "SUCCEEDED", ""))
    run.notes["cluster_deleted"] = run.cluster_event("DELETED", complete.status["rayClusterName"], 10)
    run.notes["after_deletion"] = run.current()
    return run


def drive_app_failure(s: Scenarios) -> Run:
    run = s.start("seq-app-failure", rayjob("app-failure", "APP-FAIL"))
    run.until_state(("Failed", "FAILED", "AppFailed"))
    return run


DEADLINE = 7


def drive_deadline(s: Scenarios) -> Run:
    # From startTime (whole seconds, so up to 1 s early): well after the submitter's 3 s and the first
    # RUNNING poll (about 4 s after Initializing); the job itself would run on.
    run = s.start("seq-deadline", rayjob("deadline", "RUNS-ON", activeDeadlineSeconds=DEADLINE, backoffLimit=1))
    run.until(lambda e: e.status.get("jobDeploymentStatus") == "Failed", "Failed")
    return run


def drive_retry(s: Scenarios) -> Run:
    run = s.start("seq-retry", rayjob("retry", "APP-FAIL", backoffLimit=1))
    run.until(lambda e: e.status.get("jobDeploymentStatus") == "Failed", "Failed", timeout=2 * WAIT)
    return run


def drive_retry_fixed_job_id(s: Scenarios) -> Run:
    run = s.start("seq-retry-job-id", rayjob("retry", "APP-FAIL", backoffLimit=1, jobId="seq-retry-fixed-id"))
    run.until(lambda e: e.status.get("jobDeploymentStatus") == "Failed", "Failed", timeout=2 * WAIT)
    return run


def drive_suspend_resume(s: Scenarios) -> Run:
    run = s.start("seq-suspend", rayjob("suspend", shutdownAfterJobFinishes=True))
    running = run.until_state(("Running", "RUNNING", ""))
    run.patch_spec(suspend=True)
    run.until_state(("Suspended", "", ""), after=running)
    run.patch_spec(suspend=False)
    complete = run.until_state(("Complete", "SUCCEEDED", ""))
    run.cluster_event("DELETED", complete.status["rayClusterName"], 10)
    return run


def drive_interactive_suspend_resume(s: Scenarios) -> Run:
    body = rayjob(
        "interactive", submissionMode="InteractiveMode", jobId="seq-interactive-id", shutdownAfterJobFinishes=True
    )
    run = s.start("seq-interactive", body)
    running = run.until_state(("Running", "", ""))
    run.patch_spec(suspend=True)
    suspended = run.until_state(("Suspended", "", ""), after=running)
    run.patch_spec(suspend=False)
    again = run.until_state(("Running", "", ""), after=suspended)
    cluster = again.status["rayClusterName"]
    # A few more Running passes, each of them asking Ray about the job and hearing 404.
    deadline = time.monotonic() + WAIT
    while run.job_info_calls(cluster, "seq-interactive-id") < 4:
        assert time.monotonic() < deadline, "the controller stopped polling the interactive job"
        time.sleep(0.05)
    run.notes["after_requeues"] = run.current()
    return run


def drive_cluster_selector(s: Scenarios) -> Run:
    def existing_cluster(run: Run) -> None:
        cluster = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "RayCluster",
            "metadata": {"name": "shared"},
            "spec": cluster_spec(),
        }
        run.api.create_namespaced_custom_object(GROUP, VERSION, run.namespace, "rayclusters", cluster)
        run.clusters.wait_for(
            lambda e: e.name == "shared" and e.status.get("state") == "ready", "RayCluster shared ready"
        )

    body = rayjob("selector", shutdownAfterJobFinishes=True, clusterSelector={"ray.io/cluster": "shared"})
    del body["spec"]["rayClusterSpec"]
    run = s.start("seq-selector", body, before=existing_cluster)
    run.until_state(("Complete", "SUCCEEDED", ""))
    run.notes["deleted_soon"] = run.cluster_deleted_within("shared", 2.0)
    return run


# Far enough apart that DeleteWorkers runs on its own: its pass comes at endTime + 1 s + 2 s (requeueDelayFor).
WORKERS_TTL, CLUSTER_TTL = 1, 5


def drive_delete_workers_then_cluster(s: Scenarios) -> Run:
    rules = [
        {"policy": "DeleteWorkers", "condition": {"jobStatus": "SUCCEEDED", "ttlSeconds": WORKERS_TTL}},
        {"policy": "DeleteCluster", "condition": {"jobStatus": "SUCCEEDED", "ttlSeconds": CLUSTER_TTL}},
    ]
    run = s.start("seq-rules", rayjob("rules", deletionStrategy={"deletionRules": rules}))
    complete = run.until_state(("Complete", "SUCCEEDED", ""))
    cluster = complete.status["rayClusterName"]
    run.notes["complete"] = complete
    run.notes["workers_suspended"] = run.clusters.wait_for(
        lambda e: e.name == cluster and all(g.get("suspend") is True for g in e.obj["spec"]["workerGroupSpecs"]),
        "worker groups suspended",
    )
    run.notes["cluster_deleted"] = run.cluster_event("DELETED", cluster)
    return run


def drive_rules_due_together(s: Scenarios) -> Run:
    rules = [
        {"policy": "DeleteWorkers", "condition": {"jobStatus": "SUCCEEDED", "ttlSeconds": 1}},
        {"policy": "DeleteCluster", "condition": {"jobStatus": "SUCCEEDED", "ttlSeconds": 3}},
    ]
    run = s.start("seq-rules-together", rayjob("rules", deletionStrategy={"deletionRules": rules}))
    complete = run.until_state(("Complete", "SUCCEEDED", ""))
    run.notes["complete"] = complete
    run.notes["cluster_deleted"] = run.cluster_event("DELETED", complete.status["rayClusterName"])
    return run


def drive_delete_self(s: Scenarios) -> Run:
    rules = [{"policy": "DeleteSelf", "condition": {"jobStatus": "FAILED", "ttlSeconds": 1}}]
    run = s.start("seq-delete-self", rayjob("self", "APP-FAIL", deletionStrategy={"deletionRules": rules}))
    run.notes["failed"] = run.until_state(("Failed", "FAILED", "AppFailed"))
    run.notes["deleted"] = run.until(lambda e: e.type == "DELETED", "the RayJob's deletion")
    return run


def drive_shutdown_ttl(s: Scenarios) -> Run:
    run = s.start("seq-shutdown-ttl", rayjob("ttl", shutdownAfterJobFinishes=True, ttlSecondsAfterFinished=2))
    complete = run.until_state(("Complete", "SUCCEEDED", ""))
    run.notes["complete"] = complete
    run.notes["cluster_deleted"] = run.cluster_event("DELETED", complete.status["rayClusterName"])
    return run


def drive_stopped(s: Scenarios) -> Run:
    rules = [
        {"policy": "DeleteCluster", "condition": {"jobStatus": "SUCCEEDED", "ttlSeconds": 0}},
        {"policy": "DeleteCluster", "condition": {"jobStatus": "FAILED", "ttlSeconds": 0}},
        {"policy": "DeleteCluster", "condition": {"jobDeploymentStatus": "Failed", "ttlSeconds": 0}},
    ]
    run = s.start("seq-stopped", rayjob("stopped", "RUNS-ON", deletionStrategy={"deletionRules": rules}))
    running = run.until_state(("Running", "RUNNING", ""))
    cluster, job_id = running.status["rayClusterName"], running.status["jobId"]
    assert run.in_plane(lambda: run.backend.stop_job(run.namespace, cluster, job_id))
    run.until_state(("Complete", "STOPPED", ""))
    run.notes["deleted_soon"] = run.cluster_deleted_within(cluster, 2.0)
    return run


DRIVERS: dict[str, Callable[[Scenarios], Run]] = {
    "success": drive_success,
    "app_failure": drive_app_failure,
    "deadline": drive_deadline,
    "retry": drive_retry,
    "retry_fixed_job_id": drive_retry_fixed_job_id,
    "suspend_resume": drive_suspend_resume,
    "interactive_suspend_resume": drive_interactive_suspend_resume,
    "cluster_selector": drive_cluster_selector,
    "delete_workers_then_cluster": drive_delete_workers_then_cluster,
    "rules_due_together": drive_rules_due_together,
    "delete_self": drive_delete_self,
    "shutdown_ttl": drive_shutdown_ttl,
    "stopped": drive_stopped,
}


@pytest.fixture(scope="module")
def scenarios(crds_dir: Path) -> Iterator[Scenarios]:
    backend = FakeRayBackend(default_script=SUCCEEDS)
    for marker, script in SCRIPTS.items():
        backend.script_entrypoint(marker, script)
    # KubeRay's submitter timing (ControllerSettings' defaults) for every scenario: one plane has one.
    with LocalControlPlane(crds_dir=crds_dir, backend=backend, tls=False, batch_schedulers=False) as plane:
        running = Scenarios(plane, backend)
        try:
            yield running
        finally:
            running.close()


# -- the sequences -------------------------------------------------------------------------------------

NEW: State = ("", "", "")
INITIALIZING: State = ("Initializing", "", "")
RUNNING_UNSUBMITTED: State = ("Running", "", "")  # K8sJobMode: Running is written when the submitter is created
ATTEMPT: list[State] = [INITIALIZING, RUNNING_UNSUBMITTED, ("Running", "PENDING", ""), ("Running", "RUNNING", "")]
FAILED_ATTEMPT = [*ATTEMPT, ("Running", "FAILED", "")]  # the submitter has not finished yet


def attempts(run: Run) -> list[list[Seen]]:
    """The RayJob's events split where each Retrying ends: an attempt ends with its Retrying write."""
    split: list[list[Seen]] = [[]]
    for seen in run.job_events():
        retrying = seen.status.get("jobDeploymentStatus") == "Retrying"
        if split[-1] and split[-1][-1].status.get("jobDeploymentStatus") == "Retrying" and not retrying:
            split.append([])
        split[-1].append(seen)
    return split


def first(events: list[Seen], state: State) -> Seen:
    return next(e for e in events if e.state == state)


def test_success_goes_running_unsubmitted_then_complete_and_deletes_the_cluster_at_once(scenarios: Scenarios) -> None:
    run = scenarios.result("success")
    assert run.states() == [NEW, *ATTEMPT, ("Running", "SUCCEEDED", ""), ("Complete", "SUCCEEDED", "")]
    events = run.job_events()
    running, pending = first(events, RUNNING_UNSUBMITTED), first(events, ("Running", "PENDING", ""))
    # The default submitter: Running is written first; the Ray job exists only some 3 s later (the margin
    # is for a watch event that arrives late, not for the controller).
    assert pending.at - running.at >= DEFAULT_SUBMITTER_START_DELAY_SECONDS - 0.5
    complete = first(events, ("Complete", "SUCCEEDED", ""))
    succeeded = first(events, ("Running", "SUCCEEDED", ""))
    # SUCCEEDED stays Running until the submitter has finished (the finishedAt of checkSubmitter...).
    assert complete.at - succeeded.at >= DEFAULT_SUBMITTER_EXIT_DELAY_SECONDS - 0.5
    # endTime comes with the terminal write and not before; succeeded counts the one success.
    assert all(("endTime" in e.status) == (e.state == complete.state) for e in events)
    assert (complete.status["succeeded"], complete.status["failed"]) == (1, 0)
    # shutdownAfterJobFinishes, TTL 0: deleted by the pass the terminal write triggers, well before a requeue.
    deleted: Seen = run.notes["cluster_deleted"]
    assert deleted.name == complete.status["rayClusterName"] and deleted.rv > complete.rv
    assert deleted.at - complete.at < 0.8
    assert run.notes["after_deletion"]["status"]["rayClusterName"] == deleted.name  # not cleared


def test_app_failure_fails_with_app_failed(scenarios: Scenarios) -> None:
    run = scenarios.result("app_failure")
    assert run.states() == [NEW, *FAILED_ATTEMPT, ("Failed", "FAILED", "AppFailed")]
    failed = run.job_events()[-1]
    assert (failed.status["failed"], failed.status["succeeded"]) == (1, 0)
    assert "endTime" in failed.status


def test_active_deadline_fails_with_deadline_exceeded_and_is_not_retried(scenarios: Scenarios) -> None:
    run = scenarios.result("deadline")
    # checkActiveDeadlineAndUpdateStatusIfNeeded keeps jobStatus; checkBackoffLimitAndUpdateStatusIfNeeded
    # never retries DeadlineExceeded, so Failed is the stored state despite backoffLimit 1.
    assert run.states() == [NEW, *ATTEMPT, ("Failed", "RUNNING", "DeadlineExceeded")]
    failed = run.job_events()[-1]
    assert failed.status["failed"] == 1
    assert epoch(failed.status["endTime"]) >= epoch(failed.status["startTime"]) + DEADLINE


def check_retried_once(run: Run) -> tuple[list[Seen], list[Seen]]:
    """What holds for any retried attempt: the split at Retrying, the counters, the reset."""
    one, two = attempts(run)
    assert distinct([e.state for e in one]) == [NEW, *FAILED_ATTEMPT, ("Retrying", "FAILED", "AppFailed")]
    assert distinct([e.state for e in two])[:3] == [NEW, INITIALIZING, RUNNING_UNSUBMITTED]
    assert two[-1].state == ("Failed", "FAILED", "AppFailed")
    # Failed is never stored between attempts: the failing pass writes Retrying instead, counted, no endTime.
    assert not [e for e in one if e.status.get("jobDeploymentStatus") == "Failed"]
    assert one[-1].status["failed"] == 1 and "endTime" not in one[-1].status
    assert two[-1].status["failed"] == 2 and "endTime" in two[-1].status
    # The reset to New comes only once the first cluster is gone (deleteClusterResources then NotFound).
    reset = first(two, NEW)
    assert not {"rayClusterName", "jobId", "dashboardURL", "message", "reason"} & set(reset.status)
    old_cluster = first(one, RUNNING_UNSUBMITTED).status["rayClusterName"]
    assert run.cluster_event("DELETED", old_cluster, 0).rv < reset.rv
    # Each attempt has a cluster of its own.
    assert first(two, RUNNING_UNSUBMITTED).status["rayClusterName"] != old_cluster
    return one, two


RETRIED_ONCE = [
    NEW,
    *FAILED_ATTEMPT,
    ("Retrying", "FAILED", "AppFailed"),
    NEW,
    *FAILED_ATTEMPT,
    ("Failed", "FAILED", "AppFailed"),
]


def test_backoff_limit_retries_on_a_new_cluster_with_a_new_job_id(scenarios: Scenarios) -> None:
    run = scenarios.result("retry")
    one, two = check_retried_once(run)
    assert run.states() == RETRIED_ONCE
    assert first(one, RUNNING_UNSUBMITTED).status["jobId"] != first(two, RUNNING_UNSUBMITTED).status["jobId"]


def test_backoff_limit_keeps_spec_job_id_across_attempts(scenarios: Scenarios) -> None:
    run = scenarios.result("retry_fixed_job_id")
    one, two = check_retried_once(run)
    assert [first(events, RUNNING_UNSUBMITTED).status["jobId"] for events in (one, two)] == ["seq-retry-fixed-id"] * 2


def test_backoff_limit_with_spec_job_id_runs_the_job_again_on_the_new_cluster(scenarios: Scenarios) -> None:
    assert scenarios.result("retry_fixed_job_id").states() == RETRIED_ONCE


def test_suspend_deletes_the_cluster_and_resume_starts_over_on_a_new_one(scenarios: Scenarios) -> None:
    run = scenarios.result("suspend_resume")
    assert run.states() == [
        NEW,
        *ATTEMPT,
        ("Suspending", "RUNNING", ""),
        ("Suspended", "", ""),
        NEW,
        *ATTEMPT,
        ("Running", "SUCCEEDED", ""),
        ("Complete", "SUCCEEDED", ""),
    ]
    events = run.job_events()
    suspended = first(events, ("Suspended", "", ""))
    assert not {"jobId", "rayClusterName", "dashboardURL", "rayClusterStatus"} & set(suspended.status)
    old_cluster = first(events, RUNNING_UNSUBMITTED).status["rayClusterName"]
    assert run.cluster_event("DELETED", old_cluster, 0).rv < suspended.rv
    complete = events[-1]
    assert complete.status["rayClusterName"] != old_cluster
    assert (complete.status["succeeded"], complete.status["failed"]) == (1, 0)


def test_interactive_resume_sets_the_spec_job_id_at_once_and_stays_running_without_the_job(
    scenarios: Scenarios,
) -> None:
    run = scenarios.result("interactive_suspend_resume")
    waiting: State = ("Waiting", "", "")
    assert run.states() == [
        NEW,
        INITIALIZING,
        waiting,
        RUNNING_UNSUBMITTED,
        ("Suspending", "", ""),
        ("Suspended", "", ""),
        NEW,
        INITIALIZING,
        waiting,
        RUNNING_UNSUBMITTED,
    ]
    events = run.job_events()
    # InteractiveMode generates no jobId; the Waiting pass copies spec.jobId and goes Running in one write.
    assert all("jobId" not in e.status for e in events if e.state in (INITIALIZING, waiting))
    assert [e.status["jobId"] for e in events if e.state == RUNNING_UNSUBMITTED][-1] == "seq-interactive-id"
    # The new cluster never ran the job: its 404 is silent in InteractiveMode, pass after pass.
    assert state_of(run.notes["after_requeues"]) == RUNNING_UNSUBMITTED
    assert run.states()[-1] == RUNNING_UNSUBMITTED


def test_cluster_selector_neither_creates_nor_deletes_a_cluster(scenarios: Scenarios) -> None:
    run = scenarios.result("cluster_selector")
    assert run.states() == [NEW, *ATTEMPT, ("Running", "SUCCEEDED", ""), ("Complete", "SUCCEEDED", "")]
    assert all(
        e.status.get("rayClusterName") == "shared" for e in run.job_events() if e.status.get("jobDeploymentStatus")
    )
    assert [(e.type, e.name) for e in run.clusters.snapshot() if e.type != "MODIFIED"] == [("ADDED", "shared")]
    assert not run.notes["deleted_soon"]  # shutdownAfterJobFinishes has no effect with a clusterSelector


def test_deletion_rules_suspend_workers_then_delete_the_cluster_after_their_ttls(scenarios: Scenarios) -> None:
    run = scenarios.result("delete_workers_then_cluster")
    assert run.states() == [NEW, *ATTEMPT, ("Running", "SUCCEEDED", ""), ("Complete", "SUCCEEDED", "")]
    complete: Seen = run.notes["complete"]
    suspended: Seen = run.notes["workers_suspended"]
    deleted: Seen = run.notes["cluster_deleted"]
    end = epoch(complete.status["endTime"])
    # handleDeletionRules: due at endTime + ttlSeconds, looked at again requeueDelayFor (+2 s) later.
    assert end + WORKERS_TTL <= suspended.at <= complete.at + WORKERS_TTL + 2 + 2
    assert end + CLUSTER_TTL <= deleted.at <= complete.at + CLUSTER_TTL + 2 + 2
    assert suspended.rv < deleted.rv
    assert run.states()[-1] == ("Complete", "SUCCEEDED", "")  # the RayJob stays


def test_deletion_rules_with_close_ttls_never_run_early(scenarios: Scenarios) -> None:
    run = scenarios.result("rules_due_together")
    assert run.states() == [NEW, *ATTEMPT, ("Running", "SUCCEEDED", ""), ("Complete", "SUCCEEDED", "")]
    complete: Seen = run.notes["complete"]
    deleted: Seen = run.notes["cluster_deleted"]
    end = epoch(complete.status["endTime"])
    # Usually the workers are never suspended: the pass after Complete requeues for DeleteWorkers at
    # endTime + 1 s + 2 s (requeueDelayFor), when DeleteCluster is due as well and, more impactful, is the
    # one rule that pass runs (selectMostImpactfulRule). endTime has whole seconds, so a pass after Complete
    # that comes late in the second already finds DeleteWorkers due: then it runs first. Never early.
    suspended = [e for e in run.clusters.snapshot() if any(g.get("suspend") for g in e.obj["spec"]["workerGroupSpecs"])]
    assert all(e.at >= end + 1 for e in suspended)
    assert end + 3 <= deleted.at <= complete.at + 3 + 2 + 2


def test_delete_self_rule_deletes_the_failed_rayjob_after_its_ttl(scenarios: Scenarios) -> None:
    run = scenarios.result("delete_self")
    assert run.states() == [NEW, *FAILED_ATTEMPT, ("Failed", "FAILED", "AppFailed")]
    failed: Seen = run.notes["failed"]
    deleted: Seen = run.notes["deleted"]
    assert epoch(failed.status["endTime"]) + 1 <= deleted.at <= failed.at + 1 + 2 + 2


def test_shutdown_after_job_finishes_waits_for_ttl_seconds_after_finished(scenarios: Scenarios) -> None:
    run = scenarios.result("shutdown_ttl")
    assert run.states() == [NEW, *ATTEMPT, ("Running", "SUCCEEDED", ""), ("Complete", "SUCCEEDED", "")]
    complete: Seen = run.notes["complete"]
    deleted: Seen = run.notes["cluster_deleted"]
    assert epoch(complete.status["endTime"]) + 2 <= deleted.at <= complete.at + 2 + 2 + 2


def test_a_stopped_job_completes_and_matches_no_deletion_rule(scenarios: Scenarios) -> None:
    run = scenarios.result("stopped")
    assert run.states() == [NEW, *ATTEMPT, ("Running", "STOPPED", ""), ("Complete", "STOPPED", "")]
    complete = run.job_events()[-1]
    assert (complete.status["succeeded"], complete.status["failed"]) == (0, 0)  # STOPPED counts as neither
    assert not run.notes["deleted_soon"]
