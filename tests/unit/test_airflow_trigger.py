"""RayJobTrigger: serialisation round trip and its events, with the Kubernetes watch faked at the client."""

from __future__ import annotations

from tests.airflow_env import configure_airflow_env

configure_airflow_env()

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kuberay_provider.airflow import hooks, triggers
from kuberay_provider.airflow.triggers import RayJobTrigger
from kuberay_provider.core.kube.watch import WatchEvent
from kuberay_provider.core.status import (
    JobDeploymentStatus,
    state_from_payload,
)


def rayjob(deployment: str, job: str = "", job_id: str = "") -> dict[str, Any]:
    return {
        "metadata": {"name": "j", "namespace": "ns"},
        "status": {
            "jobDeploymentStatus": deployment,
            "jobStatus": job,
            "jobId": job_id,
            "reason": "AppFailed" if job == "FAILED" else "",
        },
    }


class FakeKube:
    def __init__(self, events: list[WatchEvent]) -> None:
        self.events = events
        self.deleted: list[tuple[str, str, str]] = []
        self.watches = 0

    async def delete(self, kind: Any, namespace: str, name: str) -> bool:
        self.deleted.append((kind.kind, namespace, name))
        return True

    async def watch(self, *args: Any, **kwargs: Any) -> AsyncIterator[WatchEvent]:
        self.watches += 1
        for event in self.events:
            yield event
        await asyncio.Event().wait()  # a namespace watch stays open


def use_events(monkeypatch: pytest.MonkeyPatch, events: list[WatchEvent]) -> FakeKube:
    kube = FakeKube(events)

    @contextlib.asynccontextmanager
    async def objects_client(self: Any) -> AsyncIterator[FakeKube]:
        yield kube

    monkeypatch.setattr(hooks.AsyncKubeRayHook, "objects_client", objects_client)
    return kube


def first_event(trigger: RayJobTrigger) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("no event")

    return asyncio.run(run())


def test_serialisation_round_trip():
    trigger = RayJobTrigger("j", "ns", kuberay_conn_id="c", wait_for="ready_for_submission", timeout=30.0)
    classpath, kwargs = trigger.serialize()
    assert classpath == "kuberay_provider.airflow.triggers.RayJobTrigger"
    assert RayJobTrigger(**kwargs).serialize() == (classpath, kwargs)
    assert kwargs == {
        "name": "j",
        "namespace": "ns",
        "kuberay_conn_id": "c",
        "wait_for": "ready_for_submission",
        "timeout": 30.0,
        "delete_on_kill": False,
        "stream_logs": False,
        "log_tail_lines": 50,
    }


def test_unknown_target_is_refused():
    with pytest.raises(ValueError):
        RayJobTrigger("j", "ns", wait_for="whenever")


def test_fires_with_the_terminal_state(monkeypatch: pytest.MonkeyPatch):
    use_events(
        monkeypatch,
        [
            WatchEvent("ADDED", rayjob("Running", "RUNNING", "j-1")),
            WatchEvent("MODIFIED", rayjob("Failed", "FAILED", "j-1")),
        ],
    )
    payload = first_event(RayJobTrigger("j", "ns"))
    assert payload["status"] == "success"
    state = state_from_payload(payload["state"])
    assert (
        state.deployment_status == JobDeploymentStatus.FAILED and state.reason == "AppFailed" and state.job_id == "j-1"
    )


def test_ready_for_submission_fires_on_waiting(monkeypatch: pytest.MonkeyPatch):
    use_events(monkeypatch, [WatchEvent("ADDED", rayjob("Initializing")), WatchEvent("MODIFIED", rayjob("Waiting"))])
    payload = first_event(RayJobTrigger("j", "ns", wait_for="ready_for_submission"))
    assert payload["state"]["deployment_status"] == "Waiting"


def test_deleted_rayjob_is_an_error_event(monkeypatch: pytest.MonkeyPatch):
    use_events(monkeypatch, [WatchEvent("ADDED", rayjob("Running")), WatchEvent("DELETED", rayjob("Running"))])
    payload = first_event(RayJobTrigger("j", "ns"))
    assert payload["status"] == "error" and "deleted" in payload["message"]


