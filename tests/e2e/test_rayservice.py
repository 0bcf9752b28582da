"""dags/rayservice_deploy.py end to end on the local control plane with the real local Ray Serve: the
first run creates the RayService and ends when it is Ready; a run with a new Serve config updates it in
place and ends once the new config answers (not at the write that first shows the new generation, which
KubeRay makes with the statuses read before the change); a run with a new cluster config waits for
KubeRay's upgrade (a new cluster, traffic moved); the old cluster goes rayClusterDeletionDelaySeconds
(60 s) later. Each time the application answers through the API server's service proxy."""

from __future__ import annotations

from tests.airflow_env import configure_airflow_env

configure_airflow_env()

import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.airflow_env import PROJECT_DAGS_FOLDER
from tests.support.airflow_runs import load_dag, task_instance

pytestmark = [pytest.mark.ray, pytest.mark.timeout(900)]
DAG_ID = "rayservice_deploy"


@pytest.fixture
def scorer(local_plane: Any) -> Iterator[Any]:
    """An admin client for the checks; the RayService is deleted afterwards if the test did not get to
    (the DAG keeps it, as a long-lived service)."""
    from kuberay_provider.core.kube.sync_client import RayObjectsClient
    from kuberay_provider.core.resources import RAYSERVICE

    with local_plane.api_client() as api_client:
        yield api_client
        RayObjectsClient(api_client).delete(RAYSERVICE, "default", "scorer")


def score(api_client: Any, x: float) -> dict[str, Any]:
    response = api_client.call_api(
        "/api/v1/namespaces/{namespace}/services/{name}/proxy/{path}",
        "GET",
        path_params={"namespace": "default", "name": "scorer-serve-svc:serve", "path": "score"},
        query_params=[("x", str(x))],
        auth_settings=["BearerToken"],
        _preload_content=False,
        _return_http_data_only=True,
    )
    return json.loads(response.data)


def deploy(day: int, conf: dict[str, Any] | None = None) -> dict[str, Any]:
    run = load_dag(DAG_ID, PROJECT_DAGS_FOLDER).test(
        logical_date=dt.datetime(2026, 4, day, tzinfo=dt.UTC), run_conf=conf
    )
    assert run.state == "success", {ti.task_id: ti.state for ti in run.get_task_instances()}
    return task_instance(run, "deploy").xcom_pull(task_ids="deploy")


def test_deploy_update_in_place_then_upgrade(airflow: Path, kube: Any, scorer: Any) -> None:
    from kuberay_provider.core.resources import RAYCLUSTER

    created = deploy(1)
    assert created["change"] == "created" and created["ready"] and not created["upgrading"]
    assert created["applications"] == {"scorer": "RUNNING"}
    assert created["serve_endpoint"] == "http://scorer-serve-svc.default.svc.cluster.local:8000"
    assert score(scorer, 3) == {"score": 6.0, "weight": 2.0}

    updated = deploy(2, {"weight": 3.0})  # the Serve config: redeployed in place
    assert updated["change"] == "updated" and updated["active_cluster"] == created["active_cluster"]
    assert score(scorer, 3) == {"score": 9.0, "weight": 3.0}

    upgraded = deploy(3, {"weight": 3.0, "image": "rayproject/ray:2.60.0-py311"})  # the cluster config: an upgrade
    assert upgraded["change"] == "updated" and not upgraded["upgrading"] and not upgraded["pending_cluster"]
    assert upgraded["active_cluster"] != created["active_cluster"] and upgraded["applications"] == {"scorer": "RUNNING"}
    assert score(scorer, 3) == {"score": 9.0, "weight": 3.0}
    # KubeRay deletes the old cluster rayClusterDeletionDelaySeconds (60 s by default) after the switch.
    deadline = time.monotonic() + 120
    while kube.find(RAYCLUSTER, "default", created["active_cluster"]) is not None and time.monotonic() < deadline:
        time.sleep(2)
    assert kube.find(RAYCLUSTER, "default", created["active_cluster"]) is None

    from kuberay_provider.airflow.operators import RayServiceDeleteOperator
    from kuberay_provider.core.resources import RAYSERVICE

    assert (
        RayServiceDeleteOperator(task_id="delete", name="scorer").execute({}) is True
    )  # with the DAG's least-privilege connection
    assert (
        RayServiceDeleteOperator(task_id="delete_again", name="scorer").execute({}) is False
    )  # already gone: not an error
    assert kube.find(RAYSERVICE, "default", "scorer") is None or kube.get(RAYSERVICE, "default", "scorer")[
        "metadata"
    ].get("deletionTimestamp")
