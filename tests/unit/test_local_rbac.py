"""RBAC in the local API server: ServiceAccount tokens from TokenRequest, Roles and bindings enforced as
kube-apiserver enforces them, and the provider's 401/403 messages naming what is missing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from kuberay_provider.core.kube.errors import ForbiddenError, UnauthorizedError
from kuberay_provider.core.kube.sync_client import RayObjectsClient
from kuberay_provider.core.resources import RAYCLUSTER, RAYJOB
from kuberay_provider.local.apiserver.rbac import Attributes, rule_allows
from kuberay_provider.local.plane import LocalControlPlane
from tests.unit.test_local_apiserver import CRDS_DIR, needs_crds, raw_request

PROJECT_ROOT = Path(__file__).resolve().parents[2]
NS = "ray-jobs"
pytestmark = needs_crds


@pytest.fixture(scope="module")
def plane() -> Iterator[LocalControlPlane]:
    with LocalControlPlane(crds_dir=CRDS_DIR, controller=False, tls=False) as running:
        with running.api_client() as admin:
            client.CoreV1Api(admin).create_namespace({"metadata": {"name": NS}})
            for document in yaml.safe_load_all((PROJECT_ROOT / "docker" / "kubernetes" / "rbac.yaml").read_text()):
                _create(admin, without_services_get(document))
        yield running


def without_services_get(document: dict[str, Any]) -> dict[str, Any]:
    """The manifest as a user who never submits to a bare Ray head installs it: the rule it says to drop
    (get services, for volcano_job / head_service) dropped, so a missing verb can be shown."""
    if document.get("kind") == "Role":
        document["rules"] = [rule for rule in document["rules"] if rule.get("resources") != ["services"]]
    return document


def _create(api: client.ApiClient, document: dict[str, Any]) -> None:
    kind, namespace = document["kind"], document["metadata"].get("namespace")
    rbac = client.RbacAuthorizationV1Api(api)
    {
        "ServiceAccount": lambda: client.CoreV1Api(api).create_namespaced_service_account(namespace, document),
        "Role": lambda: rbac.create_namespaced_role(namespace, document),
        "RoleBinding": lambda: rbac.create_namespaced_role_binding(namespace, document),
        "ClusterRole": lambda: rbac.create_cluster_role(document),
        "ClusterRoleBinding": lambda: rbac.create_cluster_role_binding(document),
    }[kind]()


def service_account_token(plane: LocalControlPlane, name: str = "kuberay-provider", seconds: int = 3600) -> str:
    status, _, body = raw_request(
        plane,
        "POST",
        f"/api/v1/namespaces/{NS}/serviceaccounts/{name}/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": seconds}},
    )
    assert status == 201, body
    assert body["kind"] == "TokenRequest" and body["status"]["expirationTimestamp"]
    return body["status"]["token"]


def api_with(plane: LocalControlPlane, token: str) -> client.ApiClient:
    configuration = client.Configuration()
    configuration.host = plane.url
    configuration.api_key = {"BearerToken": token}
    configuration.api_key_prefix = {"BearerToken": "Bearer"}
    return client.ApiClient(configuration)


def rayjob(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"entrypoint": "python -c 'print(1)'", "clusterSelector": {"ray.io/cluster": "shared"}},
    }


def test_the_manifest_s_verbs_are_allowed_to_its_service_account(plane: LocalControlPlane) -> None:
    with api_with(plane, service_account_token(plane)) as api:
        kube = RayObjectsClient(api)
        kube.create(rayjob("allowed"), dry_run=True)
        kube.create(rayjob("allowed"))
        assert kube.get(RAYJOB, NS, "allowed")["metadata"]["name"] == "allowed"
        assert [item["metadata"]["name"] for item in kube.list(RAYJOB, NS)] == ["allowed"]
        kube.patch(RAYJOB, NS, "allowed", {"metadata": {"labels": {"touched": "yes"}}})
        assert kube.find(RAYCLUSTER, NS, "shared") is None  # get: the cluster a clusterSelector names
        assert kube.delete(RAYJOB, NS, "allowed")
        custom = client.ApiextensionsV1Api(api)
        assert custom.read_custom_resource_definition("rayjobs.ray.io").metadata.name == "rayjobs.ray.io"
        client.CoreV1Api(api).get_api_resources()  # discovery is open to any authenticated user


def test_a_missing_verb_is_refused_with_kube_apiservers_words_and_the_provider_names_the_rule(
    plane: LocalControlPlane,
) -> None:
    # Without its services rule, the Role grants services/proxy only, never services themselves.
    with api_with(plane, service_account_token(plane)) as api:
        with pytest.raises(ApiException) as raw:
            client.CoreV1Api(api).read_namespaced_service("x-head-svc", NS)
        assert raw.value.status == 403
        user = f"system:serviceaccount:{NS}:kuberay-provider"
        assert (
            f'services "x-head-svc" is forbidden: User "{user}" cannot get resource "services" in API group '
            f'"" in the namespace "{NS}"'
        ) == json.loads(raw.value.body)["message"]
        with pytest.raises(ForbiddenError) as refused:
            RayObjectsClient(api).read_service(NS, "x-head-svc")
        message = str(refused.value)
        assert "verb 'get' on resource 'services' in API group ''" in message, message
        assert '{apiGroups: [""], resources: ["services"], verbs: ["get"]}' in message
        assert user in message  # the server's own words say who was refused
        with pytest.raises(ForbiddenError, match="verb 'list' on resource 'rayjobs'"):
            RayObjectsClient(api).list(RAYJOB, "default")  # the Role is for ray-jobs only
        with pytest.raises(ApiException) as crd:
            client.ApiextensionsV1Api(api).read_custom_resource_definition(
                "customresourcedefinitions.apiextensions.k8s.io"
            )
        assert crd.value.status == 403 and json.loads(crd.value.body)["message"].endswith(
            "at the cluster scope"
        )  # resourceNames limit the CRDs


def test_unknown_expired_and_orphaned_tokens_are_401_and_the_provider_says_so(plane: LocalControlPlane) -> None:
    with (
        api_with(plane, "not-a-token") as api,
        pytest.raises(UnauthorizedError, match="rejected the credentials in use"),
    ):
        RayObjectsClient(api).list(RAYJOB, NS)
    with plane.api_client() as admin:
        core = client.CoreV1Api(admin)
        core.create_namespaced_service_account(NS, {"metadata": {"name": "short-lived"}})
        token = service_account_token(plane, "short-lived")
        status, _, _ = raw_request(plane, "GET", f"/apis/ray.io/v1/namespaces/{NS}/rayjobs", token=token)
        assert status == 403  # authenticated, but no binding
        core.delete_namespaced_service_account("short-lived", NS)
        core.create_namespaced_service_account(NS, {"metadata": {"name": "short-lived"}})
        status, _, body = raw_request(plane, "GET", f"/apis/ray.io/v1/namespaces/{NS}/rayjobs", token=token)
        assert (status, body["reason"]) == (401, "Unauthorized")  # a bound token dies with its ServiceAccount
    status, _, body = raw_request(
        plane,
        "POST",
        f"/api/v1/namespaces/{NS}/serviceaccounts/kuberay-provider/token",
        {"spec": {"expirationSeconds": 60}},
    )
    assert status == 400 and "10 minutes" in body["message"]
    status, _, _ = raw_request(plane, "POST", f"/api/v1/namespaces/{NS}/serviceaccounts/nobody/token", {"spec": {}})
    assert status == 404


def test_the_plane_counts_what_a_service_account_was_allowed_and_refused(plane: LocalControlPlane) -> None:
    authorizer = plane.server.authorizer  # type: ignore[union-attr]
    with api_with(plane, service_account_token(plane)) as api:
        RayObjectsClient(api).list(RAYJOB, NS)
        with pytest.raises(ForbiddenError):
            RayObjectsClient(api).list(RAYJOB, "default")
    user = f"system:serviceaccount:{NS}:kuberay-provider"
    allowed = {(a.verb, a.resource, a.namespace) for (who, a) in authorizer.allowed if who == user}
    denied = {(a.verb, a.resource, a.namespace) for (who, a) in authorizer.denied if who == user}
    assert ("list", "rayjobs", NS) in allowed and ("list", "rayjobs", "default") in denied


@pytest.mark.parametrize(
    ("rule", "attributes", "allowed"),
    [
        (
            {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
            Attributes("delete", "", True, "ray.io", "rayjobs"),
            True,
        ),
        (
            {"apiGroups": [""], "resources": ["services/proxy"], "verbs": ["get"]},
            Attributes("get", "", True, "", "services", "proxy", "ns", "head:dashboard"),
            True,
        ),
        (
            {"apiGroups": [""], "resources": ["services"], "verbs": ["get"]},
            Attributes("get", "", True, "", "services", "proxy", "ns", "head:dashboard"),
            False,
        ),  # subresources are separate
        (
            {"apiGroups": [""], "resources": ["*/proxy"], "verbs": ["create"]},
            Attributes("create", "", True, "", "services", "proxy", "ns", "head"),
            True,
        ),
        (
            {"apiGroups": ["ray.io"], "resources": ["rayjobs"], "verbs": ["get"], "resourceNames": ["a"]},
            Attributes("get", "", True, "ray.io", "rayjobs", "", "ns", "b"),
            False,
        ),
        (
            {"apiGroups": ["ray.io"], "resources": ["rayjobs"], "verbs": ["create"], "resourceNames": ["a"]},
            Attributes("create", "", True, "ray.io", "rayjobs", "", "ns", ""),
            False,
        ),  # create has no name to match
        ({"nonResourceURLs": ["/metrics*"], "verbs": ["get"]}, Attributes("get", "/metrics/x", False), True),
    ],
)
def test_rule_matching(rule: dict[str, Any], attributes: Attributes, allowed: bool) -> None:
    assert rule_allows(rule, attributes) is allowed
