"""OpenLineage end to end: with the OpenLineage provider enabled, the Ray job of a real Airflow run
(dag.test() on the local control plane) sees its task's OpenLineage run as parent and the DAG run as root,
the ids computed independently here from the provider's own run-id builders."""

from __future__ import annotations

from tests.airflow_env import configure_airflow_env

configure_airflow_env()

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.airflow_runs import load_dag, rayjobs_of, task_instance

pytestmark = pytest.mark.ray
DAG_ID = "kuberay_e2e_lineage"
NAMESPACE = "kuberay-e2e"


def expected_env(run: Any, task_id: str) -> dict[str, str]:
    """The parent (the task's try) and root (the DAG run) as the OpenLineage listener names them."""
    from airflow.providers.openlineage.plugins.adapter import OpenLineageAdapter

    ti = task_instance(run, task_id)
    logical_date = run.logical_date or run.run_after
    run_id = OpenLineageAdapter.build_task_instance_run_id(
        dag_id=DAG_ID, task_id=task_id, try_number=ti.try_number, logical_date=logical_date, map_index=ti.map_index
    )
    root_run_id = OpenLineageAdapter.build_dag_run_id(
        dag_id=DAG_ID, logical_date=logical_date, clear_number=run.clear_number
    )
    parent, root = (NAMESPACE, f"{DAG_ID}.{task_id}", run_id), (NAMESPACE, DAG_ID, root_run_id)
    return {
        "OPENLINEAGE_PARENT_ID": "/".join(parent),
        "OPENLINEAGE_ROOT_PARENT_ID": "/".join(root),
        **{
            f"OPENLINEAGE_PARENT_{part}": value
            for part, value in zip(("JOB_NAMESPACE", "JOB_NAME", "RUN_ID"), parent, strict=False)
        },
        **{
            f"OPENLINEAGE_ROOT_PARENT_{part}": value
            for part, value in zip(("JOB_NAMESPACE", "JOB_NAME", "RUN_ID"), root, strict=False)
        },
    }


def test_the_ray_job_sees_its_task_as_openlineage_parent(
    airflow: Path, kube: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    # OpenLineage is on once a transport is configured; the file transport keeps any events the listener sends.
    monkeypatch.setenv(
        "AIRFLOW__OPENLINEAGE__TRANSPORT", json.dumps({"type": "file", "log_file_path": str(tmp_path / "ol.jsonl")})
    )
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__NAMESPACE", NAMESPACE)
    run = load_dag(DAG_ID).test()
    out = capfd.readouterr().out
    assert run.state == "success", out[-3000:]

    [line] = [line for line in out.splitlines() if "[ray] E2E-LINEAGE " in line]  # KubeRay's submitter ran it
    seen, _ = json.JSONDecoder().raw_decode(line.split("[ray] E2E-LINEAGE ", 1)[1])  # the logger appends its fields
    assert seen == expected_env(run, "score")
    [rayjob] = rayjobs_of(kube, DAG_ID, "score", run.run_id)
    assert yaml.safe_load(rayjob["spec"]["runtimeEnvYAML"])["env_vars"] == {
        **expected_env(run, "score"),
        "GREETING": "hello",
    }

    # @task.kuberay: submitted through the Ray Jobs SDK, the function reads its own environment.
    assert task_instance(run, "lineage_env").xcom_pull(task_ids="lineage_env") == expected_env(run, "lineage_env")
