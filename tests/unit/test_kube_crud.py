"""CRUD, dry-run, Service/CRD reads of the kube clients, through the real official clients over HTTP.

Every test runs twice: with the sync client and with the async client (``kube`` is parametrized).
"""

from __future__ import annotations

from typing import Any

import pytest

from kuberay_provider.core.errors import ManifestError
from kuberay_provider.core.kube.client_base import ObjectList
from kuberay_provider.core.kube.errors import KubeApiError, NotFoundError
from kuberay_provider.core.resources import RAYCLUSTER, RAYJOB
from tests.support.fake_apiserver import FakeApiServer
from tests.support.kube_fixtures import *  # noqa: F403 - fixtures
from tests.support.kube_fixtures import rayjob


async def test_create_get_find_return_plain_dicts(kube: Any, apiserver: FakeApiServer) -> None:
    created = await kube.create(rayjob("job-a", namespace="team"))

    assert type(created) is dict
    assert created["metadata"]["namespace"] == "team"
    assert created["metadata"]["resourceVersion"]
    assert await kube.get(RAYJOB, "team", "job-a") == created
    assert await kube.find(RAYJOB, "team", "job-a") == created
    assert await kube.find(RAYJOB, "team", "missing") is None
    assert apiserver.requests[0].path == "/apis/ray.io/v1/namespaces/team/rayjobs"


async def test_create_defaults_to_the_default_namespace(kube: Any) -> None:
    manifest = rayjob("job-b")
    del manifest["metadata"]["namespace"]

    created = await kube.create(manifest)

    assert created["metadata"]["namespace"] == "default"


async def test_create_with_generate_name(kube: Any) -> None:
    created = await kube.create(rayjob(None, generateName="nightly-"))

    assert created["metadata"]["name"].startswith("nightly-")
    assert created["metadata"]["name"] != "nightly-"


async def test_dry_run_sends_dry_run_all_and_stores_nothing(kube: Any, apiserver: FakeApiServer) -> None:
    result = await kube.create(rayjob("job-dry"), dry_run=True)

    assert result["metadata"]["name"] == "job-dry"
    assert apiserver.requests[-1].query == {"dryRun": "All"}
    assert await kube.find(RAYJOB, "default", "job-dry") is None


async def test_create_refuses_a_manifest_that_is_not_a_ray_object(kube: Any, apiserver: FakeApiServer) -> None:
    with pytest.raises(ManifestError, match="not a ray.io/v1"):
        await kube.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}})
    with pytest.raises(ManifestError, match="generateName"):
        await kube.create(rayjob(None))
    assert apiserver.requests == []


async def test_list_filters_by_label_and_keeps_the_resource_version(kube: Any, apiserver: FakeApiServer) -> None:
    await kube.create(rayjob("job-1", labels={"team": "a"}))
    await kube.create(rayjob("job-2", labels={"team": "b"}))
    await kube.create(rayjob("job-3", labels={"team": "a"}))

    everything = await kube.list_with_version(RAYJOB, "default")
    team_a = await kube.list(RAYJOB, "default", label_selector="team=a")

    assert isinstance(everything, ObjectList)
    assert [o["metadata"]["name"] for o in everything.items] == ["job-1", "job-2", "job-3"]
    assert everything.resource_version == everything.items[-1]["metadata"]["resourceVersion"]
    assert [o["metadata"]["name"] for o in team_a] == ["job-1", "job-3"]
    assert apiserver.requests[-1].query == {"labelSelector": "team=a"}
    assert await kube.list(RAYCLUSTER, "default") == []


async def test_merge_patch_is_the_default(kube: Any, apiserver: FakeApiServer) -> None:
    await kube.create(rayjob("job-p", labels={"keep": "yes", "drop": "yes"}))

    patch = {"metadata": {"labels": {"drop": None}}, "spec": {"suspend": True}}
    patched = await kube.patch(RAYJOB, "default", "job-p", patch)

    assert patched["metadata"]["labels"] == {"keep": "yes"}
    assert patched["spec"] == {"entrypoint": "python x.py", "suspend": True}
    assert patched["metadata"]["generation"] == 2
    assert apiserver.requests[-1].content_type == "application/merge-patch+json"


async def test_json_patch_takes_a_list_of_operations(kube: Any, apiserver: FakeApiServer) -> None:
    await kube.create(rayjob("job-j"))

    operations = [{"op": "replace", "path": "/spec/entrypoint", "value": "python y.py"}]
    patched = await kube.patch(RAYJOB, "default", "job-j", operations, patch_type="json")

    assert patched["spec"]["entrypoint"] == "python y.py"
    assert apiserver.requests[-1].content_type == "application/json-patch+json"
    assert apiserver.requests[-1].body == operations


async def test_patch_checks_the_body_matches_the_patch_type(kube: Any) -> None:
    with pytest.raises(TypeError):
        await kube.patch(RAYJOB, "default", "job-j", {"spec": {}}, patch_type="json")
    with pytest.raises(ValueError):
        await kube.patch(RAYJOB, "default", "job-j", {"spec": {}}, patch_type="apply")


async def test_strategic_patch_is_sent_as_such(kube: Any, apiserver: FakeApiServer) -> None:
    # The real apiserver (and the fake) answer 415 for strategic merge patches of custom resources.
    await kube.create(rayjob("job-s"))

    with pytest.raises(KubeApiError) as caught:
        await kube.patch(RAYJOB, "default", "job-s", {"spec": {"suspend": True}}, patch_type="strategic")

    assert caught.value.status == 415
    assert apiserver.requests[-1].content_type == "application/strategic-merge-patch+json"


async def test_delete_uses_foreground_propagation_and_reports_absence(kube: Any, apiserver: FakeApiServer) -> None:
    await kube.create(rayjob("job-d"))

    assert await kube.delete(RAYJOB, "default", "job-d") is True
    assert await kube.delete(RAYJOB, "default", "job-d") is False
    assert await kube.delete(RAYJOB, "default", "job-x", propagation_policy="Background") is False
    assert apiserver.store.delete_options[0]["propagationPolicy"] == "Foreground"
    with pytest.raises(NotFoundError):
        await kube.get(RAYJOB, "default", "job-d")


async def test_read_service_and_crd(kube: Any, apiserver: FakeApiServer) -> None:
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "job-a-head-svc", "namespace": "ns"}}
    apiserver.call(lambda store: store.services.update({("ns", "job-a-head-svc"): service}))

    assert await kube.read_service("ns", "job-a-head-svc") == service
    assert await kube.read_service("ns", "other") is None
    crd = await kube.read_crd("rayjobs.ray.io")
    assert crd["spec"]["names"]["kind"] == "RayJob"
    with pytest.raises(NotFoundError, match="customresourcedefinitions.apiextensions.k8s.io 'nope.ray.io'"):
        await kube.read_crd("nope.ray.io")


async def test_api_server_url_and_repr_carry_no_credentials(kube: Any, apiserver: FakeApiServer) -> None:
    client = getattr(kube, "sync", kube)

    assert client.api_server_url == apiserver.url
    assert apiserver.token not in repr(client)
    assert apiserver.url in repr(client)
