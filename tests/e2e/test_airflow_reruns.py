"""Running a task again through real Airflow on the local plane and the session's real Ray: "Clear" and a
backfill that reprocesses existing runs run the Ray job anew (its RayJob was consumed by the try that
reported it); a timeout on the last try deletes the RayJob. Test DAGs: tests/e2e/airflow_dags/rayjob_reruns.py."""

from __future__ import annotations

from tests.airflow_env import configure_airflow_env

configure_airflow_env()

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest

from tests.support.airflow_runs import airflow_cli, load_dag, rayjobs_of, run_existing, task_instance
from tests.support.cluster_under_test import JOBS_NAMESPACE

pytestmark = pytest.mark.ray


def tokens(out: str, day: str) -> list[str]:
    """The tokens the Ray jobs of one logical date printed: one per job that ran."""
    return re.findall(rf"\[ray\] E2E-RERUN-MARKER {day} ([0-9a-f]{{32}})", out)


def the_rayjob(kube: Any, dag_id: str, run_id: str) -> dict[str, Any]:
    [rayjob] = rayjobs_of(kube, dag_id, "score", run_id)
    return rayjob


def test_clearing_a_succeeded_task_runs_its_ray_job_again(
    airflow: Path, kube: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    from kuberay_provider.core.naming import ANNOTATION_CONSUMED_BY_TRY, ANNOTATION_FIRST_TRY, ANNOTATION_TRY_NUMBER

    dag = load_dag("kuberay_e2e_clear")
    run = dag.test()
    first = capfd.readouterr().out
    assert run.state == "success", first[-3000:]
    first_outcome = task_instance(run, "score").xcom_pull(task_ids="score")
    assert the_rayjob(kube, dag.dag_id, run.run_id)["metadata"]["annotations"][ANNOTATION_CONSUMED_BY_TRY] == "1"

    day = run.logical_date.isoformat()
    # The whole DAG (one task): on Airflow 3.3.2 "-t <regex>" selects no task (partial_subset takes ids, not a regex).
    airflow_cli("tasks", "clear", dag.dag_id, "-s", day, "-e", day, "-y")
    again = run_existing(dag, run.run_id)
    second = capfd.readouterr().out
    assert again.state == "success", second[-3000:]
    ti = task_instance(again, "score")
    assert ti.try_number == 2 and ti.max_tries == 2  # Airflow's clear: a new series of tries begins at try 2
    outcome = ti.xcom_pull(task_ids="score")
    assert outcome["job_id"] != first_outcome["job_id"] and outcome["succeeded"]
    assert "reported its outcome before the task was cleared" in second and "Re-attached" not in second
    ds = run.logical_date.strftime("%Y-%m-%d")
    assert len(tokens(first, ds)) == 1 and len(tokens(second, ds)) == 1 and tokens(first, ds) != tokens(second, ds)
    annotations = the_rayjob(kube, dag.dag_id, run.run_id)["metadata"]["annotations"]  # one RayJob: the new one
    assert (
        annotations[ANNOTATION_TRY_NUMBER],
        annotations[ANNOTATION_FIRST_TRY],
        annotations[ANNOTATION_CONSUMED_BY_TRY],
    ) == ("2", "2", "2")


def test_a_backfill_reprocessing_two_dates_runs_each_once_more(
    airflow: Path, kube: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    dag = load_dag("kuberay_e2e_backfill_reprocess")
    days = [dt.datetime(2026, 3, day, tzinfo=dt.UTC) for day in (1, 2)]
    runs = [dag.test(logical_date=day) for day in days]
    first = capfd.readouterr().out
    assert [run.state for run in runs] == ["success", "success"], first[-3000:]
    first_jobs = {run.run_id: task_instance(run, "score").xcom_pull(task_ids="score")["job_id"] for run in runs}

    airflow_cli(
        "backfill",
        "create",
        "--dag-id",
        dag.dag_id,
        "--from-date",
        "2026-03-01",
        "--to-date",
        "2026-03-02",
        "--reprocess-behavior",
        "completed",
    )
    again = [run_existing(dag, run.run_id) for run in runs]  # the backfill cleared them in place: same run ids
    second = capfd.readouterr().out
    assert [run.state for run in again] == ["success", "success"], second[-3000:]
    for run in again:
        ti = task_instance(run, "score")
        assert (ti.try_number, run.run_type) == (2, "backfill")
        assert ti.xcom_pull(task_ids="score")["job_id"] != first_jobs[run.run_id]
        assert len(rayjobs_of(kube, dag.dag_id, "score", run.run_id)) == 1
    for day in ("2026-03-01", "2026-03-02"):
        assert len(tokens(first, day)) == 1 and len(tokens(second, day)) == 1, second[-3000:]  # once more, not twice


def test_a_timeout_on_the_last_try_deletes_the_rayjob_unless_kept(
    airflow: Path, kube: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    from kuberay_provider.core.lifecycle import RayJobLifecycle

    dag = load_dag("kuberay_e2e_final_timeout")
    run = dag.test()
    out = capfd.readouterr().out
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states == {"wait_times_out": "failed", "execution_times_out": "failed", "kept": "failed"}, out[-3000:]
    assert "wait_timeout ended the last try's wait and no retry follows: deleting RayJob" in out
    assert "execution_timeout ended the last try's wait and no retry follows: deleting RayJob" in out
    for task_id in ("wait_times_out", "execution_times_out"):
        left = rayjobs_of(kube, dag.dag_id, task_id, run.run_id)
        assert all(rayjob["metadata"].get("deletionTimestamp") for rayjob in left), task_id  # gone, or going
    [kept] = rayjobs_of(kube, dag.dag_id, "kept", run.run_id)
    assert not kept["metadata"].get("deletionTimestamp") and "is kept (delete_on_final_timeout=False)" in out
    RayJobLifecycle(kube).delete(
        JOBS_NAMESPACE, kept["metadata"]["name"]
    )  # its job sleeps for minutes: not on this session's Ray
