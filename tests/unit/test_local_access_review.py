"""SelfSubjectAccessReview / SelfSubjectRulesReview (``kubectl auth can-i [--list]``) and impersonation
(``kubectl --as``) on the local API server: answered by the decision the request authorizer enforces."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from kuberay_provider.local.apiserver.rbac import Attributes, Authorizer, User, aggregate
from kuberay_provider.local.apiserver.resources import Cluster, WriteOptions
from kuberay_provider.local.plane import LocalControlPlane
from tests.unit.test_local_apiserver import CRDS_DIR, needs_crds, raw_request
from tests.unit.test_local_apiserver_protobuf import envelope, field
from tests.unit.test_local_rbac import api_with, service_account_token

PROJECT_ROOT = Path(__file__).resolve().parents[2]
NS = "ray-jobs"  # the manifest's namespace, as service_account_token expects
SA = f"system:serviceaccount:{NS}:kuberay-provider"
REVIEWS = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
RULES = "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews"
COLLECTIONS = {
    "ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts",
    "Role": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
    "RoleBinding": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
    "ClusterRole": "/apis/rbac.authorization.k8s.io/v1/clusterroles",
    "ClusterRoleBinding": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
}
pytestmark = needs_crds


def install(plane: LocalControlPlane, document: dict[str, Any]) -> None:
    path = COLLECTIONS[document["kind"]].format(ns=document["metadata"].get("namespace", ""))
    status, _, body = raw_request(plane, "POST", path, document)
    assert status == 201, body


@pytest.fixture(scope="module")
def plane() -> Iterator[LocalControlPlane]:
    """docker/kubernetes/rbac.yaml as written, and in ``broken`` a binding whose Role does not exist."""
    with LocalControlPlane(crds_dir=CRDS_DIR, controller=False, tls=False) as running:
        for namespace in (NS, "broken"):
            raw_request(running, "POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})
        for document in yaml.safe_load_all((PROJECT_ROOT / "docker" / "kubernetes" / "rbac.yaml").read_text()):
            install(running, document)
        install(
            running,
            {
                "kind": "RoleBinding",
                "metadata": {"name": "dangling", "namespace": "broken"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "missing"},
                "subjects": [{"kind": "ServiceAccount", "name": "kuberay-provider", "namespace": NS}],
            },
        )
        yield running


@pytest.fixture(scope="module")
def token(plane: LocalControlPlane) -> str:
    return service_account_token(plane)


def can_i(
    plane: LocalControlPlane, token: str | None, asked: dict[str, str], headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """The review's status for resourceAttributes ``asked`` (or nonResourceAttributes with ``path``)."""
    spec = {"nonResourceAttributes" if "path" in asked else "resourceAttributes": asked}
    status, _, body = raw_request(
        plane,
        "POST",
        REVIEWS,
        {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": spec},
        headers,
        token,
    )
    assert status == 201, body
    assert body["kind"] == "SelfSubjectAccessReview" and body["spec"] == spec
    return body["status"]


# (review attributes, the same request made for real, the answer): "no" exactly when the request gets 403.
SAME_DECISION = [
    (
        {"verb": "list", "group": "ray.io", "resource": "rayjobs", "namespace": NS},
        ("GET", f"/apis/ray.io/v1/namespaces/{NS}/rayjobs"),
        True,
    ),
    (
        {"verb": "list", "group": "ray.io", "resource": "rayjobs", "namespace": "default"},
        ("GET", "/apis/ray.io/v1/namespaces/default/rayjobs"),
        False,
    ),
    (
        {"verb": "get", "resource": "services", "namespace": NS, "name": "x"},
        ("GET", f"/api/v1/namespaces/{NS}/services/x"),
        True,
    ),
    (
        {"verb": "delete", "resource": "services", "namespace": NS, "name": "x"},
        ("DELETE", f"/api/v1/namespaces/{NS}/services/x"),
        False,
    ),
    (
        {"verb": "deletecollection", "group": "ray.io", "resource": "rayjobs", "namespace": NS},
        ("DELETE", f"/apis/ray.io/v1/namespaces/{NS}/rayjobs"),
        False,
    ),
    (
        {
            "verb": "get",
            "group": "apiextensions.k8s.io",
            "resource": "customresourcedefinitions",
            "name": "rayjobs.ray.io",
        },
        ("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/rayjobs.ray.io"),
        True,
    ),
    (
        {
            "verb": "get",
            "group": "apiextensions.k8s.io",
            "resource": "customresourcedefinitions",
            "name": "widgets.example.com",
        },
        ("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com"),
        False,
    ),
    (
        {
            "verb": "patch",
            "group": "ray.io",
            "resource": "rayjobs",
            "subresource": "status",
            "namespace": NS,
            "name": "j",
        },
        ("PATCH", f"/apis/ray.io/v1/namespaces/{NS}/rayjobs/j/status"),
        False,
    ),
    ({"path": "/version", "verb": "get"}, ("GET", "/version"), True),
    ({"path": "/version", "verb": "post"}, ("POST", "/version"), False),
]


@pytest.mark.parametrize(("asked", "request_made", "allowed"), SAME_DECISION)
def test_the_review_answers_what_the_same_request_gets(
    plane: LocalControlPlane, token: str, asked: dict[str, str], request_made: tuple[str, str], allowed: bool
) -> None:
    answer = can_i(plane, token, asked)
    method, path = request_made
    patching = method == "PATCH"
    status, _, _ = raw_request(
        plane,
        method,
        path,
        {} if patching else None,
        {"Content-Type": "application/merge-patch+json"} if patching else None,
        token,
    )
    assert (answer["allowed"], status != 403) == (allowed, allowed), (answer, status)
    assert answer["denied"] is False  # RBAC has no opinion rather than a denial


def test_the_reason_names_the_binding_as_kube_apiserver_does(plane: LocalControlPlane, token: str) -> None:
    rayjobs = can_i(plane, token, {"verb": "create", "group": "ray.io", "resource": "rayjobs", "namespace": NS})
    assert rayjobs["reason"] == (
        f'RBAC: allowed by RoleBinding "kuberay-provider/{NS}" of Role "kuberay-provider" '
        f'to ServiceAccount "kuberay-provider/{NS}"'
    )
    crd = can_i(
        plane,
        token,
        {
            "verb": "get",
            "group": "apiextensions.k8s.io",
            "resource": "customresourcedefinitions",
            "name": "rayservices.ray.io",
        },
    )
    assert crd["reason"] == (
        'RBAC: allowed by ClusterRoleBinding "kuberay-provider-read-crds" of ClusterRole '
        f'"kuberay-provider-read-crds" to ServiceAccount "kuberay-provider/{NS}"'
    )
    nodes = can_i(plane, token, {"verb": "delete", "resource": "nodes"})
    assert nodes == {"allowed": False, "denied": False, "reason": ""}
    # A binding whose Role is missing is named, as kube-apiserver does.
    pods = can_i(plane, token, {"verb": "get", "resource": "pods", "namespace": "broken"})
    assert pods["reason"] == 'RBAC: role.rbac.authorization.k8s.io "missing" not found'
    assert can_i(plane, token, {"path": "/healthz", "verb": "get"})["reason"].endswith(
        'ClusterRoleBinding "system:discovery" of ClusterRole "system:discovery" to Group "system:authenticated"'
    )


def test_the_admin_token_may_do_everything(plane: LocalControlPlane) -> None:
    everything = can_i(plane, None, {"verb": "*", "group": "*", "resource": "*"})
    assert everything == {"allowed": True, "denied": False, "reason": ""}
    status, body = rules_review(plane, None, {"namespace": "x"})
    assert status == 201 and body["status"]["resourceRules"] == [
        {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}
    ]
    assert body["status"]["nonResourceRules"] == [{"verbs": ["*"], "nonResourceURLs": ["*"]}]


def rules_review(plane: LocalControlPlane, token: str | None, spec: dict[str, str]) -> tuple[int, dict[str, Any]]:
    status, _, body = raw_request(plane, "POST", RULES, {"kind": "SelfSubjectRulesReview", "spec": spec}, token=token)
    return status, body


def test_the_rules_review_lists_the_bindings_rules(plane: LocalControlPlane, token: str) -> None:
    status, body = rules_review(plane, token, {"namespace": NS})
    assert status == 201 and body["status"]["incomplete"] is False, body
    rules = body["status"]["resourceRules"]
    assert {"verbs": ["get", "create", "update"], "apiGroups": [""], "resources": ["services/proxy"]} in rules
    assert {
        "verbs": ["get"],
        "apiGroups": ["apiextensions.k8s.io"],
        "resources": ["customresourcedefinitions"],
        "resourceNames": ["rayjobs.ray.io", "rayclusters.ray.io", "rayservices.ray.io"],
    } in rules
    assert {
        "verbs": ["create"],
        "apiGroups": ["authorization.k8s.io"],
        "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
    } in rules
    assert body["status"]["nonResourceRules"] == [{"verbs": ["get"], "nonResourceURLs": ["*"]}]
    broken = rules_review(plane, token, {"namespace": "broken"})[1]["status"]
    assert broken["incomplete"] is True
    assert broken["evaluationError"] == 'role.rbac.authorization.k8s.io "missing" not found'
    status, body = rules_review(plane, token, {})
    assert (status, body["message"]) == (400, "no namespace on request")


def test_reviews_are_create_only_and_need_exactly_one_kind_of_attributes(plane: LocalControlPlane, token: str) -> None:
    status, _, body = raw_request(plane, "POST", REVIEWS, {"kind": "SelfSubjectAccessReview", "spec": {}})
    assert status == 422 and body["message"] == (
        'SelfSubjectAccessReview.authorization.k8s.io "" is invalid: '
        'spec.resourceAttributes: Invalid value: "null": exactly one of nonResourceAttributes or resourceAttributes '
        "must be specified"
    )
    both = {"resourceAttributes": {"verb": "get"}, "nonResourceAttributes": {"verb": "get", "path": "/"}}
    assert raw_request(plane, "POST", REVIEWS, {"kind": "SelfSubjectAccessReview", "spec": both})[0] == 422
    assert raw_request(plane, "GET", REVIEWS)[0] == 405
    assert raw_request(plane, "GET", f"{REVIEWS}/x")[0] == 404
    assert raw_request(plane, "GET", REVIEWS, token=token)[0] == 403  # list is not granted, as on a real cluster


def test_reviews_are_not_counted_as_usage(plane: LocalControlPlane, token: str) -> None:
    authorizer = plane.server.authorizer  # type: ignore[union-attr]
    can_i(plane, token, {"verb": "update", "group": "ray.io", "resource": "rayservices", "namespace": NS})
    can_i(plane, token, {"verb": "escalate", "group": "ray.io", "resource": "rayservices", "namespace": NS})
    counted = {
        a.verb for (who, a) in [*authorizer.allowed, *authorizer.denied] if who == SA and a.resource == "rayservices"
    }
    assert not counted & {"update", "escalate"}


def test_discovery_serves_the_authorization_group(plane: LocalControlPlane) -> None:
    assert "authorization.k8s.io" in {g["name"] for g in raw_request(plane, "GET", "/apis")[2]["groups"]}
    assert raw_request(plane, "GET", "/apis/authorization.k8s.io")[2]["preferredVersion"]["version"] == "v1"
    resources = raw_request(plane, "GET", "/apis/authorization.k8s.io/v1")[2]["resources"]
    assert {(r["name"], r["kind"], r["namespaced"], tuple(r["verbs"])) for r in resources} == {
        ("selfsubjectaccessreviews", "SelfSubjectAccessReview", False, ("create",)),
        ("selfsubjectrulesreviews", "SelfSubjectRulesReview", False, ("create",)),
    }


def test_a_protobuf_review_as_kubectl_sends_it(plane: LocalControlPlane, token: str) -> None:
    attributes = field(1, NS.encode()) + field(2, b"watch") + field(3, b"ray.io") + field(5, b"rayjobs")
    body = envelope("SelfSubjectAccessReview", field(2, field(1, attributes)))
    request = urllib.request.Request(
        f"{plane.url}{REVIEWS}",
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/vnd.kubernetes.protobuf"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert yaml.safe_load(response.read())["status"]["allowed"] is True


def test_the_official_client_reviews(plane: LocalControlPlane, token: str) -> None:
    with api_with(plane, token) as api:
        review = client.AuthorizationV1Api(api).create_self_subject_access_review(
            client.V1SelfSubjectAccessReview(
                spec=client.V1SelfSubjectAccessReviewSpec(
                    resource_attributes=client.V1ResourceAttributes(
                        verb="patch", group="ray.io", resource="rayclusters", namespace=NS
                    )
                )
            )
        )
        assert review.status.allowed is True and review.status.reason.startswith("RBAC: allowed by RoleBinding")


def test_impersonation_needs_the_impersonate_verb(plane: LocalControlPlane, token: str) -> None:
    as_sa = {"Impersonate-User": SA}
    assert can_i(plane, None, {"verb": "list", "group": "ray.io", "resource": "rayjobs", "namespace": NS}, as_sa)[
        "allowed"
    ]
    assert not can_i(plane, None, {"verb": "delete", "resource": "nodes"}, as_sa)["allowed"]
    as_master = {"Impersonate-User": "jane", "Impersonate-Group": "system:masters"}
    assert can_i(plane, None, {"verb": "delete", "resource": "nodes"}, as_master)["allowed"]
    assert raw_request(plane, "GET", "/api/v1/namespaces", headers={"Impersonate-Group": "x"})[0] == 500
    with_uid = {"Impersonate-User": "x", "Impersonate-Uid": "1"}
    assert raw_request(plane, "GET", "/api/v1/namespaces", headers=with_uid)[0] == 400  # refused, not ignored

    rayjobs, as_jane = f"/apis/ray.io/v1/namespaces/{NS}/rayjobs", {"Impersonate-User": "jane"}
    status, _, body = raw_request(plane, "GET", rayjobs, headers=as_jane, token=token)
    assert (status, body["message"]) == (
        403,
        f'users "jane" is forbidden: User "{SA}" cannot impersonate resource '
        '"users" in API group "" at the cluster scope',
    )
    install(
        plane,
        {
            "kind": "ClusterRole",
            "metadata": {"name": "impersonator"},
            "rules": [{"apiGroups": [""], "resources": ["users"], "verbs": ["impersonate"], "resourceNames": ["jane"]}],
        },
    )
    install(
        plane,
        {
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "impersonator"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "impersonator"},
            "subjects": [{"kind": "ServiceAccount", "name": "kuberay-provider", "namespace": NS}],
        },
    )
    status, _, body = raw_request(plane, "GET", rayjobs, headers=as_jane, token=token)
    assert status == 403 and 'User "jane" cannot list' in body["message"]  # now acting as jane, who may not list


def test_the_decision_without_http() -> None:
    cluster = Cluster()
    rbac = cluster.registry.lookup("rbac.authorization.k8s.io", "v1", "clusterrolebindings")
    assert rbac is not None
    cluster.create(
        rbac,
        "",
        {
            "metadata": {"name": "b"},
            "roleRef": {"kind": "ClusterRole", "name": "gone"},
            "subjects": [{"kind": "User", "name": "ann"}, {"kind": "Group", "name": "g"}],
        },
        WriteOptions(),
    )
    bob = User("bob", ("g", "system:authenticated"))
    decision = Authorizer(cluster).decide(bob, Attributes("get", "", True, "", "pods"))
    assert (
        decision.allowed is False and decision.reason == 'RBAC: clusterrole.rbac.authorization.k8s.io "gone" not found'
    )
    assert aggregate(["a", "b", "a"]) == "[a, b]" and aggregate(["a"]) == "a"
