"""The example DAGs in dags/ (what users copy) end to end: real Airflow (dag.test()) on the local control
plane and the session's real Ray."""

from __future__ import annotations

from tests.airflow_env import configure_airflow_env

configure_airflow_env()

import datetime as dt
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.airflow_env import PROJECT_DAGS_FOLDER
from tests.support.airflow_runs import load_dag, rayjobs_of, task_instance, wait_until
from tests.support.clusters import ready_raycluster

pytestmark = [
    pytest.mark.ray,
    pytest.mark.local_only("example jobs that read and write this machine's disk (the local Ray runs them here)"),
]


def on(day: int) -> dt.datetime:
    return dt.datetime(2026, 1, day, tzinfo=dt.UTC)


@pytest.fixture
def data_root(tmp_path: Path) -> Iterator[Path]:
    """The examples' data root, through the Airflow Variable they read."""
    os.environ["AIRFLOW_VAR_KUBERAY_EXAMPLE_DATA_ROOT"] = str(tmp_path)
    yield tmp_path
    os.environ.pop("AIRFLOW_VAR_KUBERAY_EXAMPLE_DATA_ROOT", None)


def partition_rows(data_root: Path, date: str) -> int:
    return len(pd.read_parquet(data_root / "output" / f"date={date}"))


def test_batch_inference_dag_writes_the_days_partition(
    airflow: Path, data_root: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    run = load_dag("batch_inference", PROJECT_DAGS_FOLDER).test(logical_date=on(15))
    out = capfd.readouterr().out
    assert run.state == "success", out[-3000:]
    partition = data_root / "output" / "date=2026-01-15"
    summary: dict[str, Any] = json.loads((partition / "_SUMMARY.json").read_text())
    assert summary["output"] == str(partition) and summary["rows"] == partition_rows(data_root, "2026-01-15") == 2000
    assert "[ray] scored 2000 rows for 2026-01-15" in out  # the Ray job's own output, in the task log


def test_backfill_of_three_dates_writes_three_partitions_and_leaves_no_rayjob(
    airflow: Path, kube: Any, data_root: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from kuberay_provider.core.naming import LABEL_OWNER, label_value
    from kuberay_provider.core.resources import RAYCLUSTER, RAYJOB

    dag_id = "batch_inference_backfill"
    dag = load_dag(dag_id, PROJECT_DAGS_FOLDER)
    states, clusters = [], set()

    def run_date(day: int) -> None:
        run = dag.test(logical_date=on(day))
        states.append(run.state)
        clusters.add(task_instance(run, "score").xcom_pull(task_ids="score")["cluster_name"])

    for day in (1, 2, 3):
        run_date(day)
    # Re-running a date (a cleared task, a second backfill) replaces that date's partition.
    sentinel = data_root / "output" / "date=2026-01-02" / "left-from-the-first-run"
    sentinel.touch()
    run_date(2)
    out = capfd.readouterr().out
    assert states == ["success"] * 4, out[-3000:]

    dates = ["2026-01-01", "2026-01-02", "2026-01-03"]
    assert sorted(p.name for p in (data_root / "output").iterdir()) == [f"date={d}" for d in dates]
    assert [partition_rows(data_root, d) for d in dates] == [2000, 2000, 2000]  # replaced, not appended to
    assert not sentinel.exists()
    assert out.count("Created RayJob") == 4  # one per date run, the re-run's included: never two at once

    owned = f"{LABEL_OWNER}={label_value(dag_id)}"
    wait_until(lambda: not kube.list(RAYJOB, "default", label_selector=owned), 120, "the backfill's RayJobs to be gone")
    wait_until(
        lambda: all(kube.find(RAYCLUSTER, "default", name) is None for name in clusters),
        120,
        "the backfill's RayClusters to be gone",
    )


def test_shared_cluster_jobs_run_on_the_selected_cluster_and_leave_it_alive(
    airflow: Path, kube: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    from kuberay_provider.core.resources import RAYCLUSTER

    cluster = ready_raycluster(kube, "shared-ray")
    run = load_dag("shared_cluster_jobs", PROJECT_DAGS_FOLDER).test(logical_date=on(1).replace(hour=7))
    out = capfd.readouterr().out
    assert run.state == "success", out[-3000:]
    assert "[ray] feature rows 328350" in out and "[ray] report for hour 7" in out
    direct = task_instance(run, "refresh_features").xcom_pull(task_ids="refresh_features")
    assert direct["cluster_name"] == cluster and direct["rayjob_name"] == ""  # straight through the SDK
    [rayjob] = rayjobs_of(kube, "shared_cluster_jobs", "report", run.run_id)
    assert rayjob["spec"]["clusterSelector"] == {"ray.io/cluster": cluster}
    alive = kube.find(RAYCLUSTER, "default", cluster)
    assert alive is not None and not alive["metadata"].get("deletionTimestamp")


def test_the_documented_backfill_command_plans_the_three_dates(airflow: Path, data_root: Path) -> None:
    """docs/examples.md's ``airflow backfill create`` for the backfill DAG, as a dry run (no scheduler
    here): Airflow plans one run per date of the range."""
    import subprocess
    import sys

    airflow_cli = str(Path(sys.executable).parent / "airflow")
    # What a dag processor does before any backfill: the project's DAGs parsed into the metadata DB.
    subprocess.run(
        [airflow_cli, "dags", "reserialize", "--bundle-name", "project-dags"],
        check=True,
        capture_output=True,
        timeout=180,
        env=os.environ.copy(),
    )
    command = [
        airflow_cli,
        "backfill",
        "create",
        "--dag-id",
        "batch_inference_backfill",
        "--from-date",
        "2026-02-01",
        "--to-date",
        "2026-02-03",
        "--dry-run",
    ]
    planned = subprocess.run(command, capture_output=True, text=True, timeout=180, env=os.environ.copy())
    assert planned.returncode == 0, planned.stdout + planned.stderr
    # February: dates no other test ran, so none is skipped as already run (Airflow's default reprocessing).
    for date in ("2026-02-01", "2026-02-02", "2026-02-03"):
        assert date in planned.stdout, planned.stdout
    assert "2026-02-04" not in planned.stdout
