"""OpenLineage parent run in the RayJob's runtime env (kuberay_provider/airflow/lineage.py): nothing when the
OpenLineage provider is absent or disabled, the user's own variables win, and a retry still re-attaches.
The values themselves are checked against the provider's macros end to end (tests/e2e/test_airflow_lineage.py)."""

from __future__ import annotations

from tests.airflow_env import configure_airflow_env

configure_airflow_env()

import builtins
from typing import Any

import pytest
import yaml

from kuberay_provider.airflow import lineage
from kuberay_provider.airflow.operators import RayJobOperator
from kuberay_provider.core.lifecycle import rayjob_spec_digest
from kuberay_provider.core.naming import spec_digest
from tests.support.airflow_fakes import FakeTaskInstance

OURS = {
    "OPENLINEAGE_PARENT_ID": "ns/nightly.score/0190-run",
    "OPENLINEAGE_PARENT_RUN_ID": "0190-run",
    "OPENLINEAGE_ROOT_PARENT_ID": "ns/nightly/0190-dag",
    "OPENLINEAGE_ROOT_PARENT_RUN_ID": "0190-dag",
}


def runtime_env_of(**kwargs: Any) -> dict[str, Any]:
    op = RayJobOperator(task_id="score", **kwargs)
    manifest = op.build_request({"ti": FakeTaskInstance(), "task": op}).manifest()
    return yaml.safe_load(manifest["spec"].get("runtimeEnvYAML") or "") or {}


@pytest.fixture
def enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenLineage on (a transport configured), as a deployment that emits lineage has it."""
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__TRANSPORT", '{"type": "console"}')
    monkeypatch.delenv("AIRFLOW__OPENLINEAGE__DISABLED", raising=False)


def test_without_the_openlineage_provider_the_runtime_env_is_the_users(
    monkeypatch: pytest.MonkeyPatch, enabled: None
) -> None:
    real_import = builtins.__import__

    def no_openlineage(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("airflow.providers.openlineage"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_openlineage)
    assert lineage.parent_job_env({"ti": FakeTaskInstance()}) == {}
    assert runtime_env_of(entrypoint="python x.py", runtime_env={"env_vars": {"A": "1"}}) == {"env_vars": {"A": "1"}}


def test_with_openlineage_disabled_nothing_is_added(monkeypatch: pytest.MonkeyPatch, enabled: None) -> None:
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__DISABLED", "true")
    assert lineage.parent_job_env({"ti": FakeTaskInstance()}) == {}
    assert runtime_env_of(entrypoint="python x.py") == {}


def test_without_a_transport_openlineage_is_off_and_nothing_is_added(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "AIRFLOW__OPENLINEAGE__TRANSPORT",
        "AIRFLOW__OPENLINEAGE__CONFIG_PATH",
        "OPENLINEAGE_URL",
        "OPENLINEAGE_CONFIG",
    ):
        monkeypatch.delenv(name, raising=False)
    assert runtime_env_of(entrypoint="python x.py", runtime_env={"pip": ["numpy"]}) == {"pip": ["numpy"]}


def test_an_operator_disabled_for_openlineage_gets_no_parent(monkeypatch: pytest.MonkeyPatch, enabled: None) -> None:
    monkeypatch.setenv(
        "AIRFLOW__OPENLINEAGE__DISABLED_FOR_OPERATORS", "kuberay_provider.airflow.operators.rayjob.RayJobOperator"
    )
    op = RayJobOperator(task_id="score", entrypoint="python x.py")
    assert lineage.parent_job_env({"ti": FakeTaskInstance(), "task": op}) == {}


def test_ids_that_cannot_be_computed_lose_the_lineage_not_the_task(enabled: None) -> None:
    # FakeTaskInstance has no DAG run to derive the run ids from.
    assert lineage.parent_job_env({"ti": FakeTaskInstance()}) == {}
    assert runtime_env_of(entrypoint="python x.py") == {}


@pytest.mark.parametrize(
    "given",
    [
        {"runtime_env": {"pip": ["numpy"], "env_vars": {"A": "1"}}},
        {"runtime_env": "pip: [numpy]\nenv_vars: {A: '1'}"},
        {"runtime_env_yaml": "pip: [numpy]\nenv_vars: {A: '1'}"},
        {
            "rayjob": {
                "apiVersion": "ray.io/v1",
                "kind": "RayJob",
                "spec": {"runtimeEnvYAML": "pip: [numpy]\nenv_vars: {A: '1'}"},
            }
        },
    ],
    ids=["dict", "yaml-keyword", "runtime_env_yaml", "base-manifest"],
)
def test_the_parent_joins_the_runtime_env_wherever_it_was_given(
    monkeypatch: pytest.MonkeyPatch, given: dict[str, Any]
) -> None:
    monkeypatch.setattr(lineage, "parent_job_env", lambda context: dict(OURS))
    assert runtime_env_of(entrypoint="python x.py", **given) == {"pip": ["numpy"], "env_vars": {**OURS, "A": "1"}}


def test_a_parent_the_user_named_wins_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lineage, "parent_job_env", lambda context: dict(OURS))
    mine = {"OPENLINEAGE_PARENT_ID": "mine/job/run", "B": "2"}
    assert runtime_env_of(entrypoint="python x.py", runtime_env={"env_vars": mine}) == {"env_vars": mine}


def test_an_unreadable_runtime_env_is_left_to_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lineage, "parent_job_env", lambda context: dict(OURS))
    op = RayJobOperator(task_id="score", entrypoint="python x.py", runtime_env_yaml="[not, a, mapping]")
    request = op.build_request({"ti": FakeTaskInstance(), "task": op})
    assert request.spec_params["runtime_env_yaml"] == "[not, a, mapping]" and "runtime_env" not in request.spec_params


def test_a_retry_with_another_parent_run_has_the_same_spec_digest() -> None:
    """The parent run id is the try's: a retry must still re-attach to the RayJob of the try before."""

    def rayjob(env_vars: dict[str, str]) -> dict[str, Any]:
        return {"spec": {"entrypoint": "python x.py", "runtimeEnvYAML": yaml.safe_dump({"env_vars": env_vars})}}

    try_1 = rayjob({**OURS, "A": "1"})
    try_2 = rayjob(
        {
            **OURS,
            "OPENLINEAGE_PARENT_ID": "ns/nightly.score/0191-run",
            "OPENLINEAGE_PARENT_RUN_ID": "0191-run",
            "A": "1",
        }
    )
    assert rayjob_spec_digest(try_1) == rayjob_spec_digest(try_2)
    assert rayjob_spec_digest(try_1) != rayjob_spec_digest(rayjob({**OURS, "A": "2"}))
    plain = rayjob({"A": "1"})  # without lineage variables the digest is what it always was
    assert rayjob_spec_digest(plain) == spec_digest(plain["spec"], ("suspend", "jobId"))
