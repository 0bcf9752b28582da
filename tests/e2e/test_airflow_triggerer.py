"""Deferred waits through a REAL ``airflow triggerer`` process: the task defers, the triggerer runs
RayJobTrigger on its own event loop against the local control plane (streaming the Ray job's log into
the trigger's log while it runs), and the task resumes from the event. Also: a triggerer SIGKILLed
mid-wait is replaced and the wait goes on in the same try; a user killing the deferred task deletes the
RayJob. The operators' surface (#19 item 6) in one DAG: a RayJobOperator that does not wait, with a
deferred sensor after it; templated connection, annotations and timeouts; ``do_xcom_push=False``; a
RayCluster's deferred create, scale and delete, and a deferred RayServiceSensor.
(tests/support/airflow_runs.py says how dag.test() is kept from running triggers inline.)"""

from __future__ import annotations

from tests.airflow_env import configure_airflow_env

configure_airflow_env()

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from airflow.models.taskinstance import TaskInstance
from airflow.utils.session import create_session
from airflow.utils.state import TaskInstanceState
from sqlalchemy import select

from tests.support.airflow_runs import (
    RealTriggerer,
    dag_test_with_real_triggerer,
    deferred_wait,
    load_dag,
    rayjobs_of,
    task_instance,
    trigger_log,
    trigger_logs,
    wait_until,
)
from tests.support.cluster_under_test import JOBS_NAMESPACE
from tests.support.ray_waits import ray_job_status_becomes

pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]  # a hung triggerer fails the test, not CI

INLINE = "running trigger in line"  # what dag.test() logs when it runs a trigger itself


class Meanwhile:
    """Runs ``action`` on a thread while the test's main thread runs the DAG (the task runner installs
    signal handlers, so ``dag.test()`` must have the main thread); ``done()`` re-raises what it raised."""

    def __init__(self, action: Callable[[], Any]) -> None:
        self.value: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(action,), daemon=True)
        self.thread.start()

    def _run(self, action: Callable[[], Any]) -> None:
        try:
            self.value = action()
        except BaseException as exc:
            self.error = exc

    def done(self, timeout: float = 60) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"the action did not end within {timeout} s"
        if self.error is not None:
            raise self.error
        return self.value


def terminal_wait_in_a_triggerer(dag_id: str, task_id: str) -> tuple[str, int]:
    """Once the task's second deferral, the wait for the end (the first one fired when the Ray job
    started), runs in a triggerer: (run_id, that triggerer's job id)."""

    def found() -> tuple[str, int] | None:
        wait = deferred_wait(dag_id, task_id)
        return (wait[0], wait[2]) if wait and wait[1] == "terminal" and wait[2] is not None else None

    return wait_until(found, 240, f"{task_id}'s wait for the end to be taken by a triggerer")


def shown_once(marker: str, task_output: str, trigger_output: str) -> bool:
    """A Ray log line reaches the task log once: streamed by the trigger while the job ran, or (the job
    ended before the trigger watched it run) read back when the task resumed."""
    return task_output.count(marker) + trigger_output.count(marker) == 1


