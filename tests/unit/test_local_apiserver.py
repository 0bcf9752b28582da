"""The local API server through the official ``kubernetes`` client over real HTTP."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from kuberay_provider.local.plane import LocalControlPlane

PROJECT_ROOT = Path(__file__).resolve().parents[2]
KUBERAY_DIR = PROJECT_ROOT.parent / "shared" / "kuberay"
CRDS_DIR = KUBERAY_DIR / "crds"
NS = "default"
RAY = ("ray.io", "v1", NS)

needs_crds = pytest.mark.skipif(not CRDS_DIR.is_dir(), reason="KubeRay CRDs not found next to the project")


@pytest.fixture(scope="module")
def plane() -> Iterator[LocalControlPlane]:
    crds = CRDS_DIR if CRDS_DIR.is_dir() else None
    with LocalControlPlane(crds_dir=crds, controller=False, tls=False, bookmark_interval=0.2) as running:
        yield running


@pytest.fixture(scope="module")
def api(plane: LocalControlPlane) -> Iterator[client.ApiClient]:
    with plane.api_client() as api_client:
        yield api_client


@pytest.fixture()
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture()
def custom(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


def raw_request(
    plane: LocalControlPlane,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    token: str | None = None,
) -> tuple[int, dict[str, Any], Any]:
    """A plain HTTP request (for what the typed client cannot express); returns status, headers, JSON body."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"{plane.url}{path}",
        data=data,
        method=method,
        headers={
            "Authorization": f"Bearer {plane.token if token is None else token}",
            "Content-Type": "application/json",
            **(headers or {}),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read() or b"null")


def configmap(name: str, labels: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels or {}}, "data": data}


def raycluster(name: str, replicas: Any = 1, **spec_extra: Any) -> dict[str, Any]:
    pod = {"spec": {"containers": [{"name": "ray", "image": "rayproject/ray:2.52.0"}]}}
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": name},
        "spec": {
            "headGroupSpec": {"rayStartParams": {}, "template": pod},
            "workerGroupSpecs": [{"groupName": "workers", "replicas": replicas, "rayStartParams": {}, "template": pod}],
            **spec_extra,
        },
    }


def status_of(error: ApiException) -> dict[str, Any]:
    return json.loads(error.body)


# --- CRUD, conflicts, names ------------------------------------------------------------------------------


def test_configmap_crud_round_trip(core: client.CoreV1Api) -> None:
    created = core.create_namespaced_config_map(NS, configmap("crud", a="1"))
    assert created.metadata.uid and created.metadata.resource_version and created.metadata.generation == 1
    assert created.metadata.creation_timestamp is not None

    fetched = core.read_namespaced_config_map("crud", NS)
    fetched.data["b"] = "2"
    replaced = core.replace_namespaced_config_map("crud", NS, fetched)
    assert replaced.data == {"a": "1", "b": "2"}
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)

    assert "crud" in [item.metadata.name for item in core.list_namespaced_config_map(NS).items]
    core.delete_namespaced_config_map("crud", NS)
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_config_map("crud", NS)
    assert missing.value.status == 404
    assert status_of(missing.value)["reason"] == "NotFound"
    assert status_of(missing.value)["message"] == 'configmaps "crud" not found'


