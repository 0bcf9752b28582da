"""Who is asking, and may they: bearer tokens to users, and RBAC rules evaluated as kube-apiserver does.

Two kinds of token are accepted. The plane's own token (in its kubeconfig) is a cluster admin, as a
local cluster's first user is. ServiceAccount tokens come from the TokenRequest API
(``kubectl create token <sa>``); their requests are allowed only by the Roles, ClusterRoles and bindings
stored here, so a least-privilege manifest can be tried for real. Discovery and OpenAPI paths are open to
every authenticated user, as the ``system:discovery`` binding makes them in a real cluster, and so are
access reviews (``kubectl auth can-i``, access_review.py), which ask ``Authorizer.decide`` as requests do.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .discovery import AUTHORIZATION_GROUP, REVIEW_TYPES
from .errors import ApiError, qualified
from .registry import RBAC_GROUP
from .resources import Cluster

SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
ADMIN_USER = "kuberay-local-admin"
DEFAULT_TOKEN_SECONDS = 3600
MIN_TOKEN_SECONDS = 600  # kube-apiserver's floor for a TokenRequest's expirationSeconds
_READ_METHODS = {"GET": "get", "HEAD": "get"}
_WRITE_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()
    admin: bool = False
    service_account: tuple[str, str, str] | None = None  # (namespace, name, uid) it was issued for

    @classmethod
    def for_service_account(cls, namespace: str, name: str, uid: str) -> User:
        groups = ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated")
        return cls(f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}", groups, service_account=(namespace, name, uid))


ADMIN = User(ADMIN_USER, ("system:masters", "system:authenticated"), admin=True)


@dataclass(frozen=True)
class Attributes:
    """What a request asks to do, in RBAC's terms."""

    verb: str
    path: str
    resource_request: bool
    group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""

    @property
    def resource_path(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


def request_verb(method: str, *, named: bool, watch: bool, subresource: str) -> str:
    """kube-apiserver's verb for a resource request (a proxy's verb is its HTTP method's)."""
    if method in _READ_METHODS:
        if named or subresource:
            return "get"
        return "watch" if watch else "list"
    verb = _WRITE_VERBS.get(method, method.lower())
    return "deletecollection" if verb == "delete" and not named else verb


@dataclass
class _IssuedToken:
    user: User
    expires_at: float


class Tokens:
    """The admin token plus ServiceAccount tokens issued through TokenRequest (kept only as digests).

    ``min_seconds``: the shortest lifetime a TokenRequest may ask for; tests lower it to get tokens that
    expire (and are then answered 401) within a wait, as exec-plugin tokens do on EKS and GKE.
    """

    def __init__(self, admin_token: str, min_seconds: int = MIN_TOKEN_SECONDS) -> None:
        self._admin = f"Bearer {admin_token}".encode()
        self.min_seconds = min_seconds
        self._issued: dict[bytes, _IssuedToken] = {}

    def issue(self, service_account: Mapping[str, Any], seconds: int = DEFAULT_TOKEN_SECONDS) -> tuple[str, float]:
        meta = service_account["metadata"]
        user = User.for_service_account(meta["namespace"], meta["name"], str(meta.get("uid", "")))
        token = secrets.token_urlsafe(32)
        expires_at = time.time() + seconds
        self._issued[_digest(f"Bearer {token}".encode())] = _IssuedToken(user, expires_at)
        return token, expires_at

    def authenticate(self, header: str, cluster: Cluster) -> User | None:
        presented = header.encode()
        if hmac.compare_digest(presented, self._admin):
            return ADMIN
        issued = self._issued.get(_digest(presented))
        if issued is None or issued.expires_at <= time.time():
            return None
        namespace, name, uid = issued.user.service_account or ("", "", "")
        account = _service_account(cluster, namespace, name)
        # A bound token dies with its ServiceAccount (and is not revived by a new one of the same name).
        if account is None or str(account["metadata"].get("uid", "")) != uid:
            return None
        return issued.user


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


def _service_account(cluster: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    rtype = cluster.registry.lookup("", "v1", "serviceaccounts")
    return cluster.store.get(rtype.storage_key, namespace, name) if rtype else None


def _stored(cluster: Cluster, plural: str, namespace: str | None) -> list[dict[str, Any]]:
    rtype = cluster.registry.lookup(RBAC_GROUP, "v1", plural)
    return cluster.store.list(rtype.storage_key, namespace) if rtype else []


def _subject_matches(subject: Mapping[str, Any], user: User, binding_namespace: str) -> bool:
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return user.name == f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}"
    if kind == "User":
        return user.name == name
    if kind == "Group":
        return name in user.groups
    return False


def _matches(values: Iterable[str] | None, wanted: str) -> bool:
    values = list(values or [])
    return "*" in values or wanted in values


def _resource_matches(resources: Iterable[str] | None, attributes: Attributes) -> bool:
    resources = list(resources or [])
    if "*" in resources or attributes.resource_path in resources:
        return True
    if attributes.subresource:
        return f"*/{attributes.subresource}" in resources or f"{attributes.resource}/*" in resources
    return False


def rule_allows(rule: Mapping[str, Any], attributes: Attributes) -> bool:
    if not _matches(rule.get("verbs"), attributes.verb):
        return False
    if not attributes.resource_request:
        return any(
            url == attributes.path or (url.endswith("*") and attributes.path.startswith(url[:-1]))
            for url in rule.get("nonResourceURLs") or []
        )
    if not _matches(rule.get("apiGroups"), attributes.group) or not _resource_matches(
        rule.get("resources"), attributes
    ):
        return False
    names = rule.get("resourceNames") or []
    return not names or attributes.name in names


@dataclass(frozen=True)
class Decision:
    """An RBAC answer with kube-apiserver's reason: who allowed it, or why bindings could not be read."""

    allowed: bool
    reason: str = ""


@dataclass(frozen=True)
class Grant:
    """The rules one binding gives a user, named as kube-apiserver names it in a reason; ``error`` when its
    role cannot be read (a dangling roleRef)."""

    source: str
    rules: tuple[Mapping[str, Any], ...] = ()
    error: str = ""


AUTHENTICATED = {"kind": "Group", "name": "system:authenticated"}
# What every authenticated user may do without a binding of theirs, as a real cluster's default
# system:basic-user and system:discovery bindings allow. Built in, not stored; discovery is wider than a real
# cluster's: every non-resource GET (discovery, OpenAPI, version, health) is open.
DEFAULT_ROLES: dict[str, tuple[Mapping[str, Any], ...]] = {
    "system:basic-user": (
        {"verbs": ["create"], "apiGroups": [AUTHORIZATION_GROUP], "resources": [t.plural for t in REVIEW_TYPES]},
    ),
    "system:discovery": ({"verbs": ["get"], "nonResourceURLs": ["*"]},),
}
# What system:masters may do (the admin token), as kube-apiserver lists it in a SelfSubjectRulesReview.
ADMIN_RULES: tuple[Mapping[str, Any], ...] = (
    {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]},
    {"verbs": ["*"], "nonResourceURLs": ["*"]},
)


