"""RayJobOperator argument handling, and validation errors raised before anything is created."""

from __future__ import annotations

from tests.airflow_env import configure_airflow_env

configure_airflow_env()

import dataclasses
from dataclasses import dataclass
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from kuberay_provider.airflow.operators import RayJobOperator
from kuberay_provider.core.lifecycle import RayJobLifecycle
from kuberay_provider.core.naming import (
    ANNOTATION_TRY_NUMBER,
    LABEL_MAP_INDEX,
    LABEL_OWNER,
    LABEL_RUN_ID,
    LABEL_RUN_KEY,
    LABEL_TASK,
)
from kuberay_provider.core.validation import SchemaRegistry
from tests.support.airflow_fakes import FakeTaskInstance, RecordingKube

CLUSTER = {
    "headGroupSpec": {
        "rayStartParams": {},
        "template": {"spec": {"containers": [{"name": "head", "image": "rayproject/ray:2.60.0"}]}},
    }
}


def operator(**kwargs: Any) -> RayJobOperator:
    return RayJobOperator(task_id="score", **kwargs)


def test_every_rayjob_spec_field_is_a_keyword():
    op = operator(
        entrypoint="python x.py",
        ray_cluster_spec=CLUSTER,
        shutdown_after_job_finishes=True,
        ttl_seconds_after_finished=60,
        runtime_env={"pip": ["numpy"]},
        active_deadline_seconds=600,
    )
    manifest = op.build_request({"ti": FakeTaskInstance()}).manifest()
    assert manifest["spec"]["shutdownAfterJobFinishes"] is True and manifest["spec"]["ttlSecondsAfterFinished"] == 60
    assert manifest["spec"]["runtimeEnvYAML"].strip() == "pip:\n- numpy"
    assert manifest["spec"]["activeDeadlineSeconds"] == 600


def test_unknown_keywords_are_refused():
    with pytest.raises(Exception, match="shutdown_after_job_finish"):
        operator(entrypoint="python x.py", shutdown_after_job_finish=True)


def test_a_rayjob_is_required():
    with pytest.raises(ValueError, match="needs a RayJob"):
        operator()


def test_deferrable_direct_sdk_submission_is_refused():
    with pytest.raises(ValueError, match="deferrable"):
        operator(entrypoint="python x.py", cluster_selector="shared", submit_via="sdk", deferrable=True)


def test_submit_via_must_be_known():
    with pytest.raises(ValueError):
        operator(entrypoint="python x.py", submit_via="carrier-pigeon")


def test_name_and_run_key_come_from_the_run_identity():
    op = operator(entrypoint="python x.py", ray_cluster_spec=CLUSTER)
    first = op.build_request({"ti": FakeTaskInstance()}).manifest()
    retry = op.build_request({"ti": FakeTaskInstance(try_number=2)}).manifest()
    other_run = op.build_request({"ti": FakeTaskInstance(run_id="scheduled__2026-01-02")}).manifest()
    mapped = op.build_request({"ti": FakeTaskInstance(map_index=3)}).manifest()
    assert (first["metadata"]["name"], first["metadata"]["labels"]) == (
        retry["metadata"]["name"],
        retry["metadata"]["labels"],
    )
    assert retry["metadata"]["annotations"][ANNOTATION_TRY_NUMBER] == "2"
    assert first["metadata"]["name"].startswith("nightly-score-") and len(first["metadata"]["name"]) <= 47
    assert len({m["metadata"]["name"] for m in (first, other_run, mapped)}) == 3
    assert first["metadata"]["labels"][LABEL_RUN_KEY] != other_run["metadata"]["labels"][LABEL_RUN_KEY]


def test_the_rayjob_is_labelled_with_dag_task_run_and_map_index():
    op = operator(entrypoint="python x.py", ray_cluster_spec=CLUSTER, labels={"team": "ml"})
    ti = FakeTaskInstance(dag_id="nightly", run_id="manual__2026-01-01T00:00:00+00:00", map_index=3)
    labels = op.build_request({"ti": ti}).manifest()["metadata"]["labels"]
    assert labels["team"] == "ml" and labels[LABEL_RUN_KEY]
    assert (labels[LABEL_OWNER], labels[LABEL_TASK], labels[LABEL_MAP_INDEX]) == ("nightly", "score", "3")
    assert labels[LABEL_RUN_ID].startswith("manual__2026-01-01T00_00_00_00_00-") and len(labels[LABEL_RUN_ID]) <= 63


def test_base_manifest_from_rendered_yaml_with_keyword_overrides():
    rendered = "apiVersion: ray.io/v1\nkind: RayJob\nmetadata:\n  name: ignored\n  namespace: ml\nspec:\n  entrypoint: python a.py\n  shutdownAfterJobFinishes: false\n"
    op = operator(rayjob=rendered, shutdown_after_job_finishes=True, ray_cluster_spec=CLUSTER)
    manifest = op.build_request({"ti": FakeTaskInstance()}).manifest()
    assert manifest["metadata"]["namespace"] == "ml" and manifest["metadata"]["name"] != "ignored"
    assert manifest["spec"]["entrypoint"] == "python a.py" and manifest["spec"]["shutdownAfterJobFinishes"] is True