def test_deferrable_create_and_sdk_modes_resume_through_the_triggerer(
    airflow: Path, triggerer: RealTriggerer, kube: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    run = dag_test_with_real_triggerer(load_dag("kuberay_e2e_deferrable"))
    out = capfd.readouterr().out
    assert run.state == "success", out[-3000:] + triggerer.output()[-2000:]
    assert out.count("Pausing task as DEFERRED") >= 3 and INLINE not in out
    for task_id in ("deferred", "deferred_sdk"):
        fired = trigger_log(airflow, "kuberay_e2e_deferrable", run.run_id, task_id)
        assert "Trigger fired event" in fired and "deployment=Complete job=SUCCEEDED" in fired, fired[-2000:]
        assert task_instance(run, task_id).xcom_pull(task_ids=task_id)["job_status"] == "SUCCEEDED"
    # InteractiveMode: KubeRay waited (the first trigger) for the operator's own submission on resume.
    [interactive] = rayjobs_of(kube, "kuberay_e2e_deferrable", "deferred_sdk", run.run_id)
    assert interactive["spec"]["submissionMode"] == "InteractiveMode"
    assert interactive["spec"]["jobId"] == interactive["status"]["jobId"] == interactive["metadata"]["name"] + "-sdk"
    for task_id, marker in (
        ("deferred", "[ray] E2E-DEFERRED-MARKER"),
        ("deferred_sdk", "[ray] E2E-DEFERRED-SDK-MARKER"),
    ):
        assert shown_once(marker, out, trigger_log(airflow, "kuberay_e2e_deferrable", run.run_id, task_id))


def test_sensor_pokes_and_defers_to_the_triggerer(
    airflow: Path, triggerer: RealTriggerer, capfd: pytest.CaptureFixture[str]
) -> None:
    run = dag_test_with_real_triggerer(load_dag("kuberay_e2e_sensor"))
    out = capfd.readouterr().out
    assert run.state == "success", out[-3000:]
    assert {ti.task_id: ti.state for ti in run.get_task_instances()} == {
        "run": "success",
        "poke": "success",
        "deferred": "success",
    }
    assert (
        "Trigger fired event" in trigger_log(airflow, "kuberay_e2e_sensor", run.run_id, "deferred")
        and INLINE not in out
    )


def test_a_wait_outlives_a_sigkilled_triggerer(
    airflow: Path, triggerer: RealTriggerer, kube: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    dag_id, task_id = "kuberay_e2e_triggerer_restart", "outlives_its_triggerer"

    def replace_the_triggerer_mid_wait() -> int:
        _, first_triggerer = terminal_wait_in_a_triggerer(dag_id, task_id)
        # The end of the job is awaited in the first triggerer: take it away without any shutdown.
        triggerer.kill()
        triggerer.start()  # another triggerer takes the orphaned trigger over once the first misses its heartbeats
        return first_triggerer

    dag = load_dag(dag_id)  # before the other thread starts: no two threads importing DAG code at once
    meanwhile = Meanwhile(replace_the_triggerer_mid_wait)
    run = dag_test_with_real_triggerer(dag)
    first_triggerer = meanwhile.done()
    out = capfd.readouterr().out
    assert run.state == "success", out[-3000:] + triggerer.output()[-3000:]
    assert task_instance(run, task_id).try_number == 1  # the same try resumed: no retry, no second submission
    assert out.count("Created RayJob") == 1
    assert shown_once("[ray] E2E-TRIGGERER-RESTART-MARKER", out, trigger_log(airflow, dag_id, run.run_id, task_id))
    [rayjob] = rayjobs_of(kube, dag_id, task_id, run.run_id)
    assert rayjob["status"]["jobStatus"] == "SUCCEEDED"
    logs = trigger_logs(airflow, dag_id, run.run_id, task_id)
    [second_triggerer] = set(logs) - {first_triggerer}  # one more triggerer ran this try's wait...
    assert "Trigger fired event" in logs[second_triggerer]  # ...and it saw the end
    assert "job=SUCCEEDED" in logs[second_triggerer] and "job=SUCCEEDED" not in logs[first_triggerer]


def test_killing_the_deferred_task_deletes_its_rayjob(
    airflow: Path, triggerer: RealTriggerer, kube: Any, ray_dashboard_url: str, capfd: pytest.CaptureFixture[str]
) -> None:
    from kuberay_provider.core.resources import RAYJOB

    dag_id, task_id = "kuberay_e2e_deferred_kill", "killed_while_deferred"

    def mark_failed_mid_wait() -> tuple[str, str, str]:
        run_id, _ = terminal_wait_in_a_triggerer(dag_id, task_id)
        [rayjob] = rayjobs_of(kube, dag_id, task_id, run_id)
        # The trigger streams the Ray job's log while it runs: its first line is there long before the end.
        wait_until(
            lambda: "[ray] E2E-DEFERRED-KILL-MARKER started" in trigger_log(airflow, dag_id, run_id, task_id),
            120,
            "the running job's log in the trigger's log",
        )
        # What "Mark failed" in the UI does to a deferred task instance.
        with create_session() as session:
            ti = session.scalars(
                select(TaskInstance).where(
                    TaskInstance.dag_id == dag_id, TaskInstance.task_id == task_id, TaskInstance.run_id == run_id
                )
            ).one()
            ti.set_state(TaskInstanceState.FAILED, session=session)
        return run_id, rayjob["metadata"]["name"], rayjob["status"]["jobId"]

    dag = load_dag(dag_id)
    meanwhile = Meanwhile(mark_failed_mid_wait)
    run = dag_test_with_real_triggerer(dag)
    run_id, name, job_id = meanwhile.done()
    assert run.state == "failed" and run.run_id == run_id
    wait_until(lambda: kube.find(RAYJOB, JOBS_NAMESPACE, name) is None, 90, f"RayJob {name} to be deleted")
    assert ray_job_status_becomes(ray_dashboard_url, job_id, {"STOPPED"}, 60) == "STOPPED"
    log = trigger_log(airflow, dag_id, run_id, task_id)
    assert (
        "Trigger cancelled by user action" in log
        and f"Deferred task killed: deleting RayJob {JOBS_NAMESPACE}/{name}" in log
    ), log[-3000:]
    capfd.readouterr()


def xcom_keys(dag_id: str, run_id: str, task_id: str) -> set[str]:
    from airflow.models.xcom import XComModel

    with create_session() as session:
        return set(
            session.scalars(
                select(XComModel.key).where(
                    XComModel.dag_id == dag_id, XComModel.run_id == run_id, XComModel.task_id == task_id
                )
            )
        )


def test_the_operator_surface_through_a_real_triggerer(
    airflow: Path, triggerer: RealTriggerer, kube: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    from kuberay_provider.airflow.links import RayDashboardLink
    from kuberay_provider.core.resources import RAYCLUSTER, RAYSERVICE

    dag_id, cluster, service = (
        "kuberay_e2e_surface",
        "e2e-surface",
        "e2e-surface-svc",
    )  # tests/e2e/airflow_dags/operator_surface.py
    run = dag_test_with_real_triggerer(load_dag(dag_id))
    out = capfd.readouterr().out
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success", f"{states}\n{out[-4000:]}\n{triggerer.output()[-2000:]}"
    assert INLINE not in out
    # wait_for_completion=False: the task returned while the job ran; the deferred sensor saw it succeed.
    launched = task_instance(run, "launch").xcom_pull(task_ids="launch")
    assert not launched["succeeded"] and launched["job_status"] in ("", "PENDING", "RUNNING"), launched
    [rayjob] = rayjobs_of(kube, dag_id, "launch", run.run_id)
    assert (
        rayjob["status"]["jobStatus"] == "SUCCEEDED" and rayjob["metadata"]["annotations"]["team"] == "ml"
    )  # templated
    # Every wait of the sensors and of the RayCluster / RayService tasks ran in the triggerer.
    for task_id in ("sensed", "create_cluster", "scale_cluster", "delete_cluster", "service_served", "delete_service"):
        assert "Trigger fired event" in trigger_log(airflow, dag_id, run.run_id, task_id), task_id
    assert task_instance(run, "scale_cluster").xcom_pull(task_ids="scale_cluster")["ready_workers"] == 2
    assert (
        task_instance(run, "service_served").xcom_pull(task_ids="service_served", key="serve_endpoint")
        == f"http://{service}-serve-svc.{JOBS_NAMESPACE}.svc.cluster.local:8000"
    )
    assert (
        kube.find(RAYCLUSTER, JOBS_NAMESPACE, cluster) is None
        and kube.find(RAYSERVICE, JOBS_NAMESPACE, service) is None
    )
    # do_xcom_push=False: no XCom at all but the UI's extra link, which Airflow itself pushes regardless.
    for task_id in ("quiet", "create_cluster"):
        assert xcom_keys(dag_id, run.run_id, task_id) <= {RayDashboardLink().xcom_key}, task_id
    assert "[ray] E2E-SURFACE-QUIET" in out
