"""The docs' Python snippets RUN, not only compile: the Airflow page's operators are built inside a DAG and
the RayJobs they would create are validated against KubeRay's CRDs; the core and validation snippets run
as written. (The snippets that talk to a cluster run on the local control plane: tests/e2e/test_docs_snippets.py.)"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SAMPLES_DIR, SHARED_KUBERAY
from tests.unit.test_docs import DOCS, FENCE

IMAGE = "rayproject/ray:2.60.0"


def page_snippets(page: str) -> list[str]:
    return [body for language, body in FENCE.findall((DOCS / page).read_text()) if language == "python"]


def run_snippet(body: str, namespace: dict[str, Any], where: str) -> dict[str, Any]:
    exec(compile(body, where, "exec"), namespace)
    return namespace


@pytest.fixture
def schemas(crds_dir: Path) -> Any:
    from kuberay_provider.core.validation import SchemaRegistry

    return SchemaRegistry.from_directory(crds_dir)


def test_every_airflow_snippet_builds_tasks_whose_rayjobs_are_valid(
    tmp_path: Path, schemas: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.airflow_env import configure_airflow_env

    configure_airflow_env()
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG, XComArg

    from kuberay_provider.airflow.operators import (
        RayClusterCreateOperator,
        RayClusterDeleteOperator,
        RayClusterScaleOperator,
        RayJobOperator,
        RayServiceOperator,
    )
    from kuberay_provider.airflow.sensors import RayJobSensor, RayServiceSensor
    from kuberay_provider.core.clusters import RayClusterRequest
    from kuberay_provider.core.job_request import RunIdentity
    from kuberay_provider.core.services import rayservice_manifest
    from kuberay_provider.core.spec import simple_cluster_spec
    from kuberay_provider.core.validation import validate_manifest
    from tests.support.airflow_fakes import FakeTaskInstance

    monkeypatch.chdir(tmp_path)
    (tmp_path / "jobs").mkdir()
    shutil.copy(SAMPLES_DIR / "ray-job.interactive-mode.yaml", tmp_path / "jobs" / "score.yaml")
    snippets = page_snippets("airflow.md")
    assert len(snippets) >= 6
    built: list[str] = []
    for index, body in enumerate(snippets):
        with DAG(f"docs_airflow_{index}", schedule=None, start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)) as dag:
            # What the page's snippets take as given: a cluster spec, and upstream tasks named score and report.
            given = {
                "cluster": simple_cluster_spec(image=IMAGE),
                "RayJobOperator": RayJobOperator,
                "score": EmptyOperator(task_id="upstream_score"),
                "report": EmptyOperator(task_id="report"),
            }
            run_snippet(body, given, f"docs/airflow.md snippet {index + 1}")
        for task in dag.tasks:
            if isinstance(task, RayJobOperator):
                if isinstance(task.cluster_selector, XComArg):  # what the created cluster's XCom renders to
                    task.cluster_selector = "docs-cluster"
                request = task.build_request({"ti": FakeTaskInstance(dag_id=dag.dag_id, task_id=task.task_id)})
                if not request.runs_without_rayjob:
                    errors = validate_manifest(request.manifest(), schemas)
                    assert errors == [], f"docs/airflow.md snippet {index + 1}, task {task.task_id}: {errors}"
                built.append(task.task_id)
            elif isinstance(task, RayJobSensor):
                built.append(task.task_id)
            elif isinstance(task, RayClusterCreateOperator):
                cluster = RayClusterRequest(
                    RunIdentity(dag.dag_id, task.task_id, "manual__1"),
                    raycluster=task.raycluster,
                    spec=task.spec,
                    spec_params=task.spec_params,
                    name=task.name,
                ).manifest()
                assert validate_manifest(cluster, schemas) == [], (
                    f"docs/airflow.md snippet {index + 1}, task {task.task_id}"
                )
                built.append(task.task_id)
            elif isinstance(task, RayServiceOperator):
                service = rayservice_manifest(task.name, task.namespace, rayservice=task.rayservice, **task.spec_params)
                assert validate_manifest(service, schemas) == [], (
                    f"docs/airflow.md snippet {index + 1}, task {task.task_id}"
                )
                built.append(task.task_id)
            elif isinstance(task, RayServiceSensor):
                built.append(task.task_id)
            elif isinstance(task, (RayClusterScaleOperator, RayClusterDeleteOperator)):
                assert task.is_teardown or task.task_id in dag.get_task("create_cluster").downstream_task_ids
                built.append(task.task_id)
    assert {
        "score",
        "via_rayjob",
        "direct",
        "wait",
        "create_cluster",
        "more_workers",
        "delete_cluster",
        "deploy",
        "served",
    } <= set(built)


def test_the_core_and_validation_snippets_run_as_written(
    tmp_path: Path, schemas: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kuberay_provider.core.errors import ValidationError
    from kuberay_provider.core.validation import validate_manifest

    spec_snippet = page_snippets("core.md")[0]
    monkeypatch.chdir(tmp_path)
    shutil.copy(SAMPLES_DIR / "ray-job.resources.yaml", tmp_path / "rayjob.yaml")
    built = run_snippet(spec_snippet, {}, "docs/core.md snippet 1")
    assert validate_manifest(built["job"], schemas) == []
    assert built["job"]["spec"]["runtimeEnvYAML"] and built["job"]["metadata"]["namespace"] == "ml"
    assert built["base"]["metadata"]["name"] == "other" and built["base"]["spec"]["suspend"] is True
    assert built["base"]["spec"]["entrypoint"] == built["same"]["spec"]["entrypoint"]  # kept from the loaded file

    [validate_snippet] = page_snippets("validate.md")
    monkeypatch.chdir(SHARED_KUBERAY.parent)  # the snippet reads "kuberay/crds", as from a checkout of shared/
    run_snippet(validate_snippet, {"manifest": built["job"]}, "docs/validate.md")
    broken = {**built["job"], "spec": {**built["job"]["spec"], "ttlSecondsAfterFinished": -1}}
    with pytest.raises(ValidationError, match="ttlSecondsAfterFinished"):
        run_snippet(validate_snippet, {"manifest": broken}, "docs/validate.md")


def test_the_connection_json_on_the_airflow_page_works(
    tmp_path: Path, crds_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page's ``export AIRFLOW_CONN_KUBERAY_DEFAULT='...'``, its kubeconfig path pointed at a local plane
    whose context is called ``prod``: the hook connects, uses the namespace and renders the dashboard URL."""
    import json
    import re

    import yaml

    from tests.airflow_env import configure_airflow_env

    configure_airflow_env()
    from kuberay_provider.airflow.hooks import KubeRayHook
    from kuberay_provider.local.plane import LocalControlPlane

    [exported] = re.findall(r"export AIRFLOW_CONN_KUBERAY_DEFAULT='(.*?)'", (DOCS / "airflow.md").read_text(), re.S)
    connection = json.loads(exported)
    with LocalControlPlane(crds_dir=crds_dir, controller=False) as plane:
        kubeconfig = yaml.safe_load(plane.kubeconfig_path.read_text())
        kubeconfig["contexts"][0]["name"] = kubeconfig["current-context"] = "elsewhere"
        kubeconfig["contexts"].append({"name": "prod", "context": {**kubeconfig["contexts"][0]["context"]}})
        (tmp_path / "kubeconfig").write_text(yaml.safe_dump(kubeconfig))
        connection["extra"]["kube_config_path"] = str(tmp_path / "kubeconfig")
        monkeypatch.setenv("AIRFLOW_CONN_KUBERAY_DOCS", json.dumps(connection))
        hook = KubeRayHook("kuberay_docs")
        ok, message = hook.test_connection()
        assert ok, message
        assert "0 RayJob(s) in namespace 'ml'" in message and plane.url in message
        endpoint = hook.dashboard.direct_endpoint(namespace="ml", service="nightly-head-svc")
        assert endpoint.url == "http://nightly-head-svc.ml.svc.cluster.local:8265"
