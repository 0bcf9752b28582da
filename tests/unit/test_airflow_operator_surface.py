"""The operators' surface, even across them (#19 item 6): templated connection ids, annotations and timeouts
(a rendered timeout read as a number), ``wait_for_completion=False``, ``do_xcom_push=False`` for every extra
XCom, the deferrable RayCluster scale / delete and RayService sensor, and RayClusterCreateOperator.on_kill.
The same, through real Airflow and a real triggerer: tests/e2e/test_airflow_triggerer.py."""

from __future__ import annotations

from tests.airflow_env import configure_airflow_env

configure_airflow_env()

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout, TaskDeferred

from kuberay_provider.airflow import hooks, triggers
from kuberay_provider.airflow.decorators.kuberay import kuberay_task
from kuberay_provider.airflow.links import RayDashboardLink
from kuberay_provider.airflow.operators import (
    RayClusterCreateOperator,
    RayClusterDeleteOperator,
    RayClusterScaleOperator,
    RayJobOperator,
    RayServiceDeleteOperator,
    RayServiceOperator,
    deletion,
    raycluster,
    rayservice,
)
from kuberay_provider.airflow.sensors import RayJobSensor, RayServiceSensor
from kuberay_provider.core.clusters import RayClusterState
from kuberay_provider.core.kube.watch import WatchEvent
from tests.support.airflow_fakes import FakeTaskInstance

ALL = (
    RayJobOperator,
    RayClusterCreateOperator,
    RayClusterScaleOperator,
    RayClusterDeleteOperator,
    RayServiceOperator,
    RayServiceDeleteOperator,
    RayJobSensor,
    RayServiceSensor,
)
TIMEOUTS = {
    RayJobOperator: "wait_timeout",
    RayClusterCreateOperator: "ready_timeout",
    RayClusterScaleOperator: "timeout",
    RayClusterDeleteOperator: "timeout",
    RayServiceOperator: "ready_timeout",
    RayServiceDeleteOperator: "timeout",
}


def rayjob(**kwargs: Any) -> RayJobOperator:
    return RayJobOperator(task_id="score", entrypoint="python x.py", **kwargs)


# --- templated fields ---------------------------------------------------------------------------------


def test_connection_annotations_and_timeouts_are_templated_wherever_they_are_parameters():
    for operator in ALL:
        assert "kuberay_conn_id" in operator.template_fields, operator.__name__
    for operator in (RayJobOperator, RayClusterCreateOperator, RayServiceOperator):
        assert "annotations" in operator.template_fields, operator.__name__
    for operator, timeout in TIMEOUTS.items():
        assert timeout in operator.template_fields and tuple(operator.seconds_fields) == (timeout,), operator.__name__


def test_a_rendered_timeout_is_a_number_of_seconds():
    op = rayjob(
        wait_timeout="{{ params.wait }}", kuberay_conn_id="{{ params.conn }}", annotations={"team": "{{ params.team }}"}
    )
    op.render_template_fields({"params": {"wait": " 90 ", "conn": "kuberay_eu", "team": "ml"}})  # type: ignore[arg-type]
    assert (op.wait_timeout, op.kuberay_conn_id, op.annotations) == (90.0, "kuberay_eu", {"team": "ml"})
    for rendered_none in ("None", ""):
        op = rayjob(wait_timeout="{{ params.wait }}")
        op.render_template_fields({"params": {"wait": rendered_none}})  # type: ignore[arg-type]
        assert op.wait_timeout is None


def test_a_timeout_that_renders_no_number_fails_the_task_without_retries():
    op = RayClusterScaleOperator(task_id="scale", name="c", group="g", replicas=2, timeout="{{ params.wait }}")
    with pytest.raises(AirflowFailException, match=r"timeout must be a number of seconds .* got 'soon'"):
        op.render_template_fields({"params": {"wait": "soon"}})  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["soon", -5, True, float("nan")])
def test_a_timeout_that_is_no_number_fails_when_the_dag_is_parsed(bad: Any):
    with pytest.raises(ValueError, match="wait_timeout must be a number of seconds"):
        rayjob(wait_timeout=bad)
    with pytest.raises(ValueError, match="ready_timeout must be a number of seconds"):
        RayServiceOperator(task_id="deploy", name="s", ready_timeout=bad)


