"""RayServiceSensor against what KubeRay v1.7.0 writes (BEHAVIOUR.md 5.4), one GET per poke: the write that
first shows a new generation carries the applications read before the new serveConfigV2 was PUT, so no
single snapshot can say the spec is served. The Kubernetes client is faked at its boundary (the hook the
sensor builds, whose objects client finds and watches scripted writes); time is a fake clock."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException

from kuberay_provider.airflow import sensors
from kuberay_provider.airflow.sensors import RayServiceSensor
from kuberay_provider.core.kube.watch import WatchEvent
from tests.support.airflow_fakes import FakeTaskInstance
from tests.unit.test_rayservice_waits import Clock, service

STALE_RUNNING = service(2)  # generation 2 applied, the applications as read before its config was PUT
DEPLOYING = service(3, active={"app": "DEPLOYING"})
RUNNING = service(4)


class ScriptedKube:
    """The RayService's writes in order: each GET finds the next (then the last again); a watch round lists
    the current one, streams the writes still scripted, then runs out its time on the clock."""

    def __init__(self, writes: list[dict[str, Any] | None], clock: Clock) -> None:
        self.writes, self.clock = [copy.deepcopy(w) for w in writes], clock
        self.current: dict[str, Any] | None = None
        self.watched: list[float | None] = []

    def _next(self) -> dict[str, Any] | None:
        if self.writes:
            self.current = self.writes.pop(0)
            if self.current is not None:
                self.current["metadata"].setdefault("uid", "uid-1")
        return copy.deepcopy(self.current)

    def find(self, kind: Any, namespace: str, name: str) -> dict[str, Any] | None:
        assert (kind.kind, namespace, name) == ("RayService", "ns", "svc")
        return self._next()

    def watch(
        self, kind: Any, namespace: str, *, name: str | None = None, timeout_seconds: float | None = None
    ) -> Iterator[WatchEvent]:
        self.watched.append(timeout_seconds)
        if self.current is not None:
            yield WatchEvent("ADDED", copy.deepcopy(self.current))
        while self.writes:
            found = self._next()
            if found is not None:
                yield WatchEvent("MODIFIED", found)
        self.clock.now += timeout_seconds or 0


class FakeTaskStateStore:
    """Airflow 3.3's ``task_state_store``: JSON values, kept across the task's reschedules and tries."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return json.loads(self.values[key]) if key in self.values else default

    def set(self, key: str, value: Any) -> None:
        self.values[key] = json.dumps(value)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def script(monkeypatch: pytest.MonkeyPatch, clock: Clock, writes: list[dict[str, Any] | None]) -> ScriptedKube:
    kube = ScriptedKube(writes, clock)

    class FakeHook:
        objects_client = kube

        def __init__(self, kuberay_conn_id: str | None = None, **_: Any) -> None:
            pass

        def get_namespace(self) -> str:
            return "ns"

    monkeypatch.setattr(sensors, "KubeRayHook", FakeHook)
    return kube


def sensor(clock: Clock, **kwargs: Any) -> RayServiceSensor:
    made = RayServiceSensor(task_id="served", rayservice_name="svc", **kwargs)
    made.clock = clock  # type: ignore[method-assign]
    return made


def test_a_poke_does_not_take_the_write_that_applies_a_new_generation_for_served(
    monkeypatch: pytest.MonkeyPatch, clock: Clock
) -> None:
    script(monkeypatch, clock, [STALE_RUNNING, DEPLOYING, RUNNING])
    served, ti = sensor(clock, poke_interval=1), FakeTaskInstance()
    pokes = []
    for _ in range(3):
        pokes.append(served.poke({"ti": ti}))  # type: ignore[arg-type]
        clock.now += 1  # pokes closer together than settling: only KubeRay's later writes count
    assert pokes == [False, False, True]
    assert ti.pushed == {"serve_endpoint": "http://svc-serve-svc.ns.svc.cluster.local:8000"}


def test_a_write_nobody_rewrote_is_trusted_once_a_poke_finds_it_settled(
    monkeypatch: pytest.MonkeyPatch, clock: Clock
) -> None:
    script(monkeypatch, clock, [STALE_RUNNING])  # the same write at every poke: KubeRay had nothing to change
    served = sensor(clock)
    assert served.poke({"ti": FakeTaskInstance()}) is False  # type: ignore[arg-type]
    clock.now += 4
    assert served.poke({"ti": FakeTaskInstance()}) is False  # type: ignore[arg-type]
    clock.now += 1  # 5 s after it was first seen: KubeRay re-read the applications meanwhile
    assert served.poke({"ti": FakeTaskInstance()}) is True  # type: ignore[arg-type]


