"""Two Airflow deployments in one namespace, through real Airflow (dag.test()) on the local plane and the
session's real Ray: "prod" (connection field ``instance_id="prod"``) and "staging" (no instance id) run the
same DAG, task and run. Each gets a RayJob of its own and its own job's outcome, and each one's
RayJobCleanupOperator deletes only its own RayJobs. Test DAG: tests/e2e/airflow_dags/rayjob_instances.py."""

from __future__ import annotations

from tests.airflow_env import configure_airflow_env

configure_airflow_env()

import datetime as dt
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.support.airflow_runs import load_dag, task_instance
from tests.support.cluster_under_test import JOBS_NAMESPACE

pytestmark = pytest.mark.ray
CONN_ENV = "AIRFLOW_CONN_KUBERAY_DEFAULT"
DAG_ID = "kuberay_e2e_instances"
DAY = dt.datetime(2026, 4, 1, tzinfo=dt.UTC)
SAME_RUN = {"logical_date": DAY, "run_after": DAY}  # dag.test() names the run after run_after: one run_id for both
INSTANCE_LABEL = "kuberay-provider.io/instance"


def deploy(monkeypatch: pytest.MonkeyPatch, connection: dict[str, Any], instance_id: str | None) -> None:
    """Be one deployment: the session's ``kuberay_default`` connection, with this deployment's instance id."""
    extra = {**connection["extra"], **({"instance_id": instance_id} if instance_id else {})}
    monkeypatch.setenv(CONN_ENV, json.dumps({**connection, "extra": extra}))


def tokens(out: str) -> list[str]:
    return re.findall(r"\[ray\] E2E-INSTANCE-MARKER ([0-9a-f]{32})", out)


def rayjobs(kube: Any) -> dict[str, dict[str, Any]]:
    """Every RayJob of the DAG in the namespace, whichever deployment made it."""
    from kuberay_provider.core.naming import LABEL_OWNER
    from kuberay_provider.core.resources import RAYJOB

    return {
        rayjob["metadata"]["name"]: rayjob
        for rayjob in kube.list(RAYJOB, JOBS_NAMESPACE, label_selector=f"{LABEL_OWNER}={DAG_ID}")
    }


def is_gone(rayjobs_now: dict[str, dict[str, Any]], name: str) -> bool:
    return name not in rayjobs_now or bool(rayjobs_now[name]["metadata"].get("deletionTimestamp"))


def test_two_deployments_in_one_namespace_keep_to_their_own_rayjobs(
    airflow: Path, kube: Any, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    connection = json.loads(os.environ[CONN_ENV])
    dag = load_dag(DAG_ID)

    # prod runs the task; its cleanup waits (marked success without running), so its RayJob stays.
    deploy(monkeypatch, connection, "prod")
    prod = dag.test(**SAME_RUN, mark_success_pattern="cleanup")
    out = capfd.readouterr().out
    assert prod.state == "success", out[-3000:]
    prod_outcome = task_instance(prod, "score").xcom_pull(task_ids="score")
    prod_rayjob = rayjobs(kube)[prod_outcome["rayjob_name"]]
    assert len(tokens(out)) == 1

    # staging (no instance id) runs the same dag, task and run, then its cleanup, while prod's RayJob exists.
    deploy(monkeypatch, connection, None)
    staging = dag.test(**SAME_RUN)
    out = capfd.readouterr().out
    assert staging.state == "success" and staging.run_id == prod.run_id, out[-3000:]
    staging_outcome = task_instance(staging, "score").xcom_pull(task_ids="score")
    assert staging_outcome["rayjob_name"] != prod_outcome["rayjob_name"], "staging took prod's RayJob"
    assert staging_outcome["job_id"] != prod_outcome["job_id"] and staging_outcome["succeeded"]
    assert len(tokens(out)) == 1 and "re-attaching" not in out and "deleting it to run the job anew" not in out, out[
        -3000:
    ]
    assert task_instance(staging, "cleanup").xcom_pull(task_ids="cleanup") == [staging_outcome["rayjob_name"]]
    now = rayjobs(kube)
    assert is_gone(now, staging_outcome["rayjob_name"])
    kept = now[prod_outcome["rayjob_name"]]  # untouched by staging's task and staging's cleanup
    assert kept["metadata"]["uid"] == prod_rayjob["metadata"]["uid"] and not kept["metadata"].get("deletionTimestamp")
    assert kept["status"]["jobId"] == prod_outcome["job_id"] and kept["metadata"]["labels"][INSTANCE_LABEL] == "prod"

    # prod's cleanup, later: only prod's RayJob.
    deploy(monkeypatch, connection, "prod")
    cleaned = dag.test(**SAME_RUN, mark_success_pattern="score")
    out = capfd.readouterr().out
    assert cleaned.state == "success", out[-3000:]
    assert task_instance(cleaned, "cleanup").xcom_pull(task_ids="cleanup") == [prod_outcome["rayjob_name"]]
    assert is_gone(rayjobs(kube), prod_outcome["rayjob_name"])