def test_target_not_reached_in_time_is_a_timeout_event(monkeypatch: pytest.MonkeyPatch):
    use_events(monkeypatch, [WatchEvent("ADDED", rayjob("Running", "RUNNING", "j-1"))])
    payload = first_event(RayJobTrigger("j", "ns", timeout=0.3))
    assert payload["status"] == "timeout" and payload["state"]["job_status"] == "RUNNING"


def test_triggers_of_one_connection_share_one_watch_per_namespace(monkeypatch: pytest.MonkeyPatch):
    def job(name: str, deployment: str, status: str) -> dict[str, Any]:
        return {
            "metadata": {"name": name, "namespace": "ns", "resourceVersion": name + deployment},
            "status": {"jobDeploymentStatus": deployment, "jobStatus": status},
        }

    kube = use_events(
        monkeypatch,
        [WatchEvent("ADDED", job(f"j{i}", "Running", "RUNNING")) for i in range(3)]
        + [WatchEvent("MODIFIED", job(f"j{i}", "Complete", "SUCCEEDED")) for i in range(3)],
    )

    async def all_three() -> list[dict[str, Any]]:
        async def first(trigger: RayJobTrigger) -> dict[str, Any]:
            async for event in trigger.run():
                return event.payload
            raise AssertionError("no event")

        return await asyncio.gather(*(first(RayJobTrigger(f"j{i}", "ns", kuberay_conn_id="shared")) for i in range(3)))

    payloads = asyncio.run(all_three())
    assert [p["state"]["job_status"] for p in payloads] == ["SUCCEEDED"] * 3
    assert kube.watches == 1


def test_on_kill_deletes_the_rayjob_only_when_asked(monkeypatch: pytest.MonkeyPatch):
    kube = use_events(monkeypatch, [])
    asyncio.run(RayJobTrigger("j", "ns").on_kill())
    assert kube.deleted == []
    asyncio.run(RayJobTrigger("j", "ns", delete_on_kill=True).on_kill())
    assert kube.deleted == [("RayJob", "ns", "j")]