def test_modes_shape_the_rayjob():
    ti = {"ti": FakeTaskInstance()}
    sdk = operator(entrypoint="python x.py", ray_cluster_spec=CLUSTER, submit_via="sdk").build_request(ti).manifest()
    assert sdk["spec"]["submissionMode"] == "InteractiveMode"
    selector = operator(entrypoint="python x.py", cluster_selector="shared").build_request(ti).manifest()
    assert selector["spec"]["clusterSelector"] == {"ray.io/cluster": "shared"}
    direct = operator(entrypoint="python x.py", cluster_selector="shared", submit_via="sdk").build_request(ti)
    assert direct.runs_without_rayjob and direct.submission().submission_id == direct.rayjob_name + "-sdk"


def test_template_fields_cover_the_spec_and_only_the_manifest_is_a_file():
    assert {"rayjob", "spec_params", "namespace", "name", "cluster_selector"} <= set(RayJobOperator.template_fields)
    # No extension makes a nested string a file (tests/unit/test_airflow_mapping.py): rayjob alone is read.
    assert tuple(RayJobOperator.template_ext) == () and RayJobOperator.manifest_field == "rayjob"


def test_validation_errors_fail_without_retry_before_anything_is_created(crds_dir, monkeypatch):
    kube = RecordingKube()
    lifecycle = RayJobLifecycle(kube, schemas=SchemaRegistry.from_directory(crds_dir))  # type: ignore[arg-type]
    op = operator(
        entrypoint="python x.py",
        ray_cluster_spec=CLUSTER,
        ttl_seconds_after_finished=-1,
        suspend="yes",
        namespace="default",
    )
    monkeypatch.setattr(type(op), "hook", property(lambda self: _HookWith(lifecycle)))
    with pytest.raises(AirflowFailException) as failure:
        op.execute({"ti": FakeTaskInstance()})
    assert "spec.ttlSecondsAfterFinished" in str(failure.value) and "spec.suspend" in str(failure.value)
    assert kube.calls == []


@dataclass
class _HookWith:
    _lifecycle: RayJobLifecycle

    def lifecycle(self, **_: Any) -> RayJobLifecycle:
        return self._lifecycle

    def get_namespace(self) -> str:
        return "default"


def test_cleanup_choice_is_checked_at_parse_time_and_conflicts_fail_before_anything_is_created(monkeypatch):
    with pytest.raises(ValueError, match="unknown cleanup choice"):
        operator(entrypoint="python x.py", cleanup="delete_everything")
    kube = RecordingKube()
    op = operator(
        entrypoint="python x.py",
        ray_cluster_spec=CLUSTER,
        cleanup="keep",
        ttl_seconds_after_finished=30,
        namespace="default",
    )
    monkeypatch.setattr(type(op), "hook", property(lambda self: _HookWith(RayJobLifecycle(kube))))  # type: ignore[arg-type]
    with pytest.raises(AirflowFailException, match="ttlSecondsAfterFinished=30"):
        op.execute({"ti": FakeTaskInstance()})
    assert kube.calls == []
    manifest = (
        operator(entrypoint="python x.py", cleanup="delete_cluster_after:60")
        .build_request({"ti": FakeTaskInstance()})
        .manifest()
    )
    assert (manifest["spec"]["shutdownAfterJobFinishes"], manifest["spec"]["ttlSecondsAfterFinished"]) == (True, 60)


class FakeTaskStateStore:
    """Airflow 3.3's ``task_state_store``: a task's own keys, kept across its tries."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.values[key] = value


def test_a_later_try_follows_the_rayjob_an_earlier_try_recorded_in_the_task_state():
    from kuberay_provider.airflow.operators import TASK_STATE_KEY

    store = FakeTaskStateStore()
    op = operator(
        entrypoint="python x.py", ray_cluster_spec=CLUSTER, namespace="ml", name="score-try-{{ ti.try_number }}"
    )  # a name that changes per try, on purpose
    first = {"ti": FakeTaskInstance(try_number=1), "task_state_store": store}
    request = op._as_remembered(first, op.build_request(first))
    op._remember(first, dataclasses.replace(request, name="score-try-1"))
    assert store.values[TASK_STATE_KEY] == {"namespace": "ml", "name": "score-try-1"}

    second = {"ti": FakeTaskInstance(try_number=2), "task_state_store": store}
    retried = op._as_remembered(second, dataclasses.replace(op.build_request(second), name="score-try-2"))
    assert (retried.resolved_namespace, retried.rayjob_name) == ("ml", "score-try-1")
    assert retried.manifest()["metadata"]["name"] == "score-try-1"


def test_without_a_task_state_store_the_derived_name_stands():
    op = operator(entrypoint="python x.py", ray_cluster_spec=CLUSTER, namespace="ml")
    context = {"ti": FakeTaskInstance()}
    request = op.build_request(context)
    assert op._as_remembered(context, request) is request
    op._remember(context, request)  # nothing to record into: no error


def test_an_unreadable_task_state_falls_back_to_the_derived_name():
    class Broken(FakeTaskStateStore):
        def get(self, key: str, default: Any = None) -> Any:
            raise RuntimeError("state store unavailable")

    op = operator(entrypoint="python x.py", ray_cluster_spec=CLUSTER, namespace="ml")
    context = {"ti": FakeTaskInstance(), "task_state_store": Broken()}
    request = op.build_request(context)
    assert op._as_remembered(context, request) is request
