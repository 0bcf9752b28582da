"""How a RayJobOperator try ends: where it stands in the task's series of tries, the RayJob marked consumed
once the outcome is reported, and what a timeout leaves behind (kept for a retry, removed on the last try)."""

from __future__ import annotations

from tests.airflow_env import configure_airflow_env

configure_airflow_env()

from dataclasses import dataclass, field
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowTaskTimeout

from kuberay_provider.airflow.operators import RayJobOperator
from kuberay_provider.airflow.operators.common import first_try_number, is_final_try
from kuberay_provider.core.job_runner import RayJobFailed, RayJobOutcome
from kuberay_provider.core.lifecycle import AdmissionTimeout, Launch, RayJobLifecycle, RayJobTimeout
from kuberay_provider.core.naming import ANNOTATION_CONSUMED_BY_TRY, ANNOTATION_FIRST_TRY
from tests.support.airflow_fakes import FakeTaskInstance

OUTCOME = RayJobOutcome("default", "x", "x-abc", "x-cluster", "Complete", "SUCCEEDED", True)


@pytest.mark.parametrize(
    ("try_number", "max_tries", "retries", "first", "final"),
    [
        (1, 2, 2, 1, False),  # a fresh run's first try
        (3, 2, 2, 1, True),  # its last retry
        (1, 0, 0, 1, True),  # no retries: every try is the last
        (3, 4, 2, 3, False),  # cleared after try 2: Airflow set max_tries = 2 + 2, the series starts at 3
        (4, 4, 2, 3, False),  # ... a retry in that series
        (5, 4, 2, 3, True),  # ... its last
    ],
)
def test_where_a_try_stands_in_its_series(try_number: int, max_tries: int, retries: int, first: int, final: bool):
    context = {"ti": FakeTaskInstance(try_number=try_number, max_tries=max_tries)}
    assert first_try_number(context, retries) == first  # type: ignore[arg-type]
    assert is_final_try(context, retries) is final  # type: ignore[arg-type]


def test_without_max_tries_nothing_is_known():
    context = {"ti": FakeTaskInstance(try_number=2)}
    assert first_try_number(context, 1) is None and is_final_try(context, 1) is False  # type: ignore[arg-type]


def test_the_rayjob_records_the_first_try_of_the_series():
    op = RayJobOperator(task_id="score", entrypoint="python x.py", retries=2)
    manifest = op.build_request({"ti": FakeTaskInstance(try_number=4, max_tries=4)}).manifest()
    assert manifest["metadata"]["annotations"][ANNOTATION_FIRST_TRY] == "3"


class RecordingKube:
    """The one RayJob there is: patches and deletes recorded."""

    def __init__(self) -> None:
        self.deleted: list[str] = []
        self.patches: list[dict[str, Any]] = []

    def delete(self, kind: Any, namespace: str, name: str, *, propagation_policy: str = "Foreground") -> bool:
        self.deleted.append(name)
        return True

    def patch(self, kind: Any, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        self.patches.append(body)
        return {}


@dataclass
class FakeRunner:
    """What the operator drives: launch answers at once, follow does what the test says."""

    lifecycle: RayJobLifecycle
    follows: Any = None  # an outcome to return, or an exception to raise
    cleaned: list[bool] = field(default_factory=list)

    def launch(self, request: Any) -> Launch:
        return Launch({}, created=True)

    def follow(self, request: Any, timeout: float | None) -> RayJobOutcome:
        if isinstance(self.follows, BaseException):
            raise self.follows
        return self.follows

    def dashboard_url_of(self, request: Any) -> str:
        return ""

    def cleanup(self, namespace: str, name: str, *, succeeded: bool, **_: Any) -> bool:
        self.cleaned.append(succeeded)
        return False

    def conclude(self, state: Any, streamed: Any) -> RayJobOutcome:
        return OUTCOME

    def replay_log(self, state: Any) -> None:
        return None


@dataclass
class Hook:
    lifecycle_: RayJobLifecycle

    def lifecycle(self, **_: Any) -> RayJobLifecycle:
        return self.lifecycle_

    def get_namespace(self) -> str:
        return "default"


def wired(
    monkeypatch: pytest.MonkeyPatch, follows: Any, **kwargs: Any
) -> tuple[RayJobOperator, RecordingKube, FakeRunner]:
    kube = RecordingKube()
    lifecycle = RayJobLifecycle(kube)  # type: ignore[arg-type]
    runner = FakeRunner(lifecycle, follows)
    op = RayJobOperator(task_id="score", entrypoint="python x.py", namespace="default", **kwargs)
    monkeypatch.setattr(type(op), "hook", property(lambda self: Hook(lifecycle)))
    monkeypatch.setattr(op, "_runner", lambda: runner)
    return op, kube, runner


def context_of(try_number: int, max_tries: int) -> dict[str, Any]:
    return {"ti": FakeTaskInstance(try_number=try_number, max_tries=max_tries)}


def test_a_reported_outcome_marks_the_rayjob_consumed_by_the_try(monkeypatch: pytest.MonkeyPatch):
    op, kube, runner = wired(monkeypatch, OUTCOME, retries=1)
    assert op.execute(context_of(2, 1))["succeeded"]
    assert runner.cleaned == [True] and kube.patches == [
        {"metadata": {"annotations": {ANNOTATION_CONSUMED_BY_TRY: "2"}}}
    ]


def test_a_reported_failure_marks_it_too(monkeypatch: pytest.MonkeyPatch):
    failed = RayJobFailed("RayJob x failed", RayJobOutcome("default", "x", "x-abc", "", "Failed", "FAILED", False))
    op, kube, runner = wired(monkeypatch, failed)
    with pytest.raises(AirflowException):
        op.execute(context_of(1, 0))
    assert runner.cleaned == [False] and kube.patches == [
        {"metadata": {"annotations": {ANNOTATION_CONSUMED_BY_TRY: "1"}}}
    ]


def test_a_failed_mark_is_a_warning_not_a_failure(monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]):
    op, kube, _ = wired(monkeypatch, OUTCOME)
    monkeypatch.setattr(kube, "patch", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("API down")))
    assert op.execute(context_of(1, 0))["succeeded"]
    assert "clearing this task would re-attach" in capfd.readouterr().out


