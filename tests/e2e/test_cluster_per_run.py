"""dags/cluster_per_run.py end to end on the local control plane with the real local Ray: a setup task
creates a RayCluster, two RayJobs run on it by clusterSelector, the teardown deletes it, also when a
job fails. And a create that ``execution_timeout`` kills mid-wait deletes the cluster it created."""

from __future__ import annotations

from tests.airflow_env import configure_airflow_env

configure_airflow_env()

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from tests.airflow_env import PROJECT_DAGS_FOLDER
from tests.support.airflow_runs import load_dag, rayjobs_of, task_instance
from tests.support.cluster_under_test import JOBS_NAMESPACE

pytestmark = pytest.mark.ray
DAG_ID = "cluster_per_run"


def run_dag(day: int, conf: dict[str, Any] | None = None) -> Any:
    return load_dag(DAG_ID, PROJECT_DAGS_FOLDER).test(
        logical_date=dt.datetime(2026, 3, day, tzinfo=dt.UTC), run_conf=conf
    )


def created_cluster(run: Any) -> dict[str, Any]:
    return task_instance(run, "create_cluster").xcom_pull(task_ids="create_cluster")


def test_jobs_run_on_the_runs_own_cluster_which_the_teardown_deletes(
    airflow: Path, kube: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    from kuberay_provider.core.resources import RAYCLUSTER

    run = run_dag(1)
    out = capfd.readouterr().out
    assert run.state == "success", out[-3000:]
    cluster = created_cluster(run)
    assert cluster["created"] and cluster["state"] == "ready" and cluster["head_pod_ready"], cluster
    assert "[ray] prepared rows 1000 checksum 2997" in out and "[ray] trained epochs 3" in out
    scaled = task_instance(run, "add_workers").xcom_pull(task_ids="add_workers")
    assert (scaled["ready_workers"], scaled["desired_workers"]) == (2, 2)
    for task_id in ("prepare", "train"):
        [rayjob] = rayjobs_of(kube, DAG_ID, task_id, run.run_id)
        assert rayjob["spec"]["clusterSelector"] == {"ray.io/cluster": cluster["name"]}
        assert rayjob["status"]["jobStatus"] == "SUCCEEDED"
    assert kube.find(RAYCLUSTER, JOBS_NAMESPACE, cluster["name"]) is None


def test_the_cluster_is_deleted_when_a_job_fails(airflow: Path, kube: Any, capfd: pytest.CaptureFixture[str]) -> None:
    from kuberay_provider.core.resources import RAYCLUSTER

    run = run_dag(2, {"train_epochs": 0})
    out = capfd.readouterr().out
    assert run.state == "failed", out[-3000:]
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states == {
        "create_cluster": "success",
        "prepare": "success",
        "add_workers": "success",
        "train": "failed",
        "delete_cluster": "success",
    }
    assert "train_epochs must be positive, got 0" in out
    assert kube.find(RAYCLUSTER, JOBS_NAMESPACE, created_cluster(run)["name"]) is None


def test_a_create_killed_by_execution_timeout_deletes_the_cluster_it_created(
    airflow: Path, kube: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    from kuberay_provider.core.resources import RAYCLUSTER

    killed = "e2e-killed"  # tests/e2e/airflow_dags/raycluster_killed.py
    run = load_dag("kuberay_e2e_cluster_killed").test()
    out = capfd.readouterr().out
    assert run.state == "failed", out[-3000:]
    # Airflow calls on_kill after execution_timeout; the try had created the cluster, so it goes.
    assert f"Task killed: deleting RayCluster {JOBS_NAMESPACE}/{killed}, which this try created" in out, out[-3000:]
    left = kube.find(RAYCLUSTER, JOBS_NAMESPACE, killed)
    assert left is None or left["metadata"].get("deletionTimestamp"), left
