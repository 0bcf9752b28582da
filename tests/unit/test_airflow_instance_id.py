"""The ``instance_id`` field of the ``kuberay`` connection: read and checked by the hook, and carried into
what RayJobOperator, RayClusterCreateOperator and RayJobCleanupOperator create and select."""

from __future__ import annotations

from tests.airflow_env import configure_airflow_env

configure_airflow_env()

import json
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from kuberay_provider.airflow import get_provider_info
from kuberay_provider.airflow.hooks import KubeRayHook
from kuberay_provider.airflow.operators import RayClusterCreateOperator, RayJobCleanupOperator, RayJobOperator
from kuberay_provider.core.clusters import RayClusterRequest
from kuberay_provider.core.errors import ConfigurationError
from kuberay_provider.core.job_request import RunIdentity
from kuberay_provider.core.naming import LABEL_INSTANCE
from kuberay_provider.core.spec import simple_cluster_spec
from tests.support.airflow_fakes import FakeTaskInstance

CONN_ID = "kuberay_instance"
CLUSTER = simple_cluster_spec(image="rayproject/ray:2.60.0")


@pytest.fixture
def connection(monkeypatch: pytest.MonkeyPatch):
    def use(**extra: object) -> None:
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps({"conn_type": "kuberay", "extra": extra}))

    return use


def test_the_connection_form_has_the_field():
    [conn] = get_provider_info()["connection-types"]
    assert conn["conn-fields"]["instance_id"]["schema"] == {"type": ["string", "null"]}


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, ""),
        ({"instance_id": None}, ""),
        ({"instance_id": ""}, ""),
        ({"instance_id": "prod"}, "prod"),
        ({"instance_id": " staging "}, "staging"),
    ],
)
def test_the_hook_reads_the_instance_id(connection, extra: dict[str, Any], expected: str):
    connection(namespace="ml", **extra)
    assert KubeRayHook(kuberay_conn_id=CONN_ID).instance_id == expected


def test_an_invalid_instance_id_names_the_connection_and_the_field(connection):
    connection(instance_id="Prod_1")
    with pytest.raises(
        ConfigurationError, match=rf"connection '{CONN_ID}': instance_id='Prod_1' is not a valid instance id"
    ):
        KubeRayHook(kuberay_conn_id=CONN_ID).instance_id  # noqa: B018


def test_the_rayjob_operator_names_and_labels_its_rayjob_with_the_instance_id(connection):
    context = {"ti": FakeTaskInstance()}
    op = RayJobOperator(
        task_id="score", entrypoint="python x.py", ray_cluster_spec=CLUSTER, namespace="ml", kuberay_conn_id=CONN_ID
    )
    connection(instance_id="prod")
    prod = op._request(context)
    assert prod.identity == RunIdentity("nightly", "score", "scheduled__2026-01-01", -1, "prod")
    assert (
        prod.rayjob_name == prod.identity.rayjob_name
        and prod.manifest()["metadata"]["labels"][LABEL_INSTANCE] == "prod"
    )
    connection()
    plain = RayJobOperator(
        task_id="score", entrypoint="python x.py", ray_cluster_spec=CLUSTER, namespace="ml", kuberay_conn_id=CONN_ID
    )._request(context)
    assert plain.rayjob_name == RunIdentity("nightly", "score", "scheduled__2026-01-01").rayjob_name != prod.rayjob_name
    assert LABEL_INSTANCE not in plain.manifest()["metadata"]["labels"]


def test_an_invalid_instance_id_fails_the_task_without_retries(connection):
    connection(instance_id="-prod")
    op = RayJobOperator(
        task_id="score", entrypoint="python x.py", ray_cluster_spec=CLUSTER, namespace="ml", kuberay_conn_id=CONN_ID
    )
    with pytest.raises(AirflowFailException, match="instance_id='-prod'"):
        op.execute({"ti": FakeTaskInstance()})