@pytest.mark.parametrize(
    ("try_number", "max_tries", "keep", "deleted"),
    [
        (1, 1, False, []),  # a retry follows: it re-attaches to the RayJob
        (2, 1, False, ["x"]),  # the last try: nothing may run on with no task following it
        (2, 1, True, []),  # ... unless the task asked to keep it
    ],
)
def test_wait_timeout_keeps_the_rayjob_for_a_retry_and_deletes_it_on_the_last_try(
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    try_number: int,
    max_tries: int,
    keep: bool,
    deleted: list[str],
):
    op, kube, _ = wired(
        monkeypatch, RayJobTimeout("waited 5 s", None), retries=1, name="x", delete_on_final_timeout=not keep
    )
    with pytest.raises(AirflowException, match="waited 5 s"):
        op.execute(context_of(try_number, max_tries))
    assert kube.deleted == deleted and kube.patches == []
    said = (
        {(): "the next try re-attaches", ("x",): "deleting RayJob default/x"}[tuple(deleted)] if not keep else "is kept"
    )
    assert said in capfd.readouterr().out


def test_execution_timeout_on_the_last_try_deletes_once_and_on_kill_adds_nothing(monkeypatch: pytest.MonkeyPatch):
    op, kube, _ = wired(monkeypatch, AirflowTaskTimeout(), name="x", delete_on_kill=False)
    with pytest.raises(AirflowTaskTimeout):
        op.execute(context_of(1, 0))
    op.on_kill()  # what Airflow calls after AirflowTaskTimeout
    assert kube.deleted == ["x"]


def test_execution_timeout_before_the_last_try_keeps_the_rayjob_even_with_delete_on_kill(
    monkeypatch: pytest.MonkeyPatch,
):
    op, kube, _ = wired(monkeypatch, AirflowTaskTimeout(), name="x", retries=2)
    with pytest.raises(AirflowTaskTimeout):
        op.execute(context_of(1, 2))
    op.on_kill()
    assert kube.deleted == []


def test_a_kill_still_deletes(monkeypatch: pytest.MonkeyPatch):
    op, kube, _ = wired(monkeypatch, OUTCOME, name="x", retries=2)
    op.execute(context_of(1, 2))
    op.on_kill()  # e.g. a user marked the task failed
    assert kube.deleted == ["x"]


def test_kueue_admission_timeout_is_left_to_its_own_withdrawal(monkeypatch: pytest.MonkeyPatch):
    op, kube, _ = wired(monkeypatch, AdmissionTimeout("not admitted", None), name="x")
    with pytest.raises(AirflowException, match="not admitted"):
        op.execute(context_of(1, 0))
    assert kube.deleted == []


def test_a_deferred_wait_timing_out_on_the_last_try_deletes_the_rayjob(monkeypatch: pytest.MonkeyPatch):
    op, kube, _ = wired(monkeypatch, OUTCOME, name="x", deferrable=True)
    event = {
        "status": "timeout",
        "state": None,
        "message": "RayJob default/x did not reach the awaited state within 5 s",
    }
    with pytest.raises(AirflowException, match="within 5 s"):
        op.execute_complete(context_of(1, 0), event)
    assert kube.deleted == ["x"]
    op, kube, _ = wired(monkeypatch, OUTCOME, name="x", deferrable=True, retries=1)
    with pytest.raises(AirflowException):
        op.execute_after_start(context_of(1, 1), event)
    assert kube.deleted == []
