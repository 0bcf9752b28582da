"""The Airflow adapter end to end: real Airflow (dag.test()) against the local control plane and the
session's real Ray. Test DAGs live in tests/e2e/airflow_dags/."""

from __future__ import annotations

from tests.airflow_env import configure_airflow_env

configure_airflow_env()

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.airflow_runs import airflow_cli, load_dag, run_existing, task_instance
from tests.support.airflow_runs import rayjobs_of as rayjobs_of_run
from tests.support.cluster_under_test import JOBS_NAMESPACE, RAY_IMAGE
from tests.support.clusters import ready_raycluster
from tests.support.ray_waits import ray_job_status_becomes

pytestmark = pytest.mark.ray


def run_dag(dag_id: str) -> Any:
    return load_dag(dag_id).test()


def rayjobs_of(kube: Any, dag_id: str, task_id: str, run: Any) -> list[dict[str, Any]]:
    return rayjobs_of_run(kube, dag_id, task_id, run.run_id)


def test_success_streams_the_ray_log_and_returns_the_outcome(
    airflow: Path, kube: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    run = run_dag("kuberay_e2e_success")
    out = capfd.readouterr().out
    assert run.state == "success", out[-3000:]
    assert "[ray] E2E-MARKER answer 42" in out
    outcome = task_instance(run, "score").xcom_pull(task_ids="score")
    assert outcome["succeeded"] and outcome["job_status"] == "SUCCEEDED" and outcome["deployment_status"] == "Complete"
    assert outcome["job_id"].startswith(outcome["rayjob_name"]) and outcome["cluster_name"]
    assert "/services/" in outcome["dashboard_url"] and outcome["dashboard_url"].endswith(outcome["job_id"])
    [rayjob] = rayjobs_of(kube, "kuberay_e2e_success", "score", run)
    assert rayjob["spec"]["runtimeEnvYAML"].strip() == "env_vars:\n  GREETING: hello"


def test_application_failure_fails_with_reason_and_log_tail(airflow: Path, capfd: pytest.CaptureFixture[str]) -> None:
    run = run_dag("kuberay_e2e_app_failure")
    out = capfd.readouterr().out
    assert run.state == "failed"
    assert "reason=AppFailed" in out
    assert "last lines of the Ray job's log" in out and "E2E-MARKER about to fail" in out


def test_a_backoff_limit_retry_is_followed_to_its_new_job_in_the_task_log(
    airflow: Path, kube: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    """KubeRay retries on a new cluster with a new job id, and (K8sJobMode) each attempt is Running seconds
    before its Ray job exists: the task log has both attempts' lines, live."""
    run = run_dag("kuberay_e2e_backoff_retry")
    out = capfd.readouterr().out
    assert run.state == "success", out[-3000:]
    first = out.index("[ray] E2E-RETRY-MARKER first attempt fails")
    switch = out.index("KubeRay retried the RayJob: following its new Ray job")
    second = out.index("[ray] E2E-RETRY-MARKER second attempt succeeds")
    assert first < switch < second
    [rayjob] = rayjobs_of(kube, "kuberay_e2e_backoff_retry", "flaky", run)
    assert (rayjob["status"]["failed"], rayjob["status"]["succeeded"]) == (1, 1)
    outcome = task_instance(run, "flaky").xcom_pull(task_ids="flaky")
    assert outcome["job_id"] == rayjob["status"]["jobId"] and outcome["job_id"] in out[switch:second]


def test_sdk_submission_in_interactive_mode(airflow: Path, kube: Any, capfd: pytest.CaptureFixture[str]) -> None:
    run = run_dag("kuberay_e2e_sdk")
    out = capfd.readouterr().out
    assert run.state == "success", out[-3000:]
    assert "deployment=Waiting" in out and "[ray] E2E-SDK-MARKER" in out
    [rayjob] = rayjobs_of(kube, "kuberay_e2e_sdk", "sdk", run)
    assert rayjob["spec"]["submissionMode"] == "InteractiveMode"
    assert rayjob["spec"]["jobId"] == rayjob["status"]["jobId"] == rayjob["metadata"]["name"] + "-sdk"


@pytest.fixture(scope="module")
def existing_cluster(kube: Any) -> str:
    return ready_raycluster(kube, "e2e-existing")


def test_existing_cluster_through_cluster_selector_and_straight_through_the_sdk(
    airflow: Path, kube: Any, existing_cluster: str, capfd: pytest.CaptureFixture[str]
) -> None:
    run = run_dag("kuberay_e2e_existing_cluster")
    out = capfd.readouterr().out
    assert run.state == "success", out[-3000:]
    assert "[ray] E2E-SELECTOR-MARKER" in out and "[ray] E2E-DIRECT-MARKER" in out
    [rayjob] = rayjobs_of(kube, "kuberay_e2e_existing_cluster", "via_rayjob", run)
    assert rayjob["spec"]["clusterSelector"] == {"ray.io/cluster": existing_cluster}
    assert rayjob["status"]["rayClusterName"] == existing_cluster
    assert rayjobs_of(kube, "kuberay_e2e_existing_cluster", "via_sdk", run) == []
    direct = task_instance(run, "via_sdk").xcom_pull(task_ids="via_sdk")
    assert direct["cluster_name"] == existing_cluster and direct["job_status"] == "SUCCEEDED"


def test_clearing_a_task_that_submitted_straight_to_a_head_runs_its_ray_job_again(
    airflow: Path, kube: Any, existing_cluster: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """No RayJob holds a consumed mark on this path: the cleared task's new series submits under its own id."""
    dag = load_dag("kuberay_e2e_existing_cluster")
    run = dag.test()
    first = capfd.readouterr().out
    assert run.state == "success", first[-3000:]
    before = task_instance(run, "via_sdk").xcom_pull(task_ids="via_sdk")

    day = run.logical_date.isoformat()
    airflow_cli("tasks", "clear", dag.dag_id, "-s", day, "-e", day, "-y")
    again = run_existing(dag, run.run_id)
    second = capfd.readouterr().out
    assert again.state == "success", second[-3000:]
    ti = task_instance(again, "via_sdk")
    after = ti.xcom_pull(task_ids="via_sdk")
    assert ti.try_number == 2 and after["job_status"] == "SUCCEEDED"
    assert after["job_id"] != before["job_id"], (before, after)  # before the fix: the same job, re-attached
    assert f"Submitted Ray job {after['job_id']}" in second and "Re-attached to Ray job" not in second


def test_a_retried_try_reattaches_instead_of_creating_a_second_rayjob(
    airflow: Path, kube: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    run = run_dag("kuberay_e2e_reattach")
    out = capfd.readouterr().out
    assert run.state == "success", out[-3000:]
    assert task_instance(run, "flaky").try_number == 2
    assert "did not reach the awaited state" in out
    operator_lines = [line for line in out.splitlines() if "GivesUpOnFirstTry" in line]  # the operator's own log
    assert sum("Created RayJob" in line for line in operator_lines) == 1
    assert sum("Re-attached to RayJob" in line for line in operator_lines) == 1
    [rayjob] = rayjobs_of(kube, "kuberay_e2e_reattach", "flaky", run)
    assert rayjob["status"]["jobStatus"] == "SUCCEEDED" and out.count("[ray] E2E-REATTACH-MARKER") == 1


def test_a_retry_after_a_failed_job_replaces_the_rayjob(
    airflow: Path, kube: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    from kuberay_provider.core.naming import ANNOTATION_TRY_NUMBER

    run = run_dag("kuberay_e2e_retry_after_failure")
    out = capfd.readouterr().out
    assert run.state == "success", out[-3000:]
    assert task_instance(run, "fails_once").try_number == 2
    assert "reason=AppFailed" in out and "Replaced the failed earlier try's RayJob" in out
    [rayjob] = rayjobs_of(kube, "kuberay_e2e_retry_after_failure", "fails_once", run)
    assert rayjob["metadata"]["annotations"][ANNOTATION_TRY_NUMBER] == "2"
    assert rayjob["status"]["jobStatus"] == "SUCCEEDED" and "E2E-RETRY-MARKER try 2" in out


def test_cleanup_operator_deletes_the_runs_rayjobs_after_a_failure(
    airflow: Path, kube: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    run = run_dag("kuberay_e2e_cleanup")
    out = capfd.readouterr().out
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states == {"kept": "success", "failing": "failed", "cleanup_failing": "success", "cleanup_all": "success"}, (
        out[-3000:]
    )
    names = {
        task_id: task_instance(run, task_id).xcom_pull(task_ids=task_id, key="rayjob")["name"]
        for task_id in ("kept", "failing")
    }
    assert task_instance(run, "cleanup_failing").xcom_pull(task_ids="cleanup_failing") == [names["failing"]]
    assert task_instance(run, "cleanup_all").xcom_pull(task_ids="cleanup_all") == [names["kept"]]
    left = rayjobs_of(kube, "kuberay_e2e_cleanup", "kept", run) + rayjobs_of(
        kube, "kuberay_e2e_cleanup", "failing", run
    )
    assert all(rayjob["metadata"].get("deletionTimestamp") for rayjob in left)  # gone, or going (finalizers)


def test_cleanup_choice_becomes_deletion_rules_that_kuberay_carries_out(
    airflow: Path, kube: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    from kuberay_provider.core.resources import RAYCLUSTER, RAYJOB

    run = run_dag("kuberay_e2e_cleanup_choice")
    out = capfd.readouterr().out
    assert run.state == "success", out[-3000:]
    [rayjob] = rayjobs_of(kube, "kuberay_e2e_cleanup_choice", "workers_then_cluster", run)
    policies = {
        (rule["policy"], rule["condition"]["ttlSeconds"])
        for rule in rayjob["spec"]["deletionStrategy"]["deletionRules"]
    }
    assert policies == {("DeleteWorkers", 0), ("DeleteCluster", 3)} and "shutdownAfterJobFinishes" not in rayjob["spec"]
    cluster_name, deadline = rayjob["status"]["rayClusterName"], time.monotonic() + 60
    while (cluster := kube.find(RAYCLUSTER, JOBS_NAMESPACE, cluster_name)) is not None and not cluster["metadata"].get(
        "deletionTimestamp"
    ):
        assert time.monotonic() < deadline, f"RayCluster {cluster_name} still there 60 s after the job ended"
        time.sleep(1)
    assert kube.find(RAYJOB, JOBS_NAMESPACE, rayjob["metadata"]["name"]) is not None  # only the cluster goes


class ExecuteInThread:
    """An operator's execute() on a worker thread, as a task runs while Airflow may call on_kill()."""

    def __init__(self, operator: Any, ti: Any) -> None:
        import threading

        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(operator, {"ti": ti}), daemon=True)
        self.thread.start()

    def _run(self, operator: Any, context: dict[str, Any]) -> None:
        try:
            operator.execute(context)
        except BaseException as exc:
            self.error = exc


def killable_operator(task_id: str, **kwargs: Any) -> tuple[Any, Any]:
    from kuberay_provider.airflow.operators import RayJobOperator
    from tests.support.airflow_fakes import FakeTaskInstance

    sleeping = "python -c \"import time; print('E2E-KILL-MARKER', flush=True); time.sleep(120)\""
    operator = RayJobOperator(task_id=task_id, entrypoint=sleeping, stream_logs=False, **kwargs)
    return operator, FakeTaskInstance(dag_id="kuberay_e2e_kill", task_id=task_id, run_id=f"kill-{time.time_ns()}")


def test_on_kill_deletes_the_running_rayjob_and_stops_its_ray_job(
    airflow: Path, kube: Any, ray_dashboard_url: str
) -> None:
    from kuberay_provider.core.lifecycle import RayJobLifecycle
    from kuberay_provider.core.resources import RAYJOB
    from kuberay_provider.core.spec import simple_cluster_spec
    from kuberay_provider.core.status import is_started

    operator, ti = killable_operator("killed", ray_cluster_spec=simple_cluster_spec(image=RAY_IMAGE))
    name = operator.build_request({"ti": ti}).rayjob_name
    task = ExecuteInThread(operator, ti)
    deadline = time.monotonic() + 60
    while kube.find(RAYJOB, JOBS_NAMESPACE, name) is None and time.monotonic() < deadline:
        time.sleep(0.5)
    job_id = RayJobLifecycle(kube).wait(JOBS_NAMESPACE, name, until=is_started, timeout=120).job_id
    ray_job_status_becomes(ray_dashboard_url, job_id, {"RUNNING"}, 60)
    operator.on_kill()
    task.thread.join(60)
    assert not task.thread.is_alive() and task.error is not None  # the wait ended: the RayJob was deleted
    assert ray_job_status_becomes(ray_dashboard_url, job_id, {"STOPPED"}, 60) == "STOPPED"
    assert kube.find(RAYJOB, JOBS_NAMESPACE, name) is None


def test_on_kill_on_an_existing_cluster_stops_the_job_and_keeps_the_cluster(
    airflow: Path, kube: Any, existing_cluster: str, ray_dashboard_url: str
) -> None:
    from kuberay_provider.core.resources import RAYCLUSTER

    operator, ti = killable_operator("killed_direct", cluster_selector=existing_cluster, submit_via="sdk")
    job_id = operator.build_request({"ti": ti}).submission_id
    task = ExecuteInThread(operator, ti)
    ray_job_status_becomes(ray_dashboard_url, job_id, {"RUNNING"}, 120)
    operator.on_kill()
    assert ray_job_status_becomes(ray_dashboard_url, job_id, {"STOPPED"}, 60) == "STOPPED"
    task.thread.join(60)
    assert not task.thread.is_alive() and task.error is not None  # the stopped job fails the task
    cluster = kube.find(RAYCLUSTER, JOBS_NAMESPACE, existing_cluster)
    assert cluster is not None and not cluster["metadata"].get("deletionTimestamp")


def task_try(dag_id: str, task_id: str, run_id: str, try_number: int, log: Path) -> subprocess.Popen[bytes]:
    """One try of the task in its own process (tests/support/run_task_try.py), its output in ``log``."""
    command = [sys.executable, "-m", "tests.support.run_task_try", dag_id, task_id, run_id, str(try_number)]
    with log.open("wb") as sink:
        return subprocess.Popen(command, cwd=Path(__file__).resolve().parents[2], stdout=sink, stderr=subprocess.STDOUT)


def test_a_sigkilled_worker_is_followed_by_a_try_that_reattaches(
    airflow: Path, kube: Any, ray_dashboard_url: str, tmp_path: Path
) -> None:
    from kuberay_provider.core.job_request import RunIdentity
    from kuberay_provider.core.lifecycle import RayJobLifecycle
    from kuberay_provider.core.naming import ANNOTATION_TRY_NUMBER, LABEL_RUN_KEY
    from kuberay_provider.core.resources import RAYJOB
    from kuberay_provider.core.status import is_started

    dag_id, task_id, run_id = "kuberay_e2e_worker_killed", "survives", f"killed-{time.time_ns()}"
    identity = RunIdentity(dag_id, task_id, run_id, -1)
    first = task_try(dag_id, task_id, run_id, 1, tmp_path / "try1.log")
    try:
        deadline = time.monotonic() + 90
        while kube.find(RAYJOB, JOBS_NAMESPACE, identity.rayjob_name) is None:
            assert first.poll() is None and time.monotonic() < deadline, (tmp_path / "try1.log").read_text()[-3000:]
            time.sleep(0.5)
        job_id = RayJobLifecycle(kube).wait(JOBS_NAMESPACE, identity.rayjob_name, until=is_started, timeout=120).job_id
        ray_job_status_becomes(ray_dashboard_url, job_id, {"RUNNING"}, 60)
    finally:
        first.kill()  # SIGKILL: no on_kill, no cleanup, as when the OOM killer takes a worker
        first.wait(30)
    assert first.returncode == -9

    second = task_try(dag_id, task_id, run_id, 2, tmp_path / "try2.log")
    assert second.wait(180) == 0, (tmp_path / "try2.log").read_text()[-3000:]
    out = (tmp_path / "try2.log").read_text()
    assert f"Re-attached to RayJob {JOBS_NAMESPACE}/{identity.rayjob_name}" in out and "Created RayJob" not in out
    outcome = json.loads(out.split("OUTCOME ", 1)[1].splitlines()[0])
    assert outcome["job_id"] == job_id and outcome["job_status"] == "SUCCEEDED"
    assert ray_job_status_becomes(ray_dashboard_url, job_id, {"SUCCEEDED"}, 5) == "SUCCEEDED"  # Ray's own word
    [rayjob] = kube.list(RAYJOB, JOBS_NAMESPACE, label_selector=f"{LABEL_RUN_KEY}={identity.key}")
    assert rayjob["metadata"]["annotations"][ANNOTATION_TRY_NUMBER] == "1"  # the first try's, never replaced


def test_validation_error_fails_at_once_and_creates_nothing(
    airflow: Path, kube: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    run = run_dag("kuberay_e2e_invalid")
    out = capfd.readouterr().out
    assert run.state == "failed"
    assert task_instance(run, "invalid").try_number == 1  # a permanent error: no retries spent
    assert "spec.ttlSecondsAfterFinished" in out and "spec.suspend" in out
    assert rayjobs_of(kube, "kuberay_e2e_invalid", "invalid", run) == []


def test_trigger_runs_on_an_event_loop_against_the_plane(airflow: Path, local_plane: Any) -> None:
    """The triggerer's view: RayJobTrigger.run() on its own asyncio loop, no task around it."""
    import asyncio

    from kuberay_provider.airflow.triggers import RayJobTrigger
    from kuberay_provider.core.job_request import RayJobRequest, RunIdentity
    from kuberay_provider.core.job_runner import RayJobRunner
    from kuberay_provider.core.kube.sync_client import RayObjectsClient
    from kuberay_provider.core.lifecycle import RayJobLifecycle
    from kuberay_provider.core.spec import simple_cluster_spec

    request = RayJobRequest(
        RunIdentity("trigger_test", "direct", f"run-{time.time_ns()}"),
        namespace=JOBS_NAMESPACE,
        spec_params={
            "entrypoint": "python -c \"print('triggered')\"",
            "ray_cluster_spec": simple_cluster_spec(image=RAY_IMAGE),
        },
    )
    with local_plane.api_client() as api_client:
        RayJobRunner(RayJobLifecycle(RayObjectsClient(api_client))).launch(request)
    _classpath, kwargs = RayJobTrigger(
        request.rayjob_name, JOBS_NAMESPACE, wait_for="terminal", timeout=120
    ).serialize()
    trigger = RayJobTrigger(**kwargs)

    async def first_event() -> Any:
        async for event in trigger.run():
            return event

    event = asyncio.run(asyncio.wait_for(first_event(), 150))
    assert event.payload["status"] == "success", event.payload
    assert event.payload["state"]["deployment_status"] == "Complete"
    assert event.payload["state"]["job_status"] == "SUCCEEDED"