# --- wait_for_completion=False -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "refusal"),
    [
        ({"cluster_selector": "shared", "submit_via": "sdk"}, "needs a RayJob to watch"),
        ({"head_service": "head-svc"}, "needs a RayJob to watch"),
        ({"delete_on_success": True}, "delete_on_success / delete_on_failure act when the task sees the job end"),
        ({"delete_on_failure": True}, "RayJobCleanupOperator"),
        ({"queue_name": "q", "admission_timeout": 60}, "admission_timeout needs the task to wait"),
    ],
)
def test_not_waiting_refuses_what_needs_the_task_to_see_the_end(kwargs: dict[str, Any], refusal: str):
    with pytest.raises(ValueError, match=refusal):
        rayjob(wait_for_completion=False, **kwargs)


def test_not_waiting_keeps_kuberays_own_cleanup_and_the_sdk_admission_timeout():
    rayjob(wait_for_completion=False, cleanup="delete_cluster_after:60", cluster_selector="shared")
    rayjob(wait_for_completion=False, submit_via="sdk", queue_name="q", admission_timeout=60)


def test_task_kuberay_always_waits_for_its_result():
    with pytest.raises(ValueError, match="returns the function's result"):
        kuberay_task(wait_for_completion=False)(lambda: 1)()


@dataclass
class SdkRunner:
    """What the operator drives in SDK mode, each step recorded."""

    lifecycle: Any
    steps: list[str] = field(default_factory=list)
    on_started: Any = None

    def launch(self, request: Any) -> Any:
        from kuberay_provider.core.lifecycle import Launch

        self.steps.append("launch")
        return Launch({"metadata": {"name": request.rayjob_name, "namespace": "default"}}, created=True)

    def start(self, request: Any, timeout: float | None) -> Any:
        self.steps.append(f"start within {timeout}")
        return running(request.rayjob_name)

    def first_wait_target(self, request: Any) -> Any:
        from kuberay_provider.core.status import WaitTarget

        return WaitTarget.READY_FOR_SUBMISSION

    def submit_if_waiting(self, request: Any, state: Any) -> None:
        self.steps.append("submit")

    def follow(self, request: Any, timeout: float | None) -> Any:
        raise AssertionError("wait_for_completion=False must not follow the job to its end")

    def dashboard_url(self, state: Any) -> str:
        return "http://dash/job"

    def dashboard_url_of(self, request: Any) -> str:
        return "http://dash"


def running(name: str) -> Any:
    from kuberay_provider.core.status import RayJobState

    return RayJobState.from_object(
        {
            "metadata": {"name": name, "namespace": "default"},
            "status": {
                "jobDeploymentStatus": "Running",
                "jobStatus": "RUNNING",
                "jobId": f"{name}-sdk",
                "rayClusterName": f"{name}-raycluster",
            },
        }
    )


class MarkingKube:
    def __init__(self) -> None:
        self.patches: list[Any] = []

    def patch(self, kind: Any, namespace: str, name: str, body: Any) -> dict[str, Any]:
        self.patches.append(body)
        return {}

    def get(self, kind: Any, namespace: str, name: str) -> dict[str, Any]:
        return {
            "metadata": {"name": name, "namespace": namespace},
            "status": {"jobDeploymentStatus": "Running", "jobStatus": "PENDING"},
        }


@dataclass
class JobHook:
    lifecycle_: Any
    kuberay_conn_id: str = "kuberay_default"
    instance_id: str = ""
    conn_extras: dict[str, Any] = field(default_factory=dict)

    def lifecycle(self, **_: Any) -> Any:
        return self.lifecycle_

    def get_namespace(self) -> str:
        return "default"