def test_the_trigger_module_does_not_import_the_kubernetes_clients_or_ray():
    """A triggerer imports the module on its event loop: seconds of imports there stall every trigger."""
    import subprocess
    import sys

    probe = (
        "import sys; import kuberay_provider.airflow.triggers; "
        "print(sorted(m for m in ('kubernetes', 'kubernetes_asyncio', 'ray') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    assert loaded.stdout.strip() == "[]", loaded.stdout + loaded.stderr


class FakeJobs:
    """The Ray Jobs API of the RayJob's cluster: a log in two chunks."""

    def find(self, job_id: str):
        from kuberay_provider.core.ray_jobs import RayJobInfo
        from kuberay_provider.core.status import JobStatus

        return RayJobInfo(job_id, JobStatus.RUNNING)

    async def tail(self, job_id: str, start: int = 0):
        # Like RayJobsClient.tail: a resumed stream skips the ``start`` characters already delivered.
        for chunk in ("first line\nsecond "[start:], "line\n"[max(start - 18, 0) :]):
            if chunk:
                yield chunk


def test_terminal_wait_streams_the_ray_log_and_reports_it_in_the_event(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
):
    use_events(
        monkeypatch,
        [
            WatchEvent("ADDED", rayjob("Running", "RUNNING", "j-1")),
            WatchEvent("MODIFIED", rayjob("Complete", "SUCCEEDED", "j-1")),
        ],
    )
    asked_for: list[str] = []

    def finder(conn_id: str):
        return lambda state: asked_for.append(state.job_id) or FakeJobs()

    monkeypatch.setattr(triggers, "_jobs_client_finder", finder)
    payload = first_event(RayJobTrigger("j", "ns", stream_logs=True, log_tail_lines=1))
    assert payload["status"] == "success" and asked_for == ["j-1"]
    assert payload["log"] == {"received": len("first line\nsecond line\n"), "last_lines": "second line"}
    out = capfd.readouterr().out  # the trigger's log (Airflow's structlog writes to stdout here)
    assert "[ray] first line" in out and "[ray] second line" in out


def test_waits_other_than_the_end_never_stream(monkeypatch: pytest.MonkeyPatch):
    use_events(monkeypatch, [WatchEvent("ADDED", rayjob("Running", "RUNNING", "j-1"))])
    monkeypatch.setattr(triggers, "_jobs_client_finder", lambda conn_id: pytest.fail("no log for a start wait"))
    payload = first_event(RayJobTrigger("j", "ns", wait_for="started", stream_logs=True))
    assert payload["status"] == "success" and "log" not in payload


def cluster(state: str, head_ready: bool, suspend: bool = False) -> dict[str, Any]:
    labels = {"kueue.x-k8s.io/queue-name": "q"} if suspend else {}
    return {
        "metadata": {"name": "c", "namespace": "ns", "labels": labels},
        "spec": {"suspend": suspend},
        "status": {
            "state": state,
            "conditions": [{"type": "HeadPodReady", "status": "True" if head_ready else "False"}],
        },
    }


def test_raycluster_trigger_fires_when_ready_and_round_trips(monkeypatch: pytest.MonkeyPatch):
    trigger = triggers.RayClusterTrigger("c", "ns", kuberay_conn_id="c1", timeout=5.0, wait_for="ready")
    classpath, kwargs = trigger.serialize()
    assert classpath == "kuberay_provider.airflow.triggers.RayClusterTrigger"
    assert triggers.RayClusterTrigger(**kwargs).serialize() == (classpath, kwargs)
    use_events(monkeypatch, [WatchEvent("ADDED", cluster("", False)), WatchEvent("MODIFIED", cluster("ready", True))])
    payload = first_event(trigger)
    assert (
        payload["status"] == "success" and payload["state"]["state"] == "ready" and payload["state"]["head_pod_ready"]
    )


def test_raycluster_trigger_waits_for_kueue_admission(monkeypatch: pytest.MonkeyPatch):
    use_events(
        monkeypatch, [WatchEvent("ADDED", cluster("", False, suspend=True)), WatchEvent("MODIFIED", cluster("", False))]
    )
    payload = first_event(triggers.RayClusterTrigger("c", "ns", wait_for="admitted"))
    assert payload["status"] == "success" and payload["state"]["state"] == ""


def test_raycluster_trigger_times_out_with_the_last_state(monkeypatch: pytest.MonkeyPatch):
    use_events(monkeypatch, [WatchEvent("ADDED", cluster("", False))])
    payload = first_event(triggers.RayClusterTrigger("c", "ns", timeout=0.3))
    assert payload["status"] == "timeout" and payload["state"]["name"] == "c" and "to be ready" in payload["message"]


def service(
    ready: bool, app_status: str, generation: int = 1, observed: int = 1, rv: int = 1, where: str = "active"
) -> dict[str, Any]:
    apps = {"rayClusterName": "s-1", "applicationStatuses": {"app": {"status": app_status}}}
    return {
        "metadata": {"name": "s", "namespace": "ns", "generation": generation, "resourceVersion": str(rv)},
        "status": {
            "observedGeneration": observed,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            f"{where}ServiceStatus": apps,
        },
    }


def test_rayservice_trigger_fires_once_the_latest_spec_is_served(monkeypatch: pytest.MonkeyPatch):
    # The write that first shows generation 2 carries the applications read before the new config's PUT:
    # only a later write (or a quiet settling time) is taken as served.
    use_events(
        monkeypatch,
        [
            WatchEvent("ADDED", service(True, "RUNNING", generation=2, observed=1, rv=1)),
            WatchEvent("MODIFIED", service(True, "RUNNING", generation=2, observed=2, rv=2)),
            WatchEvent("MODIFIED", service(True, "DEPLOYING", generation=2, observed=2, rv=3)),
            WatchEvent("MODIFIED", service(True, "RUNNING", generation=2, observed=2, rv=4)),
        ],
    )
    payload = first_event(triggers.RayServiceTrigger("s", "ns"))
    assert payload["status"] == "success" and payload["state"]["applications"] == {"app": "RUNNING"}


def test_rayservice_trigger_reports_a_failed_application(monkeypatch: pytest.MonkeyPatch):
    use_events(
        monkeypatch,
        [
            WatchEvent("ADDED", service(False, "DEPLOYING", rv=1, where="pending")),
            WatchEvent("MODIFIED", service(False, "DEPLOY_FAILED", rv=2, where="pending")),
        ],
    )
    payload = first_event(triggers.RayServiceTrigger("s", "ns"))
    assert (
        payload["status"] == "error"
        and "app DEPLOY_FAILED" in payload["message"]
        and "serve config" in payload["message"]
    )