def test_rescheduled_pokes_carry_what_they_saw_in_the_task_state_store(
    monkeypatch: pytest.MonkeyPatch, clock: Clock
) -> None:
    kube = script(monkeypatch, clock, [STALE_RUNNING, DEPLOYING, RUNNING])
    store = FakeTaskStateStore()
    pokes = []
    for _ in range(3):  # each poke a new process: a new sensor, the store the only thing that survives
        pokes.append(sensor(clock, mode="reschedule").poke({"ti": FakeTaskInstance(), "task_state_store": store}))  # type: ignore[arg-type]
        clock.now += 1
    assert pokes == [False, False, True] and kube.watched == []  # GETs only: nothing waited in the worker
    # Another RayService under the same name (a new uid): nothing seen of the old one counts.
    recreated = copy.deepcopy(RUNNING)
    recreated["metadata"]["uid"], recreated["metadata"]["resourceVersion"] = "uid-2", "9"
    kube.writes = [recreated]
    assert sensor(clock, mode="reschedule").poke({"ti": FakeTaskInstance(), "task_state_store": store}) is False  # type: ignore[arg-type]


def test_without_a_task_state_store_a_rescheduled_poke_watches_until_it_can_judge(
    monkeypatch: pytest.MonkeyPatch, clock: Clock
) -> None:
    kube = script(monkeypatch, clock, [STALE_RUNNING, DEPLOYING])  # KubeRay rewrites while the poke watches
    assert sensor(clock, mode="reschedule").poke({"ti": FakeTaskInstance()}) is False  # type: ignore[arg-type]
    assert kube.watched and sum(w or 0 for w in kube.watched) <= 6  # within settle_seconds and a margin
    kube.writes = [RUNNING]  # Airflow < 3.3: the next poke starts from nothing, and sees RUNNING settle
    ti = FakeTaskInstance()
    assert sensor(clock, mode="reschedule").poke({"ti": ti}) is True  # type: ignore[arg-type]
    assert "serve_endpoint" in ti.pushed


FAILURES = {
    "an application failed to deploy": (
        [
            STALE_RUNNING,
            service(3, ready="False", active={"app": "DEPLOY_FAILED"}, app_message="ImportError: no module m"),
        ],
        ["app DEPLOY_FAILED (ImportError: no module m)", "apply a corrected serve config"],
    ),
    "a pending application went unhealthy during an upgrade": (
        [
            service(2, upgrading="True", pending={"app": "DEPLOYING"}),
            service(3, upgrading="True", pending={"app": "UNHEALTHY"}, app_message="replica died"),
        ],
        ["failed on cluster svc-b: app UNHEALTHY (replica died)"],
    ),
    "KubeRay refused the spec": (
        [
            service(
                1, observed=1, ready="False", reason="ValidationFailed", message="spec.rayClusterConfig is invalid."
            ),
            service(
                2, observed=1, ready="False", reason="ValidationFailed", message="spec.rayClusterConfig is invalid."
            ),
        ],
        ["KubeRay refused generation 2 of RayService ns/svc: spec.rayClusterConfig is invalid.", "Correct the spec"],
    ),
    "KubeRay gave up initializing": (
        [
            service(
                1,
                generation=1,
                observed=1,
                ready="False",
                reason="InitializingTimeout",
                active={},
                message="RayService failed to become ready within the configured timeout of 30s.",
            )
        ],
        ["gave up initializing", "delete the RayService and create it again"],
    ),
}


@pytest.mark.parametrize("case", FAILURES)
def test_failures_kuberay_reports_fail_the_sensor_saying_what_to_do(
    monkeypatch: pytest.MonkeyPatch, clock: Clock, case: str
) -> None:
    writes, expected = FAILURES[case]
    script(monkeypatch, clock, writes)
    served = sensor(clock)
    for _ in writes[:-1]:  # the earlier writes may predate the change: no verdict from them
        assert served.poke({"ti": FakeTaskInstance()}) is False  # type: ignore[arg-type]
    with pytest.raises(AirflowException) as failed:
        served.poke({"ti": FakeTaskInstance()})  # type: ignore[arg-type]
    assert all(text in str(failed.value) for text in expected), str(failed.value)


def test_failed_applications_of_the_previous_config_do_not_fail_the_update(
    monkeypatch: pytest.MonkeyPatch, clock: Clock
) -> None:
    script(monkeypatch, clock, [service(2, ready="False", active={"app": "DEPLOY_FAILED"}), DEPLOYING, RUNNING])
    served = sensor(clock)
    assert [served.poke({"ti": FakeTaskInstance()}) for _ in range(3)] == [False, False, True]  # type: ignore[arg-type]
