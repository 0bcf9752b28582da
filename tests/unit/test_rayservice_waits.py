"""The provider's RayService wait and serve endpoint against what KubeRay v1.7.0 writes: the write that first
shows a new generation carries the applications read before the new serveConfigV2 was PUT (BEHAVIOUR.md
5.4), applications sit under pendingServiceStatus during the first deploy, ValidationFailed does not bump
observedGeneration and InitializingTimeout is terminal."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kuberay_provider.core.errors import KubeRayProviderError, ValidationError
from kuberay_provider.core.kube.watch import WatchEvent
from kuberay_provider.core.services import (
    RayServiceLifecycle,
    RayServiceState,
    RayServiceTimeout,
    ServiceTracker,
    rayservice_manifest,
)
from kuberay_provider.core.spec import simple_cluster_spec


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def service(
    rv: int,
    *,
    generation: int = 2,
    observed: int = 2,
    ready: str = "True",
    reason: str = "NonZeroServeEndpoints",
    message: str = "",
    upgrading: str = "False",
    active: dict[str, str] | None = None,
    pending: dict[str, str] | None = None,
    app_message: str = "",
) -> dict[str, Any]:
    def part(name: str, apps: dict[str, str] | None) -> dict[str, Any]:
        if apps is None:
            return {}
        return {
            "rayClusterName": name,
            "applicationStatuses": {
                app: {"status": status, **({"message": app_message} if app_message else {})}
                for app, status in apps.items()
            },
        }

    return {
        "metadata": {"name": "svc", "namespace": "ns", "generation": generation, "resourceVersion": str(rv)},
        "spec": {"rayClusterConfig": simple_cluster_spec(image="img")},
        "status": {
            "observedGeneration": observed,
            "conditions": [
                {"type": "Ready", "status": ready, "reason": reason, "message": message},
                {"type": "UpgradeInProgress", "status": upgrading},
            ],
            "activeServiceStatus": part("svc-a", {"app": "RUNNING"} if active is None else active),
            "pendingServiceStatus": part("svc-b", pending),
        },
    }


def tracker() -> ServiceTracker:
    return ServiceTracker("ns", "svc")  # these tests take milliseconds, far below settling: only new writes count


def modified(obj: dict[str, Any]) -> WatchEvent:
    return WatchEvent("MODIFIED", obj)


def test_a_rayservice_cluster_declares_the_serve_port() -> None:
    ports = simple_cluster_spec(image="img")["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"]
    assert {"containerPort": 8000, "name": "serve"} in ports  # else KubeRay cannot build the serve Service


def test_the_serve_endpoint_is_the_serve_service_kuberay_builds() -> None:
    obj = service(1)
    assert RayServiceState.from_object(obj).serve_endpoint == "http://svc-serve-svc.ns.svc.cluster.local:8000"
    head = obj["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    head["ports"] = [{"containerPort": 8265, "name": "dashboard"}, {"containerPort": 9000, "name": "serve"}]
    assert RayServiceState.from_object(obj).serve_endpoint == "http://svc-serve-svc.ns.svc.cluster.local:9000"
    obj["spec"]["serveService"] = {"metadata": {"name": "scoring"}, "spec": {"ports": [{"name": "serve", "port": 80}]}}
    state = RayServiceState.from_object(obj)
    assert (
        state.serve_endpoint == "http://scoring.ns.svc.cluster.local:80"
        and state.to_dict()["serve_service"] == "scoring"
    )
    del head["ports"]  # no ports at all: KubeRay's defaults, serve 8000, merged with the custom Service's
    assert RayServiceState.from_object(obj).serve_endpoint == "http://scoring.ns.svc.cluster.local:80"


def test_the_write_that_first_shows_the_new_generation_is_not_taken_for_served() -> None:
    waits = tracker()
    assert waits.observe(modified(service(1, observed=1))) is None  # the update, not applied yet
    # KubeRay read the applications, PUT the new config, then bumped observedGeneration: stale RUNNING.
    assert waits.observe(modified(service(2))) is None
    assert waits.observe(modified(service(3, active={"app": "DEPLOYING"}))) is None
    done = waits.observe(modified(service(4)))
    assert done is not None and done.applications == {"app": "RUNNING"}


def test_a_state_nobody_rewrites_is_trusted_once_kuberay_had_time_to_read_it_again() -> None:
    clock = Clock()
    waits = ServiceTracker("ns", "svc", clock=clock, settle_seconds=5)
    assert waits.observe(modified(service(2))) is None
    assert waits.next_round() == pytest.approx(5)  # the wait wakes up to judge it again
    clock.now += 5
    done = waits.recheck()
    assert done is not None and done.is_ready
    assert waits.observe(modified(service(2))) is not None  # the same write, seen again on a new round


def test_a_tracker_taking_up_another_ones_memory_judges_as_it_would_have() -> None:
    """What a poller that cannot keep its tracker (a rescheduled Airflow sensor) carries between polls."""
    clock = Clock()
    first = ServiceTracker("ns", "svc", clock=clock)
    assert first.observe(modified(service(2))) is None
    later = ServiceTracker("ns", "svc", clock=clock)
    later.recall(json.loads(json.dumps(first.memory())))
    assert later.observe(modified(service(3))) is not None  # written after the first write of generation 2
    garbled = ServiceTracker("ns", "svc", clock=clock)
    garbled.recall({"first_seen": {"generation": "two"}, "first_applied": 7})
    assert garbled.observe(modified(service(3))) is None  # nothing understood, nothing trusted: a first sighting


def test_the_first_deploy_fails_fast_on_a_pending_application_that_failed() -> None:
    waits = tracker()
    initializing = dict(ready="False", reason="Initializing", active={}, generation=1, observed=1)
    assert waits.observe(modified(service(1, **initializing))) is None
    assert waits.observe(modified(service(2, pending={"app": "DEPLOYING"}, **initializing))) is None
    with pytest.raises(KubeRayProviderError) as failed:
        waits.observe(
            modified(
                service(3, pending={"app": "DEPLOY_FAILED"}, app_message="ImportError: no module m", **initializing)
            )
        )
    assert not isinstance(failed.value, RayServiceTimeout)
    assert "app DEPLOY_FAILED (ImportError: no module m)" in str(failed.value) and "corrected serve config" in str(
        failed.value
    )


def test_stale_failed_applications_of_the_previous_config_do_not_fail_the_update() -> None:
    waits = tracker()
    assert waits.observe(modified(service(1, observed=1, active={"app": "DEPLOY_FAILED"}, ready="False"))) is None
    assert (
        waits.observe(modified(service(2, active={"app": "DEPLOY_FAILED"}, ready="False"))) is None
    )  # read before the PUT
    assert waits.observe(modified(service(3, active={"app": "DEPLOYING"}))) is None
    assert waits.observe(modified(service(4))) is not None


def test_a_refused_spec_fails_fast_and_says_what_to_do() -> None:
    waits = tracker()
    refused = dict(
        observed=1,
        ready="False",
        reason="ValidationFailed",
        message="The RayService spec is invalid: spec.rayClusterConfig.headGroupSpec.headService.metadata.name should not be set",
    )
    assert waits.observe(modified(service(1, **{**refused, "message": "an earlier refusal"}))) is None  # maybe stale
    with pytest.raises(KubeRayProviderError) as failed:
        waits.observe(modified(service(2, **refused)))  # KubeRay's own write for this generation
    assert "headService.metadata.name should not be set" in str(failed.value) and "Correct the spec" in str(
        failed.value
    )
    # Once a later generation is applied the old reason may linger until endpoints appear: no failure.
    assert (
        tracker().observe(
            modified(service(5, ready="False", reason="ValidationFailed", active={}, pending={"app": "DEPLOYING"}))
        )
        is None
    )


def test_an_initializing_timeout_is_terminal() -> None:
    waits = tracker()
    message = "RayService failed to become ready within the configured timeout of 30s. Time spent initializing: 30.5s"
    with pytest.raises(KubeRayProviderError) as failed:
        waits.observe(
            modified(service(1, observed=1, ready="False", reason="InitializingTimeout", message=message, active={}))
        )
    assert "delete the RayService and create it again" in str(failed.value) and "ray.io/initializing-timeout" in str(
        failed.value
    )


class Watches:
    """A sync watcher: each round lists the object as it is, then streams the next scripted writes."""

    def __init__(self, writes: list[dict[str, Any]]) -> None:
        self.writes, self.rounds = writes, []

    def watch(
        self, kind: Any, namespace: str, *, name: str | None = None, timeout_seconds: float | None = None
    ) -> Iterator[WatchEvent]:
        self.rounds.append(timeout_seconds)
        while self.writes:
            yield WatchEvent("MODIFIED", self.writes.pop(0))
        time.sleep(timeout_seconds or 0)  # nothing more is written: the round lasts its time


def test_the_sync_wait_rechecks_a_quiet_state_after_settling() -> None:
    from kuberay_provider.core.services import wait_service

    watches = Watches([service(1, observed=1), service(2)])
    state = wait_service(watches, ServiceTracker("ns", "svc", timeout=30, settle_seconds=0.2))  # type: ignore[arg-type]
    assert state.is_ready and len(watches.rounds) == 2 and watches.rounds[-1] <= 0.2


def test_validate_refuses_a_head_whose_ports_leave_out_serve() -> None:
    config = simple_cluster_spec(image="img")
    config["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"] = [
        {"containerPort": 8265, "name": "dashboard"}
    ]
    manifest = rayservice_manifest("svc", "ns", serve_config={"applications": []}, ray_cluster_config=config)
    with pytest.raises(ValidationError) as refused:
        RayServiceLifecycle(kube=None).validate(manifest)  # type: ignore[arg-type]
    assert "'name': 'serve'" in str(refused.value) and "never becomes Ready" in str(refused.value)
    config["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"].append(
        {"containerPort": 8000, "name": "serve"}
    )
    RayServiceLifecycle(kube=None).validate(rayservice_manifest("svc", "ns", ray_cluster_config=config))  # type: ignore[arg-type]
