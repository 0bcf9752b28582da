"""Running the test DAGs for real: ``dag.test()`` in this process, and a real ``airflow triggerer`` beside it.

``dag.test()`` runs a deferred task's trigger inline, in the test's own process. With
``RealTriggerer`` running and ``dag_test_with_real_triggerer`` instead, a deferring task leaves its
trigger in the metadata DB as a scheduler would; the separate ``airflow triggerer`` process picks it up,
runs it on its own event loop, and fires the event that makes the task SCHEDULED again, which the
``dag.test()`` loop then resumes. Only the inline shortcut is switched off; every component is Airflow's own.

Import this module only after ``tests.airflow_env.configure_airflow_env()``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Imported here, by the test's main thread: helpers such as deferred_wait() run on other threads while
# dag.test() runs, and two threads importing Airflow's ORM models at once deadlock.
from airflow.dag_processing.dagbag import DagBag
from airflow.models.taskinstance import TaskInstance
from airflow.models.trigger import Trigger
from airflow.utils.session import create_session
from airflow.utils.state import TaskInstanceState
from sqlalchemy import select

from tests.airflow_env import TEST_DAGS_FOLDER
from tests.support.cluster_under_test import JOBS_NAMESPACE

# The triggerer's clock, fast enough for tests: heartbeat each second, and another triggerer may take over
# the triggers of one that missed 5 s of heartbeats (a SIGKILLed one).
TRIGGERER_SETTINGS = {
    "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
    "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "5",
}


AIRFLOW_CLI = str(Path(sys.executable).parent / "airflow")


def airflow_cli(*args: str) -> str:
    """The ``airflow`` command of this venv, as a user runs it; its output, or the test fails with it."""
    done = subprocess.run([AIRFLOW_CLI, *args], capture_output=True, text=True, timeout=300, env=os.environ.copy())
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def load_dag(dag_id: str, folder: Path = TEST_DAGS_FOLDER) -> Any:
    dag = DagBag(dag_folder=str(folder)).get_dag(dag_id)
    assert dag is not None, dag_id
    return dag


def task_instance(run: Any, task_id: str) -> Any:
    return next(ti for ti in run.get_task_instances() if ti.task_id == task_id)


def rayjobs_of(
    kube: Any, dag_id: str, task_id: str, run_id: str, namespace: str = JOBS_NAMESPACE
) -> list[dict[str, Any]]:
    """The RayJobs one task of one DAG run created, found by the operator's identity label."""
    from kuberay_provider.core.job_request import RunIdentity
    from kuberay_provider.core.naming import LABEL_RUN_KEY
    from kuberay_provider.core.resources import RAYJOB

    key = RunIdentity(dag_id, task_id, run_id, -1).key
    return kube.list(RAYJOB, namespace, label_selector=f"{LABEL_RUN_KEY}={key}")


def run_existing(dag: Any, run_id: str) -> Any:
    """Run the tasks of an existing DAG run whose task instances Airflow cleared (``airflow tasks clear``, a
    backfill reprocessing the run), as a scheduler would: ``dag.test()``'s own loop and task runner, minus
    its first step (deleting any run of the same logical date and starting over at try 1). The try numbers
    and ``max_tries`` are the ones Airflow's clear left. Returns the run once it has finished."""
    import airflow.sdk.definitions.dag as dag_module
    from airflow import settings
    from airflow.models.dagrun import DagRun
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.utils.state import DagRunState

    session = settings.Session()
    run = session.scalar(select(DagRun).where(DagRun.dag_id == dag.dag_id, DagRun.run_id == run_id))
    assert run is not None, f"no run {run_id} of {dag.dag_id}"
    run.dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    run.state = DagRunState.RUNNING  # what the scheduler does with a queued run it starts
    session.commit()
    while run.state == DagRunState.RUNNING:
        session.expire_all()
        schedulable, _ = run.update_state(session=session)
        for ti in schedulable:
            if ti.state != TaskInstanceState.UP_FOR_RESCHEDULE:
                ti.try_number += 1
            ti.state = TaskInstanceState.SCHEDULED
        session.commit()
        scheduled = [ti for ti in run.get_task_instances(session=session) if ti.state == TaskInstanceState.SCHEDULED]
        for ti in scheduled:
            dag_module._run_task(ti=ti, task=dag.task_dict[ti.task_id], run_triggerer=True)
        if not scheduled:
            time.sleep(0.5)  # e.g. a retry not due yet
    return run


def dag_test_with_real_triggerer(dag: Any, **kwargs: Any) -> Any:
    """``dag.test()`` with deferred tasks left to a separate triggerer (see the module docstring)."""
    import airflow.sdk.definitions.dag as dag_module

    run_task = dag_module._run_task

    def run_task_without_inline_trigger(**task_kwargs: Any) -> Any:
        return run_task(**{**task_kwargs, "run_triggerer": False})

    dag_module._run_task = run_task_without_inline_trigger
    try:
        return dag.test(**kwargs)
    finally:
        dag_module._run_task = run_task


class RealTriggerer:
    """``airflow triggerer`` as its own process on this test session's AIRFLOW_HOME and connections."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"triggerer-{self.starts}.log"

    def start(self) -> None:
        self.starts += 1
        airflow = Path(sys.executable).parent / "airflow"
        with self.log_path.open("wb") as sink:
            self.process = subprocess.Popen(
                [str(airflow), "triggerer", "--skip-serve-logs"],
                env={**os.environ, **TRIGGERER_SETTINGS},
                stdout=sink,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        """SIGKILL, as the OOM killer or a lost node ends a triggerer: no shutdown, no handover."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def output(self) -> str:
        return "\n".join(path.read_text(errors="replace") for path in sorted(self.log_dir.glob("triggerer-*.log")))


def trigger_logs(airflow_home: Path, dag_id: str, run_id: str, task_id: str) -> dict[int, str]:
    """What triggerers wrote for this task's triggers, by triggerer job id: Airflow 3 writes
    ``attempt=N.log.trigger.<job id>.log`` beside the task log, one file per triggerer process (a later
    trigger of the same try in the same triggerer rewrites it)."""
    folder = airflow_home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
    return {
        int(path.name.rsplit(".", 2)[-2]): path.read_text(errors="replace") for path in folder.glob("*.trigger.*.log")
    }


def trigger_log(airflow_home: Path, dag_id: str, run_id: str, task_id: str) -> str:
    return "\n".join(text for _, text in sorted(trigger_logs(airflow_home, dag_id, run_id, task_id).items()))


def deferred_wait(dag_id: str, task_id: str) -> tuple[str, str, int | None] | None:
    """For the newest DEFERRED try of the task: (run_id, what its RayJobTrigger waits for, the id of the
    triggerer job running it, None while unassigned); None while the task is not deferred."""
    with create_session() as session:
        query = select(TaskInstance).where(
            TaskInstance.dag_id == dag_id,
            TaskInstance.task_id == task_id,
            TaskInstance.state == TaskInstanceState.DEFERRED,
        )
        ti = session.scalars(query.order_by(TaskInstance.start_date.desc())).first()
        trigger = None if ti is None or ti.trigger_id is None else session.get(Trigger, ti.trigger_id)
        if trigger is None:
            return None
        return ti.run_id, str(trigger.kwargs.get("wait_for")), trigger.triggerer_id


def wait_until(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(interval)
    return result
