"""The exact sequence of status writes the local KubeRay operator makes for a RayService, as KubeRay v1.7.0
makes them (rayservice_controller.go; /work/shared/kuberay/BEHAVIOUR.md section 5), watched through the
official ``kubernetes`` client on a LocalControlPlane with the fast fake Ray (Serve applications follow
``ServeScript``s): first deploy, in-place serveConfigV2 update, NewCluster upgrade, DEPLOY_FAILED,
ValidationFailed, InitializingTimeout, suspend and resume. Where it matters, the provider's wait is run
against the same writes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kuberay_provider.core.errors import KubeRayProviderError
from kuberay_provider.core.spec import simple_cluster_spec
from kuberay_provider.local.plane import LocalControlPlane
from kuberay_provider.local.ray_backend import FakeRayBackend, ServeScript

CRDS = Path(__file__).resolve().parents[3] / "shared/kuberay/crds"
NS = "default"
DEPLOYING_SECONDS = 3.0  # > KubeRay's 2 s requeue: some pass always sees the applications DEPLOYING
CONDITIONS = ("Ready", "UpgradeInProgress", "RollbackInProgress", "Suspending", "Suspended")

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def backend() -> FakeRayBackend:
    return FakeRayBackend(default_serve_script=ServeScript(deploying_seconds=DEPLOYING_SECONDS))


@pytest.fixture(scope="module")
def plane(backend: FakeRayBackend) -> Iterator[LocalControlPlane]:
    with LocalControlPlane(crds_dir=CRDS, backend=backend) as plane:
        yield plane


@pytest.fixture(scope="module")
def objects(plane: LocalControlPlane) -> Iterator[Any]:
    import kubernetes.client

    with plane.api_client() as api_client:
        yield kubernetes.client.CustomObjectsApi(api_client)


def rayservice(
    name: str, app: str, *, weight: int = 1, annotations: dict[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    serve = {
        "applications": [
            {
                "name": app,
                "import_path": "serve_app:app",
                "route_prefix": f"/{app}",
                "deployments": [{"name": "Scorer", "user_config": {"weight": weight}}],
            }
        ]
    }
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": name, "namespace": NS, **({"annotations": annotations} if annotations else {})},
        "spec": {
            "serveConfigV2": yaml.safe_dump(serve),
            "rayClusterConfig": simple_cluster_spec(image="rayproject/ray:2.60.0"),
            "rayClusterDeletionDelaySeconds": 1,
            **spec,
        },
    }


class StatusLog:
    """Every write of one RayService, as a watch through the official client delivers them, each summed up
    as one line: observedGeneration, the conditions, and which cluster (A, B... in order of appearance)
    holds which applications under activeServiceStatus / pendingServiceStatus."""

    def __init__(self, objects: Any, name: str) -> None:
        self.objects, self.name = objects, name
        self.lines: list[str] = []
        self.last: dict[str, Any] = {}
        self._clusters: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> StatusLog:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        import kubernetes.watch

        version = self.objects.list_namespaced_custom_object("ray.io", "v1", NS, "rayservices")["metadata"][
            "resourceVersion"
        ]
        while not self._stop.is_set():
            stream = kubernetes.watch.Watch().stream(
                self.objects.list_namespaced_custom_object,
                "ray.io",
                "v1",
                NS,
                "rayservices",
                field_selector=f"metadata.name={self.name}",
                resource_version=version,
                timeout_seconds=1,
            )
            for event in stream:
                version = event["object"]["metadata"]["resourceVersion"]
                self.last = event["object"]
                line = self._summary(event["object"])
                if line and (not self.lines or self.lines[-1] != line):
                    self.lines.append(line)

    def cluster_letter(self, cluster_name: str) -> str:
        return self._clusters.setdefault(cluster_name, "ABCDEFGH"[len(self._clusters)])

    def _summary(self, obj: dict[str, Any]) -> str:
        status = obj.get("status") or {}
        if not status:
            return ""
        conditions = {c["type"]: f"{c['status']}/{c['reason']}" for c in status.get("conditions") or []}
        parts = [f"gen={status.get('observedGeneration', 0)}"] + [
            f"{t}={conditions[t]}" for t in CONDITIONS if t in conditions
        ]
        for key in ("active", "pending"):
            part = status.get(f"{key}ServiceStatus") or {}
            where = self.cluster_letter(part["rayClusterName"]) if part.get("rayClusterName") else "-"
            apps = ",".join(
                f"{app}={info.get('status')}" for app, info in sorted((part.get("applicationStatuses") or {}).items())
            )
            parts.append(f"{key}={where}" + (f"[{apps}]" if apps else ""))
        return " ".join(parts)

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            obj = self.objects.get_namespaced_custom_object("ray.io", "v1", NS, "rayservices", self.name)
            if predicate(obj):
                time.sleep(0.5)  # let the watch catch up
                return obj
            time.sleep(0.1)
        raise AssertionError(f"RayService {self.name} never got there; writes seen:\n" + "\n".join(self.lines))

    def since(self, mark: int) -> list[str]:
        return self.lines[mark:]


def condition(obj: dict[str, Any], kind: str) -> str:
    found = next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == kind), {})
    return f"{found.get('status')}/{found.get('reason')}"


def ready(obj: dict[str, Any]) -> bool:
    return condition(obj, "Ready") == "True/NonZeroServeEndpoints"


def patch(objects: Any, name: str, *operations: dict[str, Any]) -> None:
    objects.patch_namespaced_custom_object(
        "ray.io", "v1", NS, "rayservices", name, list(operations), _content_type="application/json-patch+json"
    )


def clusters_of(objects: Any, name: str) -> set[str]:
    items = objects.list_namespaced_custom_object(
        "ray.io", "v1", NS, "rayclusters", label_selector=f"ray.io/originated-from-cr-name={name}"
    )["items"]
    return {c["metadata"]["name"] for c in items}


def deploy(objects: Any, log: StatusLog, body: dict[str, Any]) -> dict[str, Any]:
    objects.create_namespaced_custom_object("ray.io", "v1", NS, "rayservices", body)
    return log.wait_for(ready)


def lifecycle(plane: LocalControlPlane) -> Any:
    from kuberay_provider.core.kube.sync_client import RayObjectsClient
    from kuberay_provider.core.services import RayServiceLifecycle

    return RayServiceLifecycle(RayObjectsClient(plane.api_client()))


def test_first_deploy_applications_are_pending_then_active_then_ready(objects: Any, plane: LocalControlPlane) -> None:
    import kubernetes.client

    with StatusLog(objects, "first") as log:
        done = deploy(objects, log, rayservice("first", "first"))
    assert log.lines == [
        "gen=1 Ready=False/Initializing UpgradeInProgress=False/Initializing active=- pending=A",
        "gen=1 Ready=False/Initializing UpgradeInProgress=False/Initializing active=- pending=A[first=DEPLOYING]",
        # Promotion: the Services point at A, which is active; its endpoints show one pass later.
        "gen=1 Ready=False/Initializing UpgradeInProgress=False/NoPendingCluster active=A[first=RUNNING] pending=-",
        "gen=1 Ready=True/NonZeroServeEndpoints UpgradeInProgress=False/NoPendingCluster active=A[first=RUNNING] pending=-",
    ]
    assert done["status"]["serviceStatus"] == "Running" and done["status"]["numServeEndpoints"] == 1
    core = kubernetes.client.CoreV1Api(plane.api_client())
    serve = core.read_namespaced_service("first-serve-svc", NS)
    assert serve.spec.selector == {
        "ray.io/cluster": done["status"]["activeServiceStatus"]["rayClusterName"],
        "ray.io/serve": "true",
    }
    assert [(p.name, p.port) for p in serve.spec.ports] == [("serve", 8000)]
    head = core.list_namespaced_pod(
        NS, label_selector=f"ray.io/cluster={serve.spec.selector['ray.io/cluster']},ray.io/node-type=head"
    ).items[0]
    assert head.metadata.labels["ray.io/serve"] == "true"


def test_in_place_update_first_shows_the_new_generation_with_the_old_statuses(
    objects: Any, plane: LocalControlPlane, backend: FakeRayBackend
) -> None:
    with StatusLog(objects, "inplace") as log:
        first = deploy(objects, log, rayservice("inplace", "inplace"))
        mark = len(log.lines)
        serve = rayservice("inplace", "inplace", weight=2)["spec"]["serveConfigV2"]
        patch(objects, "inplace", {"op": "replace", "path": "/spec/serveConfigV2", "value": serve})
        state = lifecycle(plane).wait_ready(NS, "inplace", timeout=60)
        # The provider's wait ends once the new config runs, not at the write that bumped the generation.
        cluster = first["status"]["activeServiceStatus"]["rayClusterName"]
        app = backend.serve_apps[f"{NS}/{cluster}"]["inplace"]
        assert app.config["deployments"][0]["user_config"] == {"weight": 2}
        assert time.time() - app.deployed_at >= DEPLOYING_SECONDS and state.applications == {"inplace": "RUNNING"}
        log.wait_for(
            lambda obj: "RUNNING" in str(obj["status"]["activeServiceStatus"].get("applicationStatuses") or {})
        )
    assert log.since(mark) == [
        "gen=2 Ready=True/NonZeroServeEndpoints UpgradeInProgress=False/NoPendingCluster active=A[inplace=RUNNING] pending=-",
        "gen=2 Ready=True/NonZeroServeEndpoints UpgradeInProgress=False/NoPendingCluster active=A[inplace=DEPLOYING] pending=-",
        "gen=2 Ready=True/NonZeroServeEndpoints UpgradeInProgress=False/NoPendingCluster active=A[inplace=RUNNING] pending=-",
    ]


def test_new_cluster_upgrade_empties_the_active_applications_until_the_switch(objects: Any) -> None:
    with StatusLog(objects, "upgrade") as log:
        first = deploy(objects, log, rayservice("upgrade", "upgrade"))
        old_cluster = first["status"]["activeServiceStatus"]["rayClusterName"]
        mark = len(log.lines)
        patch(
            objects,
            "upgrade",
            {"op": "add", "path": "/spec/rayClusterConfig/headGroupSpec/rayStartParams/num-cpus", "value": "2"},
        )
        done = log.wait_for(
            lambda obj: (
                obj["status"]["activeServiceStatus"].get("rayClusterName") not in (None, old_cluster)
                and ready(obj)
                and condition(obj, "UpgradeInProgress") == "False/NoPendingCluster"
            )
        )
        assert log.since(mark) == [
            "gen=2 Ready=True/NonZeroServeEndpoints UpgradeInProgress=True/BothActivePendingClustersExist active=A pending=B",
            "gen=2 Ready=True/NonZeroServeEndpoints UpgradeInProgress=True/BothActivePendingClustersExist active=A pending=B[upgrade=DEPLOYING]",
            "gen=2 Ready=True/NonZeroServeEndpoints UpgradeInProgress=False/NoPendingCluster active=B[upgrade=RUNNING] pending=-",
        ]
    new_cluster = done["status"]["activeServiceStatus"]["rayClusterName"]
    deadline = time.monotonic() + 30  # the old cluster goes after rayClusterDeletionDelaySeconds (1 s here)
    while clusters_of(objects, "upgrade") != {new_cluster} and time.monotonic() < deadline:
        time.sleep(0.2)
    assert clusters_of(objects, "upgrade") == {new_cluster}


def test_a_failed_application_stays_pending_and_the_wait_fails_fast(
    objects: Any, plane: LocalControlPlane, backend: FakeRayBackend
) -> None:
    backend.serve_scripts["broken"] = ServeScript(
        "DEPLOY_FAILED", deploying_seconds=DEPLOYING_SECONDS, message="ModuleNotFoundError: No module named 'serve_app'"
    )
    with StatusLog(objects, "broken") as log:
        objects.create_namespaced_custom_object("ray.io", "v1", NS, "rayservices", rayservice("broken", "broken"))
        started = time.monotonic()
        with pytest.raises(KubeRayProviderError) as failed:
            lifecycle(plane).wait_ready(NS, "broken", timeout=60)
        assert time.monotonic() - started < 30 and "broken DEPLOY_FAILED (ModuleNotFoundError" in str(failed.value)
        log.wait_for(lambda obj: "DEPLOY_FAILED" in str(obj.get("status")))
    assert log.lines == [
        "gen=1 Ready=False/Initializing UpgradeInProgress=False/Initializing active=- pending=A",
        "gen=1 Ready=False/Initializing UpgradeInProgress=False/Initializing active=- pending=A[broken=DEPLOYING]",
        "gen=1 Ready=False/Initializing UpgradeInProgress=False/Initializing active=- pending=A[broken=DEPLOY_FAILED]",
    ]


def test_validation_failed_keeps_the_old_status_and_the_wait_fails_fast(objects: Any, plane: LocalControlPlane) -> None:
    head_service = {
        "op": "add",
        "path": "/spec/rayClusterConfig/headGroupSpec/headService",
        "value": {"metadata": {"name": "mine"}},
    }
    with StatusLog(objects, "refused") as log:
        deploy(objects, log, rayservice("refused", "refused"))
        mark = len(log.lines)
        patch(objects, "refused", head_service)
        with pytest.raises(KubeRayProviderError) as failed:
            lifecycle(plane).wait_ready(NS, "refused", timeout=30)
        assert "headService.metadata.name should not be set" in str(failed.value) and "Correct the spec" in str(
            failed.value
        )
        refused = log.wait_for(lambda obj: condition(obj, "Ready") == "False/ValidationFailed")
        # Everything else stays as it was: observedGeneration, serviceStatus, the serving cluster.
        assert refused["status"]["serviceStatus"] == "Running" and refused["metadata"]["generation"] == 2
        patch(objects, "refused", {"op": "remove", "path": "/spec/rayClusterConfig/headGroupSpec/headService"})
        assert lifecycle(plane).wait_ready(NS, "refused", timeout=60).is_ready
    assert log.since(mark) == [
        "gen=1 Ready=False/ValidationFailed UpgradeInProgress=False/NoPendingCluster active=A[refused=RUNNING] pending=-",
        "gen=3 Ready=True/NonZeroServeEndpoints UpgradeInProgress=False/NoPendingCluster active=A[refused=RUNNING] pending=-",
    ]
    events = [
        e
        for e in __import__("kubernetes").client.CoreV1Api(plane.api_client()).list_namespaced_event(NS).items
        if e.involved_object.name == "refused" and e.reason == "InvalidRayServiceSpec"
    ]
    assert events and events[0].type == "Warning"


def test_a_rayservice_refused_at_creation_only_gets_ready_false(objects: Any) -> None:
    body = rayservice("refused-new", "refused-new")
    body["spec"]["rayClusterConfig"]["headGroupSpec"]["headService"] = {"metadata": {"name": "mine"}}
    with StatusLog(objects, "refused-new") as log:
        objects.create_namespaced_custom_object("ray.io", "v1", NS, "rayservices", body)
        log.wait_for(lambda obj: condition(obj, "Ready") == "False/ValidationFailed")
    assert log.lines == ["gen=0 Ready=False/ValidationFailed active=- pending=-"]
    assert not clusters_of(objects, "refused-new")


def test_initializing_timeout_is_terminal_and_the_clusters_go(
    objects: Any, plane: LocalControlPlane, backend: FakeRayBackend
) -> None:
    backend.serve_scripts["slow"] = ServeScript(deploying_seconds=3600)
    body = rayservice(
        "slow", "slow", annotations={"ray.io/initializing-timeout": "5"}, rayClusterDeletionDelaySeconds=0
    )
    with StatusLog(objects, "slow") as log:
        objects.create_namespaced_custom_object("ray.io", "v1", NS, "rayservices", body)
        with pytest.raises(KubeRayProviderError) as failed:
            lifecycle(plane).wait_ready(NS, "slow", timeout=60)
        assert "delete the RayService and create it again" in str(failed.value)
        log.wait_for(lambda obj: not clusters_of(objects, "slow"), timeout=30)
        patch(
            objects,
            "slow",
            {
                "op": "replace",
                "path": "/spec/serveConfigV2",
                "value": rayservice("slow", "slow", weight=2)["spec"]["serveConfigV2"],
            },
        )
        time.sleep(3)  # a spec change recovers nothing: not even observedGeneration moves
    assert log.lines == [
        "gen=1 Ready=False/Initializing UpgradeInProgress=False/Initializing active=- pending=A",
        "gen=1 Ready=False/Initializing UpgradeInProgress=False/Initializing active=- pending=A[slow=DEPLOYING]",
        "gen=1 Ready=False/InitializingTimeout UpgradeInProgress=False/Initializing active=- pending=-[slow=DEPLOYING]",
    ]
    assert log.last["metadata"]["generation"] == 2 and not clusters_of(objects, "slow")


def test_suspend_deletes_everything_and_resume_brings_a_new_cluster(objects: Any, plane: LocalControlPlane) -> None:
    import kubernetes.client

    core = kubernetes.client.CoreV1Api(plane.api_client())
    with StatusLog(objects, "pause") as log:
        first = deploy(objects, log, rayservice("pause", "pause"))
        log.cluster_letter(first["status"]["activeServiceStatus"]["rayClusterName"])
        mark = len(log.lines)
        patch(objects, "pause", {"op": "add", "path": "/spec/suspend", "value": True})
        log.wait_for(lambda obj: condition(obj, "Suspended") == "True/SuspendComplete")
        assert not clusters_of(objects, "pause")
        assert not core.list_namespaced_service(NS, label_selector="ray.io/originated-from-cr-name=pause").items
        suspended = len(log.lines)
        patch(objects, "pause", {"op": "replace", "path": "/spec/suspend", "value": False})
        done = log.wait_for(ready)
    assert log.since(mark)[: suspended - mark] == [
        "gen=2 Ready=False/SuspendInProgress UpgradeInProgress=False/SuspendInProgress RollbackInProgress=False/SuspendInProgress "
        "Suspending=True/SuspendRequested active=- pending=-",
        "gen=2 Ready=False/SuspendInProgress UpgradeInProgress=False/SuspendInProgress RollbackInProgress=False/SuspendInProgress "
        "Suspending=True/SuspendInProgress active=- pending=-",
        "gen=2 Ready=False/SuspendComplete UpgradeInProgress=False/SuspendComplete RollbackInProgress=False/SuspendComplete "
        "Suspending=False/SuspendComplete Suspended=True/SuspendComplete active=- pending=-",
    ]
    resumed = (
        "RollbackInProgress=False/SuspendComplete Suspending=False/SuspendComplete Suspended=False/RayServiceResumed"
    )
    assert log.since(suspended) == [
        f"gen=3 Ready=False/Initializing UpgradeInProgress=False/Initializing {resumed} active=- pending=-",
        f"gen=3 Ready=False/Initializing UpgradeInProgress=False/Initializing {resumed} active=- pending=B",
        f"gen=3 Ready=False/Initializing UpgradeInProgress=False/Initializing {resumed} active=- pending=B[pause=DEPLOYING]",
        f"gen=3 Ready=False/Initializing UpgradeInProgress=False/NoPendingCluster {resumed} active=B[pause=RUNNING] pending=-",
        f"gen=3 Ready=True/NonZeroServeEndpoints UpgradeInProgress=False/NoPendingCluster {resumed} active=B[pause=RUNNING] pending=-",
    ]
    assert (
        done["status"]["activeServiceStatus"]["rayClusterName"]
        != first["status"]["activeServiceStatus"]["rayClusterName"]
    )


def test_delete_returns_once_kuberay_let_the_rayservice_go(objects: Any, plane: LocalControlPlane) -> None:
    with StatusLog(objects, "gone") as log:
        deploy(objects, log, rayservice("gone", "gone"))
    services = lifecycle(plane)
    assert services.delete(NS, "gone") is True
    # KubeRay's ray.io/rayservice-finalizer held it until its cluster was deleted: now it is gone.
    assert services.state(NS, "gone") is None and not clusters_of(objects, "gone")
    assert services.delete(NS, "gone") is False