def sdk_operator(monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> tuple[RayJobOperator, SdkRunner, MarkingKube]:
    from kuberay_provider.core.lifecycle import RayJobLifecycle

    kube = MarkingKube()
    runner = SdkRunner(RayJobLifecycle(kube))  # type: ignore[arg-type]
    op = rayjob(submit_via="sdk", namespace="default", wait_for_completion=False, wait_timeout=300, **kwargs)
    monkeypatch.setattr(type(op), "hook", property(lambda self: JobHook(runner.lifecycle)))
    monkeypatch.setattr(op, "_runner", lambda: runner)
    return op, runner, kube


def test_not_waiting_in_sdk_mode_returns_once_the_task_submitted_the_job(monkeypatch: pytest.MonkeyPatch):
    op, runner, kube = sdk_operator(monkeypatch)
    ti = FakeTaskInstance()
    outcome = op.execute({"ti": ti})  # type: ignore[arg-type]
    assert runner.steps == ["launch", "start within 300"]  # start() submits once KubeRay waits for it
    assert (
        outcome["job_status"] == "RUNNING"
        and not outcome["succeeded"]
        and outcome["dashboard_url"] == "http://dash/job"
    )
    assert ti.pushed["rayjob"]["name"] == outcome["rayjob_name"]
    assert len(kube.patches) == 1  # marked reported: clearing the task runs the job anew


def test_not_waiting_in_deferred_sdk_mode_returns_after_the_submission(monkeypatch: pytest.MonkeyPatch):
    from kuberay_provider.core.status import state_to_payload

    op, runner, kube = sdk_operator(monkeypatch, deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({"ti": FakeTaskInstance()})  # type: ignore[arg-type]
    assert deferred.value.trigger.wait_for == "ready_for_submission"
    event = {"status": "success", "state": state_to_payload(running("x"))}
    outcome = op.execute_after_start({"ti": FakeTaskInstance()}, event)  # type: ignore[arg-type]
    assert runner.steps == ["launch", "submit"] and outcome["job_status"] == "PENDING" and len(kube.patches) == 1


# --- do_xcom_push=False ----------------------------------------------------------------------------------


def extra_xcoms(ti: FakeTaskInstance) -> set[str]:
    """What was pushed besides the UI's extra link (Airflow pushes that one whatever do_xcom_push says)."""
    return set(ti.pushed) - {RayDashboardLink().xcom_key}


def test_no_extra_xcom_without_do_xcom_push(monkeypatch: pytest.MonkeyPatch):
    op, _, _ = sdk_operator(monkeypatch, do_xcom_push=False)
    ti = FakeTaskInstance()
    op.execute({"ti": ti})  # type: ignore[arg-type]
    assert extra_xcoms(ti) == set()

    cluster_hook(monkeypatch, FakeClusters())
    served = {"status": "success", "state": {"namespace": "ns", "name": "s", "serve_endpoint": "http://s:8000"}}
    ti = FakeTaskInstance()
    result = RayServiceOperator(task_id="deploy", name="s", do_xcom_push=False).execute_complete(
        {"ti": ti}, {**served, "carry": {"change": "updated"}}
    )  # type: ignore[arg-type]
    assert result["change"] == "updated" and extra_xcoms(ti) == set()
    RayServiceSensor(task_id="served", rayservice_name="s", do_xcom_push=False).execute_complete({"ti": ti}, served)  # type: ignore[arg-type]
    assert extra_xcoms(ti) == set()


# --- RayCluster tasks: deferrable scale and delete, on_kill of create -------------------------------------


@dataclass
class FakeClusters:
    created: bool = True
    deleted: list[tuple[str, str, bool]] = field(default_factory=list)
    scaled: list[int] = field(default_factory=list)

    def validate(self, manifest: Any) -> None:
        return None

    def create_or_attach(self, manifest: Any) -> tuple[dict[str, Any], bool]:
        return manifest, self.created

    def state(self, namespace: str, name: str) -> RayClusterState:
        return RayClusterState.from_object(
            {"metadata": {"name": name, "namespace": namespace}, "status": {"state": ""}}
        )

    def wait_ready(self, namespace: str, name: str, **_: Any) -> Any:
        raise KeyboardInterrupt("killed mid-wait")  # what a SIGTERM's on_kill interrupts, as a BaseException

    def scale(self, namespace: str, name: str, group: str, replicas: int) -> None:
        self.scaled.append(replicas)

    def delete(self, namespace: str, name: str, *, wait: bool = True, timeout: float | None = None) -> bool:
        self.deleted.append((namespace, name, wait))
        return True


def cluster_hook(monkeypatch: pytest.MonkeyPatch, clusters: FakeClusters) -> None:
    class Hook:
        def __init__(self, **_: Any) -> None:
            self.instance_id, self.kuberay_conn_id, self.conn_extras = "", "kuberay_default", {}

        def cluster_lifecycle(self, **_: Any) -> FakeClusters:
            return clusters

        def service_lifecycle(self, **_: Any) -> FakeClusters:
            return clusters

        def get_namespace(self) -> str:
            return "ns"

    for module in (raycluster, rayservice, deletion):
        monkeypatch.setattr(module, "KubeRayHook", Hook)


@pytest.mark.parametrize(("created", "deleted"), [(True, [("ns", "c", False)]), (False, [])])
def test_on_kill_deletes_the_cluster_only_when_this_try_created_it(
    monkeypatch: pytest.MonkeyPatch, created: bool, deleted: list[Any]
):
    clusters = FakeClusters(created=created)
    cluster_hook(monkeypatch, clusters)
    op = RayClusterCreateOperator(task_id="create", name="c", namespace="ns", spec={"headGroupSpec": {}})
    with pytest.raises(KeyboardInterrupt):
        op.execute({"ti": FakeTaskInstance()})  # type: ignore[arg-type]
    op.on_kill()
    assert clusters.deleted == deleted
    clusters.deleted.clear()
    RayClusterCreateOperator(task_id="untouched", name="c", spec={}).on_kill()  # killed before it created anything
    assert clusters.deleted == []


def test_a_deferred_create_carries_what_it_created_through_the_trigger_not_an_xcom(monkeypatch: pytest.MonkeyPatch):
    cluster_hook(monkeypatch, FakeClusters(created=True))
    op = RayClusterCreateOperator(
        task_id="create", name="c", namespace="ns", spec={"headGroupSpec": {}}, deferrable=True, do_xcom_push=False
    )
    ti = FakeTaskInstance()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({"ti": ti})  # type: ignore[arg-type]
    trigger = deferred.value.trigger
    assert trigger.carry == {"created": True} and trigger.delete_on_kill and extra_xcoms(ti) == set()
    result = op.execute_complete(
        {"ti": ti}, {"status": "success", "state": {"namespace": "ns", "name": "c"}, "carry": trigger.carry}
    )  # type: ignore[arg-type]
    assert result["created"] is True and extra_xcoms(ti) == set()


def test_scale_and_delete_defer_their_waits(monkeypatch: pytest.MonkeyPatch):
    clusters = FakeClusters()
    cluster_hook(monkeypatch, clusters)
    with pytest.raises(TaskDeferred) as scale:
        RayClusterScaleOperator(task_id="scale", name="c", group="g", replicas=3, timeout=60, deferrable=True).execute(
            {}
        )  # type: ignore[arg-type]
    assert clusters.scaled == [3] and scale.value.trigger.wait_for == "workers" and scale.value.trigger.timeout == 60
    for operator, kind in ((RayClusterDeleteOperator, "RayCluster"), (RayServiceDeleteOperator, "RayService")):
        with pytest.raises(TaskDeferred) as delete:
            operator(task_id="delete", name="c", deferrable=True).execute({})  # type: ignore[arg-type]
        assert delete.value.trigger.kind == kind and clusters.deleted[-1] == (
            "ns",
            "c",
            False,
        )  # deleted, not waited for here
        assert operator(task_id="d", name="c").execute_complete({}, {"status": "success"}) is True  # type: ignore[arg-type]


def test_scale_resumes_with_the_state_or_fails_with_the_reason():
    op = RayClusterScaleOperator(task_id="scale", name="c", group="g", replicas=3)
    assert op.execute_complete({}, {"status": "success", "state": {"ready_workers": 3}}) == {"ready_workers": 3}  # type: ignore[arg-type]
    with pytest.raises(Exception, match="waited 60 s"):
        op.execute_complete({}, {"status": "timeout", "state": None, "message": "waited 60 s"})  # type: ignore[arg-type]


# --- triggers: deletion, a cluster's on_kill, the RayService sensor's deferral ------------------------------


class DeletingKube:
    def __init__(self, present: bool, deleted_event: bool) -> None:
        self.present, self.deleted_event = present, deleted_event
        self.deleted: list[str] = []
        self.watched_from: str | None = None

    async def find(self, kind: Any, namespace: str, name: str) -> dict[str, Any] | None:
        return {"metadata": {"name": name, "resourceVersion": "7"}} if self.present else None

    async def watch(
        self,
        kind: Any,
        namespace: str,
        *,
        name: str,
        resource_version: str | None = None,
        timeout_seconds: float | None = None,
    ) -> AsyncIterator[WatchEvent]:
        self.watched_from = resource_version
        if self.deleted_event:
            yield WatchEvent("DELETED", {"metadata": {"name": name}})

    async def delete(self, kind: Any, namespace: str, name: str) -> bool:
        self.deleted.append(f"{kind.kind} {namespace}/{name}")
        return True


def fake_client(monkeypatch: pytest.MonkeyPatch, kube: DeletingKube) -> None:
    @contextlib.asynccontextmanager
    async def objects_client(self: Any) -> AsyncIterator[DeletingKube]:
        yield kube

    monkeypatch.setattr(hooks.AsyncKubeRayHook, "objects_client", objects_client)


def first_event(trigger: Any) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("no event")

    return asyncio.run(run())


@pytest.mark.parametrize(
    ("present", "deleted_event", "status"),
    [(False, False, "success"), (True, True, "success"), (True, False, "timeout")],
)
def test_the_deletion_trigger_fires_once_the_object_is_gone(
    monkeypatch: pytest.MonkeyPatch, present: bool, deleted_event: bool, status: str
):
    kube = DeletingKube(present, deleted_event)
    fake_client(monkeypatch, kube)
    trigger = triggers.RayObjectDeletedTrigger("RayCluster", "c", "ns", "conn", timeout=5.0)
    classpath, kwargs = trigger.serialize()
    assert triggers.RayObjectDeletedTrigger(**kwargs).serialize() == (classpath, kwargs)
    payload = first_event(trigger)
    assert payload["status"] == status and (payload["namespace"], payload["name"]) == ("ns", "c")
    assert kube.watched_from == ("7" if present else None)  # watched from the version it was deleted at


def test_a_killed_deferred_create_deletes_the_cluster_it_created(monkeypatch: pytest.MonkeyPatch):
    kube = DeletingKube(True, False)
    fake_client(monkeypatch, kube)
    asyncio.run(triggers.RayClusterTrigger("c", "ns", delete_on_kill=False).on_kill())
    assert kube.deleted == []
    trigger = triggers.RayClusterTrigger("c", "ns", carry={"created": True}, delete_on_kill=True)
    assert triggers.RayClusterTrigger(**trigger.serialize()[1]).serialize() == trigger.serialize()
    asyncio.run(trigger.on_kill())
    assert kube.deleted == ["RayCluster ns/c"]


def test_the_rayservice_sensor_defers_to_the_rayservice_trigger(monkeypatch: pytest.MonkeyPatch):
    sensor = RayServiceSensor(
        task_id="served", rayservice_name="s", namespace="ns", kuberay_conn_id="conn", timeout=120, deferrable=True
    )
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({"ti": FakeTaskInstance()})  # type: ignore[arg-type]
    trigger = deferred.value.trigger
    assert isinstance(trigger, triggers.RayServiceTrigger)
    assert (trigger.name, trigger.namespace, trigger.kuberay_conn_id, trigger.timeout) == ("s", "ns", "conn", 120.0)
    ti = FakeTaskInstance()
    sensor.execute_complete({"ti": ti}, {"status": "success", "state": {"serve_endpoint": "http://s:8000"}})  # type: ignore[arg-type]
    assert ti.pushed == {"serve_endpoint": "http://s:8000"}
    with pytest.raises(AirflowSensorTimeout):
        sensor.execute_complete({"ti": ti}, {"status": "timeout", "message": "waited 120 s"})  # type: ignore[arg-type]
    with pytest.raises(Exception, match="app DEPLOY_FAILED"):
        sensor.execute_complete({"ti": ti}, {"status": "error", "message": "app DEPLOY_FAILED"})  # type: ignore[arg-type]