def _quoted(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # Go's %q, for the names RBAC allows


def describe_subject(subject: Mapping[str, Any], binding_namespace: str) -> str:
    kind, name = str(subject.get("kind", "")), str(subject.get("name", ""))
    if kind == "ServiceAccount":
        return f"{kind} {_quoted(name + '/' + (subject.get('namespace') or binding_namespace))}"
    return f"{kind} {_quoted(name)}"


def describe_binding(binding: Mapping[str, Any], subject: Mapping[str, Any]) -> str:
    """``RoleBinding "b/ns" of Role "r" to ServiceAccount "sa/ns"``, as in kube-apiserver's reasons."""
    meta, ref = binding.get("metadata") or {}, binding.get("roleRef") or {}
    namespace = str(meta.get("namespace", ""))
    kind = "RoleBinding" if namespace else "ClusterRoleBinding"
    name = f"{meta.get('name', '')}/{namespace}" if namespace else str(meta.get("name", ""))
    return (
        f"{kind} {_quoted(name)} of {ref.get('kind', '')} {_quoted(str(ref.get('name', '')))} "
        f"to {describe_subject(subject, namespace)}"
    )


DEFAULT_GRANTS = tuple(
    Grant(
        describe_binding({"metadata": {"name": name}, "roleRef": {"kind": "ClusterRole", "name": name}}, AUTHENTICATED),
        rules,
    )
    for name, rules in DEFAULT_ROLES.items()
)


def aggregate(errors: Iterable[str]) -> str:
    """Go's utilerrors.NewAggregate(...).Error(): one message as is, several deduplicated in brackets."""
    unique = list(dict.fromkeys(errors))
    return unique[0] if len(unique) == 1 else f"[{', '.join(unique)}]"


class Authorizer:
    """RBAC over the stored Roles and bindings; counts what each restricted user was allowed and refused.

    ``decide`` is the one evaluation: requests (through ``allows``) and SelfSubjectAccessReviews both use it.
    """

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.allowed: Counter[tuple[str, Attributes]] = Counter()
        self.denied: Counter[tuple[str, Attributes]] = Counter()

    def allows(self, user: User, attributes: Attributes) -> bool:
        """The decision for a request actually made, counted (an access review is not counted)."""
        if user.admin:
            return True
        decided = self.decide(user, attributes).allowed
        key = (user.name, _without_name(attributes))
        (self.allowed if decided else self.denied)[key] += 1
        return decided

    def decide(self, user: User, attributes: Attributes) -> Decision:
        if user.admin:
            return Decision(True)  # system:masters: kube-apiserver gives no reason either
        errors: list[str] = []
        for grant in self.grants(user, attributes.namespace):
            if grant.error:
                errors.append(grant.error)
            elif any(rule_allows(rule, attributes) for rule in grant.rules):
                return Decision(True, f"RBAC: allowed by {grant.source}")
        # RBAC never denies outright: no rule is "no opinion", with a reason only if bindings were broken.
        return Decision(False, f"RBAC: {aggregate(errors)}" if errors else "")

    def grants(self, user: User, namespace: str) -> Iterator[Grant]:
        """Every binding that applies to ``user`` in ``namespace`` (cluster-wide ones only for ""), in
        kube-apiserver's order: ClusterRoleBindings, then the namespace's RoleBindings."""
        if AUTHENTICATED["name"] in user.groups:
            yield from DEFAULT_GRANTS
        bindings = _stored(self.cluster, "clusterrolebindings", None)
        if namespace:
            bindings += _stored(self.cluster, "rolebindings", namespace)
        for binding in bindings:
            binding_namespace = str(binding["metadata"].get("namespace", ""))
            subjects = binding.get("subjects") or []
            subject = next((s for s in subjects if _subject_matches(s, user, binding_namespace)), None)
            if subject is not None:
                rules, error = self._role_rules(binding.get("roleRef") or {}, binding_namespace)
                yield Grant(describe_binding(binding, subject), rules, error)

    def _role_rules(self, ref: Mapping[str, Any], namespace: str) -> tuple[tuple[Mapping[str, Any], ...], str]:
        """The role's rules, or kube-apiserver's error for a role that cannot be read."""
        kind, name = ref.get("kind"), str(ref.get("name", ""))
        if kind == "ClusterRole":
            roles, role_namespace = "clusterroles", ""
        elif kind == "Role":
            roles, role_namespace = "roles", namespace
        else:
            return (), f"unsupported role reference kind: {_quoted(str(kind))}"
        rtype = self.cluster.registry.lookup(RBAC_GROUP, "v1", roles)
        role = self.cluster.store.get(rtype.storage_key, role_namespace, name) if rtype else None
        if role is None:
            return (), f"{qualified(roles[:-1], RBAC_GROUP)} {_quoted(name)} not found"
        return tuple(role.get("rules") or ()), ""


def _without_name(attributes: Attributes) -> Attributes:
    """Usage is counted per (verb, resource, namespace): names would make every RayJob its own entry."""
    return Attributes(
        attributes.verb,
        "" if attributes.resource_request else attributes.path,
        attributes.resource_request,
        attributes.group,
        attributes.resource,
        attributes.subresource,
        attributes.namespace,
    )


def forbidden(user: User, attributes: Attributes) -> ApiError:
    """kube-apiserver's 403 Status, word for word."""
    if not attributes.resource_request:
        return ApiError(
            403, "Forbidden", f'forbidden: User "{user.name}" cannot {attributes.verb} path "{attributes.path}"'
        )
    scope = f'in the namespace "{attributes.namespace}"' if attributes.namespace else "at the cluster scope"
    why = (
        f'User "{user.name}" cannot {attributes.verb} resource "{attributes.resource_path}" in API group '
        f'"{attributes.group}" {scope}'
    )
    subject = qualified(attributes.resource, attributes.group)
    subject = f'{subject} "{attributes.name}"' if attributes.name else subject
    return ApiError(
        403, "Forbidden", f"{subject} is forbidden: {why}", attributes.name, attributes.group, attributes.resource
    )
