"""The local RayService controller's Services and in-place updates against KubeRay v1.7.0
(common/service.go BuildServeService, rayservice_controller.go shouldUpdateCluster): an in-memory API,
the fake Ray and a fake clock. The status-write sequences are in tests/integration/test_rayservice_sequences.py."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kuberay_provider.local.controller.api import EVENTS, PODS, RAYCLUSTERS, RAYSERVICES, SERVICES
from tests.unit.test_local_controller import NS, Harness, cluster_spec, serve_cluster_spec

SERVE = "applications:\n- name: app1\n  import_path: m:app\n  deployments:\n  - name: D\n"


@pytest.fixture
def h() -> Harness:
    return Harness()


def body(config: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": "svc", "namespace": NS},
        "spec": {"serveConfigV2": SERVE, "rayClusterConfig": config, **spec},
    }


async def status(h: Harness) -> dict[str, Any]:
    return ((await h.api.get(RAYSERVICES, NS, "svc")) or {}).get("status") or {}


def condition(status: dict[str, Any], kind: str) -> str:
    found = next((c for c in status.get("conditions") or [] if c["type"] == kind), {})
    return f"{found.get('status')}/{found.get('reason')}"


async def test_a_head_listing_ports_without_serve_never_gets_ready(h: Harness) -> None:
    await h.create(RAYSERVICES, body(cluster_spec()))  # gcs-server, dashboard, client: no serve port
    await h.settle()
    stuck = await status(h)
    cluster = stuck["pendingServiceStatus"]["rayClusterName"]
    # The applications run, but building the serve Service fails in every pass that sees them running,
    # before the status write: the status never shows them RUNNING, nor anything active.
    assert (await h.backend.serve_status(NS, cluster))["app1"]["status"] == "RUNNING"
    assert (
        "applicationStatuses" not in stuck["pendingServiceStatus"]
        and "rayClusterName" not in stuck["activeServiceStatus"]
    )
    assert condition(stuck, "Ready") == "False/Initializing"
    assert await h.api.get(SERVICES, NS, "svc-head-svc") is not None  # built before the serve Service
    assert await h.api.get(SERVICES, NS, "svc-serve-svc") is None


async def test_spec_serve_service_is_honoured(h: Harness) -> None:
    custom = {
        "metadata": {"name": "scoring", "labels": {"team": "ml"}},
        "spec": {
            "ports": [{"name": "serve", "port": 80, "appProtocol": "kubernetes.io/h2c"}, {"name": "other", "port": 81}]
        },
    }
    await h.create(RAYSERVICES, body(serve_cluster_spec(), serveService=custom))
    await h.settle()
    done = await status(h)
    service = await h.api.get(SERVICES, NS, "scoring")
    assert service is not None and await h.api.get(SERVICES, NS, "svc-serve-svc") is None
    # The head's serving ports, a same-named user port winning; the user's labels kept, KubeRay's added.
    assert service["spec"]["ports"] == [{"name": "serve", "port": 80, "appProtocol": "kubernetes.io/h2c"}]
    assert service["metadata"]["labels"] == {
        "team": "ml",
        "ray.io/originated-from-cr-name": "svc",
        "ray.io/originated-from-crd": "RayService",
        "ray.io/serve": "svc-serve",
    }
    assert service["spec"]["selector"] == {
        "ray.io/cluster": done["activeServiceStatus"]["rayClusterName"],
        "ray.io/serve": "true",
    }
    assert (
        condition(done, "Ready") == "True/NonZeroServeEndpoints" and done["numServeEndpoints"] == 2
    )  # head and worker


async def test_a_head_without_ports_serves_on_the_default_port(h: Harness) -> None:
    config = serve_cluster_spec()
    del config["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"]
    await h.create(RAYSERVICES, body(config, excludeHeadPodFromServeSvc=True))
    await h.settle()
    service = await h.api.get(SERVICES, NS, "svc-serve-svc")
    assert service is not None and service["spec"]["ports"] == [{"name": "serve", "port": 8000}]
    done = await status(h)
    assert done["numServeEndpoints"] == 1  # the worker only: the head is excluded ("ray.io/serve": "false")


async def test_appended_worker_groups_update_the_cluster_in_place(h: Harness) -> None:
    await h.create(RAYSERVICES, body(serve_cluster_spec(), rayClusterDeletionDelaySeconds=0))
    await h.settle()
    first = (await status(h))["activeServiceStatus"]["rayClusterName"]
    obj = await h.api.get(RAYSERVICES, NS, "svc")
    assert obj is not None
    group = copy.deepcopy(obj["spec"]["rayClusterConfig"]["workerGroupSpecs"][0])
    obj["spec"]["rayClusterConfig"]["workerGroupSpecs"].append({**group, "groupName": "more"})
    await h.api.replace(RAYSERVICES, obj)
    await h.advance(1)
    cluster = await h.api.get(RAYCLUSTERS, NS, first)
    assert cluster is not None and [g["groupName"] for g in cluster["spec"]["workerGroupSpecs"]] == [
        "small-group",
        "more",
    ]
    assert (await status(h))["activeServiceStatus"][
        "rayClusterName"
    ] == first and "UpdatedRayCluster" in await h.event_reasons()


async def test_a_rayservice_created_suspended_never_creates_anything(h: Harness) -> None:
    await h.create(RAYSERVICES, body(serve_cluster_spec(), suspend=True))
    await h.settle()
    suspended = await status(h)
    assert (
        condition(suspended, "Suspended") == "True/SuspendComplete"
        and condition(suspended, "Ready") == "False/SuspendComplete"
    )
    assert not await h.clusters() and not await h.api.list(SERVICES, NS)
    assert "pendingServiceStatus" not in suspended or "rayClusterName" not in suspended["pendingServiceStatus"]


def raycluster(name: str, spec: dict[str, Any], labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": name, "namespace": NS, "labels": labels or {}},
        "spec": spec,
    }


async def test_buildpod_sets_the_serve_label_on_the_pods_of_a_rayservice_cluster(h: Harness) -> None:
    labelled = serve_cluster_spec()
    for template in (labelled["headGroupSpec"]["template"], labelled["workerGroupSpecs"][0]["template"]):
        template["metadata"] = {"labels": {"ray.io/serve": "maybe", "team": "ml"}}
    # Only the RayCluster reconciler runs here: the labels are BuildPod's, on the Pods as they are created.
    await h.create(RAYCLUSTERS, raycluster("served", labelled, {"ray.io/originated-from-crd": "RayService"}))
    await h.create(RAYCLUSTERS, raycluster("plain", copy.deepcopy(labelled)))
    await h.create(RAYCLUSTERS, raycluster("batch", serve_cluster_spec(), {"ray.io/originated-from-crd": "RayJob"}))
    await h.settle(2)

    async def serve_labels(cluster: str) -> dict[str, str | None]:
        pods = await h.api.list(PODS, NS, {"ray.io/cluster": cluster})
        return {p["metadata"]["labels"]["ray.io/node-type"]: p["metadata"]["labels"].get("ray.io/serve") for p in pods}

    # Decided by the cluster's ray.io/originated-from-crd label, over the template's; the head starts out.
    assert await serve_labels("served") == {"head": "false", "worker": "true"}
    assert await serve_labels("plain") == {"head": "maybe", "worker": "maybe"}  # labelPod keeps a template's label
    assert await serve_labels("batch") == {"head": None, "worker": None}


async def test_the_rayservice_controller_moves_only_the_head_serve_label(h: Harness) -> None:
    await h.create(RAYSERVICES, body(serve_cluster_spec()))
    await h.settle()
    cluster = (await status(h))["activeServiceStatus"]["rayClusterName"]
    pods = {
        p["metadata"]["labels"]["ray.io/node-type"]: p for p in await h.api.list(PODS, NS, {"ray.io/cluster": cluster})
    }
    assert {node: pod["metadata"]["labels"]["ray.io/serve"] for node, pod in pods.items()} == {
        "head": "true",
        "worker": "true",
    }
    # One move, false -> true, announced as KubeRay does; the workers kept BuildPod's label.
    moved = [e["message"] for e in await h.api.list(EVENTS, NS) if e["reason"] == "UpdatedHeadPodServeLabel"]
    assert moved == [f'Updated the serve label to "true" for the Head Pod {NS}/{pods["head"]["metadata"]["name"]}']