class Recorder:
    """A lifecycle stand-in: records what the operator asks of it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def delete_run(
        self, namespace: str, owner: str, run_id: str, tasks: Any = None, *, instance: str = ""
    ) -> list[str]:
        self.calls.append(("delete_run", (namespace, owner, run_id, tasks, instance)))
        return ["deleted"]

    def validate(self, manifest: dict[str, Any]) -> None:
        self.calls.append(("validate", manifest))

    def create_or_attach(self, manifest: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        return manifest, True

    def state(self, namespace: str, name: str) -> None:
        return None


@pytest.mark.parametrize("instance", ["", "prod"])
def test_the_cleanup_operator_selects_only_its_instance(connection, monkeypatch: pytest.MonkeyPatch, instance: str):
    connection(instance_id=instance)
    recorder = Recorder()
    monkeypatch.setattr(KubeRayHook, "lifecycle", lambda self, **_: recorder)
    deleted = RayJobCleanupOperator(task_id="cleanup", namespace="ml", kuberay_conn_id=CONN_ID).execute(
        {"ti": FakeTaskInstance()}
    )
    assert deleted == ["deleted"] and recorder.calls == [
        ("delete_run", ("ml", "nightly", "scheduled__2026-01-01", None, instance))
    ]


def test_the_cleanup_operator_refuses_an_invalid_instance_id(connection, monkeypatch: pytest.MonkeyPatch):
    connection(instance_id="prod_eu")
    monkeypatch.setattr(KubeRayHook, "lifecycle", lambda self, **_: Recorder())
    with pytest.raises(AirflowFailException, match="instance_id='prod_eu'"):
        RayJobCleanupOperator(task_id="cleanup", namespace="ml", kuberay_conn_id=CONN_ID).execute(
            {"ti": FakeTaskInstance()}
        )


def test_a_cluster_per_run_carries_the_instance_id(connection, monkeypatch: pytest.MonkeyPatch):
    connection(instance_id="prod")
    recorder = Recorder()
    monkeypatch.setattr(KubeRayHook, "cluster_lifecycle", lambda self, **_: recorder)
    op = RayClusterCreateOperator(
        task_id="create_cluster", spec=CLUSTER, namespace="ml", wait_until_ready=False, kuberay_conn_id=CONN_ID
    )
    result = op.execute({"ti": FakeTaskInstance(task_id="create_cluster")})
    [(_, manifest)] = [call for call in recorder.calls if call[0] == "validate"]
    prod = RunIdentity("nightly", "create_cluster", "scheduled__2026-01-01", -1, "prod")
    labels = manifest["metadata"]["labels"]
    assert labels[LABEL_INSTANCE] == "prod" and labels["kuberay-provider.io/run-key"] == prod.key
    plain = RunIdentity("nightly", "create_cluster", "scheduled__2026-01-01")
    assert (
        result["name"]
        == manifest["metadata"]["name"]
        == RayClusterRequest(prod).cluster_name
        != RayClusterRequest(plain).cluster_name
    )


class TaskStateStore:
    """Airflow 3.3's ``task_state_store``: a task's own keys, kept across its tries."""

    def __init__(self, **values: Any) -> None:
        self.values: dict[str, Any] = dict(values)

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.values[key] = value


def test_a_retry_follows_the_rayjob_recorded_before_the_instance_id_was_set(connection):
    from kuberay_provider.airflow.operators import TASK_STATE_KEY

    before = RunIdentity("nightly", "score", "scheduled__2026-01-01", -1)
    connection(instance_id="prod")
    op = RayJobOperator(
        task_id="score", entrypoint="python x.py", ray_cluster_spec=CLUSTER, namespace="ml", kuberay_conn_id=CONN_ID
    )
    upgraded = TaskStateStore(**{TASK_STATE_KEY: {"namespace": "ml", "name": before.rayjob_name}})
    followed = op._request({"ti": FakeTaskInstance(try_number=2), "task_state_store": upgraded})
    # Its own RayJob, under the identity it was made with: the run keys match, so it re-attaches.
    assert followed.identity == before and followed.rayjob_name == before.rayjob_name
    assert followed.manifest()["metadata"]["labels"]["kuberay-provider.io/run-key"] == before.key

    store = TaskStateStore()
    first = op._request({"ti": FakeTaskInstance(), "task_state_store": store})
    op._remember({"ti": FakeTaskInstance(), "task_state_store": store}, first)
    assert store.values[TASK_STATE_KEY] == {"namespace": "ml", "name": first.rayjob_name, "instance": "prod"}
    retry = op._request({"ti": FakeTaskInstance(try_number=2), "task_state_store": store})
    assert (retry.rayjob_name, retry.identity.instance) == (first.rayjob_name, "prod")