def test_create_twice_is_already_exists(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map(NS, configmap("twice"))
    with pytest.raises(ApiException) as duplicate:
        core.create_namespaced_config_map(NS, configmap("twice"))
    assert duplicate.value.status == 409
    assert status_of(duplicate.value)["reason"] == "AlreadyExists"


def test_put_with_stale_resource_version_conflicts(core: client.CoreV1Api) -> None:
    first = core.create_namespaced_config_map(NS, configmap("stale", a="1"))
    core.patch_namespaced_config_map("stale", NS, {"data": {"a": "2"}}, _content_type="application/merge-patch+json")
    first.data["a"] = "3"
    with pytest.raises(ApiException) as stale:
        core.replace_namespaced_config_map("stale", NS, first)
    assert stale.value.status == 409
    assert status_of(stale.value)["reason"] == "Conflict"
    assert core.read_namespaced_config_map("stale", NS).data == {"a": "2"}


def test_generate_name_and_missing_namespace(core: client.CoreV1Api) -> None:
    body = {"metadata": {"generateName": "gen-"}, "data": {}}
    names = {core.create_namespaced_config_map(NS, body).metadata.name for _ in range(3)}
    assert len(names) == 3 and all(name.startswith("gen-") and len(name) == 9 for name in names)
    with pytest.raises(ApiException) as missing:
        core.create_namespaced_config_map("no-such-namespace", configmap("x"))
    assert missing.value.status == 404
    assert 'namespaces "no-such-namespace" not found' in status_of(missing.value)["message"]


def test_invalid_name_is_422_with_cause(core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_config_map(NS, configmap("Not_A_Name"))
    assert refused.value.status == 422
    status = status_of(refused.value)
    assert status["reason"] == "Invalid"
    assert status["details"]["causes"][0]["field"] == "metadata.name"


def test_namespaces_are_cluster_scoped_and_default_is_protected(core: client.CoreV1Api) -> None:
    assert {"default", "kube-system"} <= {ns.metadata.name for ns in core.list_namespace().items}
    core.create_namespace({"metadata": {"name": "scratch"}})
    core.create_namespaced_config_map("scratch", configmap("inside"))
    core.delete_namespace("scratch")
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_config_map("inside", "scratch")
    assert gone.value.status == 404
    with pytest.raises(ApiException) as forbidden:
        core.delete_namespace("default")
    assert forbidden.value.status == 403 and status_of(forbidden.value)["reason"] == "Forbidden"


# --- patches ---------------------------------------------------------------------------------------------


def test_every_patch_type(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map(NS, configmap("patched", a="1", b="2"))
    merged = core.patch_namespaced_config_map(
        "patched", NS, {"data": {"a": None, "c": "3"}}, _content_type="application/merge-patch+json"
    )
    assert merged.data == {"b": "2", "c": "3"}
    operations = [{"op": "add", "path": "/data/d", "value": "4"}, {"op": "remove", "path": "/data/b"}]
    patched = core.patch_namespaced_config_map("patched", NS, operations)
    assert patched.data == {"c": "3", "d": "4"}
    strategic = {
        "metadata": {"labels": {"x": "y"}},
        "data": {"$patch": "replace", "e": "5"},
        "$setElementOrder/whatever": [],
    }
    patched = core.patch_namespaced_config_map(
        "patched", NS, strategic, _content_type="application/strategic-merge-patch+json"
    )
    assert patched.metadata.labels == {"x": "y"} and patched.data["e"] == "5"
    with pytest.raises(ApiException) as failed_test:
        core.patch_namespaced_config_map("patched", NS, [{"op": "test", "path": "/data/c", "value": "wrong"}])
    assert failed_test.value.status == 422


def test_server_side_apply_creates_updates_and_drops_fields(core: client.CoreV1Api) -> None:
    applied = configmap("ssa", a="1", b="2")
    first = core.patch_namespaced_config_map(
        "ssa", NS, applied, field_manager="tester", _content_type="application/apply-patch+yaml"
    )
    assert first.data == {"a": "1", "b": "2"}
    core.patch_namespaced_config_map(
        "ssa", NS, {"data": {"other": "kept"}}, _content_type="application/merge-patch+json"
    )
    second = core.patch_namespaced_config_map(
        "ssa", NS, configmap("ssa", a="9"), field_manager="tester", _content_type="application/apply-patch+yaml"
    )
    assert second.data == {"a": "9", "other": "kept"}  # b was ours and is no longer applied; other is not ours
    with pytest.raises(ApiException) as no_manager:
        core.patch_namespaced_config_map("ssa", NS, applied, _content_type="application/apply-patch+yaml")
    assert no_manager.value.status == 422


def test_patch_with_stale_resource_version_conflicts(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map(NS, configmap("patch-stale"))
    with pytest.raises(ApiException) as stale:
        core.patch_namespaced_config_map(
            "patch-stale",
            NS,
            {"metadata": {"resourceVersion": "1"}, "data": {"a": "1"}},
            _content_type="application/merge-patch+json",
        )
    assert stale.value.status == 409


# --- selectors -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("tier=web", {"sel-a", "sel-b"}),
        ("tier==web,env=prod", {"sel-a"}),
        ("tier!=web", {"sel-c", "sel-d"}),
        ("env in (prod, dev)", {"sel-a", "sel-b", "sel-c"}),
        ("env notin (prod)", {"sel-b", "sel-c", "sel-d"}),
        ("env", {"sel-a", "sel-b", "sel-c"}),
        ("!env", {"sel-d"}),
    ],
)
def test_label_selectors(core: client.CoreV1Api, selector: str, expected: set[str]) -> None:
    labelled = {
        "sel-a": {"tier": "web", "env": "prod"},
        "sel-b": {"tier": "web", "env": "dev"},
        "sel-c": {"tier": "db", "env": "dev"},
        "sel-d": {"tier": "db"},
    }
    for name, labels in labelled.items():
        try:
            core.create_namespaced_config_map(NS, configmap(name, {**labels, "suite": "selectors"}))
        except ApiException as exists:
            assert exists.status == 409
    found = core.list_namespaced_config_map(NS, label_selector=f"suite=selectors,{selector}").items
    assert {item.metadata.name for item in found} == expected


def test_field_selectors(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map(NS, configmap("by-field"))
    assert [
        i.metadata.name for i in core.list_namespaced_config_map(NS, field_selector="metadata.name=by-field").items
    ] == ["by-field"]
    everywhere = core.list_config_map_for_all_namespaces(
        field_selector="metadata.namespace=default,metadata.name!=by-field"
    )
    assert "by-field" not in {i.metadata.name for i in everywhere.items}
    with pytest.raises(ApiException) as bad:
        core.list_namespaced_config_map(NS, label_selector="a in (b")
    assert bad.value.status == 400


def test_list_paging(core: client.CoreV1Api) -> None:
    for index in range(5):
        core.create_namespaced_config_map(NS, configmap(f"page-{index}", {"suite": "paging"}))
    first = core.list_namespaced_config_map(NS, label_selector="suite=paging", limit=2)
    assert len(first.items) == 2 and first.metadata._continue
    rest = core.list_namespaced_config_map(
        NS, label_selector="suite=paging", limit=10, _continue=first.metadata._continue
    )
    assert len(rest.items) == 3


# --- watch -----------------------------------------------------------------------------------------------


def test_watch_resumes_from_resource_version(core: client.CoreV1Api) -> None:
    listed = core.list_namespaced_config_map(NS)
    core.create_namespaced_config_map(NS, configmap("watched", {"suite": "watch"}, a="1"))
    core.patch_namespaced_config_map("watched", NS, {"data": {"a": "2"}}, _content_type="application/merge-patch+json")
    core.delete_namespaced_config_map("watched", NS)
    stream = watch.Watch().stream(
        core.list_namespaced_config_map,
        NS,
        label_selector="suite=watch",
        resource_version=listed.metadata.resource_version,
        timeout_seconds=1,
    )
    events = [(event["type"], event["object"].metadata.name) for event in stream]
    assert events == [("ADDED", "watched"), ("MODIFIED", "watched"), ("DELETED", "watched")]


def test_watch_without_version_starts_with_current_objects_and_times_out(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map(NS, configmap("present", {"suite": "present"}))
    stream = watch.Watch().stream(
        core.list_namespaced_config_map, NS, label_selector="suite=present", timeout_seconds=1
    )
    assert [(e["type"], e["object"].metadata.name) for e in stream] == [("ADDED", "present")]


def test_watch_sees_live_changes_and_selector_transitions(core: client.CoreV1Api) -> None:
    listed = core.list_namespaced_config_map(NS)
    seen: list[tuple[str, str]] = []
    watcher = watch.Watch()

    def follow() -> None:
        for event in watcher.stream(
            core.list_namespaced_config_map,
            NS,
            label_selector="phase=live",
            resource_version=listed.metadata.resource_version,
            timeout_seconds=3,
        ):
            seen.append((event["type"], event["object"].metadata.name))
            if len(seen) == 2:
                watcher.stop()

    thread = threading.Thread(target=follow)
    thread.start()
    core.create_namespaced_config_map(NS, configmap("live", {"phase": "live"}))
    core.patch_namespaced_config_map(
        "live", NS, {"metadata": {"labels": {"phase": "done"}}}, _content_type="application/merge-patch+json"
    )
    thread.join(timeout=5)
    assert seen == [("ADDED", "live"), ("DELETED", "live")]  # leaving the selection reads as a deletion


def test_watch_from_compacted_version_is_410_gone(plane: LocalControlPlane, core: client.CoreV1Api) -> None:
    old = core.list_namespaced_config_map(NS).metadata.resource_version
    core.create_namespaced_config_map(NS, configmap("after-compaction"))
    plane.compact_history()
    with pytest.raises(ApiException) as gone:
        for _ in watch.Watch().stream(core.list_namespaced_config_map, NS, resource_version=old, timeout_seconds=1):
            pass
    assert gone.value.status == 410


def test_watch_bookmarks(plane: LocalControlPlane) -> None:
    request = urllib.request.Request(
        f"{plane.url}/api/v1/namespaces/{NS}/configmaps?watch=true&allowWatchBookmarks=true&timeoutSeconds=1"
        f"&labelSelector=none%3Dmatching",
        headers={"Authorization": f"Bearer {plane.token}"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        events = [json.loads(line) for line in response.read().splitlines()]
    assert events and {e["type"] for e in events} == {"BOOKMARK"}
    assert int(events[-1]["object"]["metadata"]["resourceVersion"]) > 0


# --- dry run, auth ---------------------------------------------------------------------------------------


def test_dry_run_stores_nothing(core: client.CoreV1Api) -> None:
    created = core.create_namespaced_config_map(NS, configmap("dry", a="1"), dry_run="All")
    assert created.metadata.name == "dry" and created.metadata.uid
    with pytest.raises(ApiException):
        core.read_namespaced_config_map("dry", NS)
    core.create_namespaced_config_map(NS, configmap("dry", a="1"))
    patched = core.patch_namespaced_config_map(
        "dry", NS, {"data": {"a": "2"}}, dry_run="All", _content_type="application/merge-patch+json"
    )
    assert patched.data == {"a": "2"}
    core.delete_namespaced_config_map("dry", NS, dry_run="All")
    assert core.read_namespaced_config_map("dry", NS).data == {"a": "1"}


@pytest.mark.parametrize("token", ["", "wrong-token"])
def test_requests_without_the_token_are_401(plane: LocalControlPlane, token: str) -> None:
    for path in ("/version", "/api/v1/namespaces", "/apis"):
        status, _, body = raw_request(plane, "GET", path, token=token)
        assert status == 401 and body["kind"] == "Status" and body["reason"] == "Unauthorized"


# --- custom resources: schema, status, tables, cascade ---------------------------------------------------


@needs_crds
def test_custom_resource_schema_errors_name_the_field(custom: client.CustomObjectsApi) -> None:
    with pytest.raises(ApiException) as refused:
        custom.create_namespaced_custom_object(*RAY, "rayclusters", raycluster("bad-type", replicas="three"))
    assert refused.value.status == 422
    causes = status_of(refused.value)["details"]["causes"]
    assert any(cause["field"] == "spec.workerGroupSpecs[0].replicas" for cause in causes)


@needs_crds
def test_unknown_fields_strict_refused_otherwise_pruned_and_defaults_applied(
    custom: client.CustomObjectsApi, plane: LocalControlPlane
) -> None:
    body = raycluster("unknown-field", bogus=1)
    status, _, refused = raw_request(
        plane, "POST", f"/apis/ray.io/v1/namespaces/{NS}/rayclusters?fieldValidation=Strict", body
    )
    assert status == 400 and 'unknown field "spec.bogus"' in refused["message"]
    status, headers, created = raw_request(
        plane, "POST", f"/apis/ray.io/v1/namespaces/{NS}/rayclusters?fieldValidation=Warn", body
    )
    assert status == 201 and "spec.bogus" in headers.get("Warning", "")
    assert "bogus" not in created["spec"]
    assert created["spec"]["workerGroupSpecs"][0]["minReplicas"] == 0  # a schema default
    custom.delete_namespaced_custom_object(*RAY, "rayclusters", "unknown-field")


@needs_crds
def test_status_subresource_and_generation(custom: client.CustomObjectsApi) -> None:
    created = custom.create_namespaced_custom_object(
        *RAY, "rayclusters", {**raycluster("with-status"), "status": {"state": "x"}}
    )
    assert "status" not in created and created["metadata"]["generation"] == 1
    updated = custom.patch_namespaced_custom_object_status(
        *RAY, "rayclusters", "with-status", {"status": {"state": "ready"}, "spec": {"suspend": True}}
    )
    assert updated["status"] == {"state": "ready"} and "suspend" not in updated["spec"]
    assert updated["metadata"]["generation"] == 1
    labelled = custom.patch_namespaced_custom_object(
        *RAY, "rayclusters", "with-status", {"metadata": {"labels": {"a": "b"}}, "status": {"state": "ignored"}}
    )
    assert labelled["metadata"]["generation"] == 1 and labelled["status"] == {"state": "ready"}
    respecced = custom.patch_namespaced_custom_object(*RAY, "rayclusters", "with-status", {"spec": {"suspend": True}})
    assert respecced["metadata"]["generation"] == 2


@needs_crds
def test_put_of_custom_resource_requires_resource_version(custom: client.CustomObjectsApi) -> None:
    created = custom.create_namespaced_custom_object(*RAY, "rayclusters", raycluster("needs-version"))
    del created["metadata"]["resourceVersion"]
    with pytest.raises(ApiException) as refused:
        custom.replace_namespaced_custom_object(*RAY, "rayclusters", "needs-version", created)
    assert refused.value.status == 422


@needs_crds
def test_table_output_uses_the_crd_printer_columns(plane: LocalControlPlane, custom: client.CustomObjectsApi) -> None:
    custom.create_namespaced_custom_object(*RAY, "rayclusters", raycluster("tabled"))
    custom.patch_namespaced_custom_object_status(*RAY, "rayclusters", "tabled", {"status": {"state": "ready"}})
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    status, _, table = raw_request(
        plane,
        "GET",
        f"/apis/ray.io/v1/namespaces/{NS}/rayclusters?fieldSelector=metadata.name%3Dtabled",
        headers={"Accept": accept},
    )
    assert status == 200 and table["kind"] == "Table"
    names = [column["name"] for column in table["columnDefinitions"]]
    assert names[:3] == ["Name", "desired workers", "available workers"] and "status" in names
    row = dict(zip(names, table["rows"][0]["cells"], strict=False))
    assert row["Name"] == "tabled" and row["status"] == "ready" and row["age"].endswith("s")


@needs_crds
@pytest.mark.parametrize("policy", ["Background", "Foreground"])
def test_deleting_an_owner_deletes_its_dependents_recursively(
    custom: client.CustomObjectsApi, core: client.CoreV1Api, policy: str
) -> None:
    job_name = f"owner-{policy.lower()}"
    job = custom.create_namespaced_custom_object(
        *RAY,
        "rayjobs",
        {
            "apiVersion": "ray.io/v1",
            "kind": "RayJob",
            "metadata": {"name": job_name},
            "spec": {"entrypoint": "python -c 'print(1)'", "rayClusterSpec": raycluster("unused")["spec"]},
        },
    )

    def owned_by(owner: dict[str, Any]) -> list[dict[str, Any]]:
        meta = owner["metadata"]
        return [
            {
                "apiVersion": owner["apiVersion"],
                "kind": owner["kind"],
                "name": meta["name"],
                "uid": meta["uid"],
                "controller": True,
            }
        ]

    cluster = {
        **raycluster(f"{job_name}-cluster"),
        "metadata": {"name": f"{job_name}-cluster", "ownerReferences": owned_by(job)},
    }
    cluster = custom.create_namespaced_custom_object(*RAY, "rayclusters", cluster)
    core.create_namespaced_pod(
        NS,
        {
            "metadata": {"name": f"{job_name}-head", "ownerReferences": owned_by(cluster)},
            "spec": {"containers": [{"name": "ray", "image": "ray"}]},
        },
    )
    custom.delete_namespaced_custom_object(*RAY, "rayjobs", job_name, propagation_policy=policy)
    for read in (
        lambda: custom.get_namespaced_custom_object(*RAY, "rayclusters", f"{job_name}-cluster"),
        lambda: core.read_namespaced_pod(f"{job_name}-head", NS),
    ):
        with pytest.raises(ApiException) as gone:
            read()
        assert gone.value.status == 404


def test_orphan_deletion_keeps_dependents_without_the_owner_reference(core: client.CoreV1Api) -> None:
    owner = core.create_namespaced_config_map(NS, configmap("orphan-owner"))
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "orphan-owner", "uid": owner.metadata.uid}
    core.create_namespaced_config_map(NS, {"metadata": {"name": "orphan-child", "ownerReferences": [ref]}})
    core.delete_namespaced_config_map("orphan-owner", NS, propagation_policy="Orphan")
    assert not core.read_namespaced_config_map("orphan-child", NS).metadata.owner_references


@pytest.mark.parametrize("policy", ["Background", "Foreground"])
def test_finalizers_hold_deletion_until_removed(core: client.CoreV1Api, policy: str) -> None:
    name = f"finalized-{policy.lower()}"
    core.create_namespaced_config_map(NS, {"metadata": {"name": name, "finalizers": ["example.com/hold"]}})
    core.delete_namespaced_config_map(name, NS, propagation_policy=policy)
    held = core.read_namespaced_config_map(name, NS)
    # Foreground: with no dependents left, only the other finalizer holds the object.
    assert held.metadata.deletion_timestamp is not None and held.metadata.finalizers == ["example.com/hold"]
    core.patch_namespaced_config_map(
        name, NS, {"metadata": {"finalizers": None}}, _content_type="application/merge-patch+json"
    )
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_config_map(name, NS)
    assert gone.value.status == 404


def test_crds_gate_their_resources(api: client.ApiClient, custom: client.CustomObjectsApi) -> None:
    extensions = client.ApiextensionsV1Api(api)
    path = ("example.com", "v1", NS, "widgets")
    with pytest.raises(ApiException) as before:
        custom.list_namespaced_custom_object(*path)
    assert before.value.status == 404
    schema = {"type": "object", "properties": {"spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}
    extensions.create_custom_resource_definition(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
                "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": schema}}],
            },
        }
    )
    custom.create_namespaced_custom_object(
        *path, {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 3}}
    )
    assert custom.get_namespaced_custom_object(*path, "w")["spec"] == {"size": 3}
    extensions.delete_custom_resource_definition("widgets.example.com")
    with pytest.raises(ApiException) as after:
        custom.get_namespaced_custom_object(*path, "w")
    assert after.value.status == 404


def test_discovery_documents(plane: LocalControlPlane) -> None:
    assert raw_request(plane, "GET", "/version")[2]["major"] == "1"
    assert raw_request(plane, "GET", "/api")[2]["versions"] == ["v1"]
    core_resources = {r["name"] for r in raw_request(plane, "GET", "/api/v1")[2]["resources"]}
    assert {"namespaces", "configmaps", "services", "services/proxy", "pods", "pods/status", "events"} <= core_resources
    groups = {g["name"] for g in raw_request(plane, "GET", "/apis")[2]["groups"]}
    assert "apiextensions.k8s.io" in groups
    openapi = raw_request(plane, "GET", "/openapi/v3")[2]["paths"]
    assert "api/v1" in openapi
    _status, _, document = raw_request(plane, "GET", openapi["api/v1"]["serverRelativeURL"])
    patch = document["paths"]["/api/v1/namespaces/{namespace}/configmaps/{name}"]["patch"]
    assert "fieldValidation" in {p["name"] for p in patch["parameters"]}


@needs_crds
def test_ray_discovery(plane: LocalControlPlane) -> None:
    resources = {r["name"]: r for r in raw_request(plane, "GET", "/apis/ray.io/v1")[2]["resources"]}
    assert {"rayjobs", "rayjobs/status", "rayclusters", "rayservices"} <= set(resources)
    assert resources["rayjobs"]["kind"] == "RayJob" and resources["rayjobs"]["namespaced"] is True
