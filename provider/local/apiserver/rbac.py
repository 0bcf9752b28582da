"""Who is asking, and may they: bearer tokens to users, and RBAC rules evaluated as kube-apiserver does.

Two kinds of token are accepted. The plane's own token (in its kubeconfig) is a cluster admin, as a
local cluster's first user is. ServiceAccount tokens come from the TokenRequest API
(``kubectl create token <sa>``); their requests are allowed only by the Roles, ClusterRoles and bindings
stored here, so a least-privilege manifest can be tried for real. Discovery and OpenAPI paths are open to
every authenticated user, as the ``system:discovery`` binding makes them in a real cluster.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from .errors import ApiError, qualified
from .registry import RBAC_GROUP
from .resources import Cluster

SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
ADMIN_USER = "kuberay-local-admin"
DEFAULT_TOKEN_SECONDS = 3600
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
    """The admin token plus ServiceAccount tokens issued through TokenRequest (kept only as digests)."""

    def __init__(self, admin_token: str) -> None:
        self._admin = f"Bearer {admin_token}".encode()
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
        return any(url == attributes.path or (url.endswith("*") and attributes.path.startswith(url[:-1]))
                   for url in rule.get("nonResourceURLs") or [])
    if not _matches(rule.get("apiGroups"), attributes.group) or not _resource_matches(rule.get("resources"), attributes):
        return False
    names = rule.get("resourceNames") or []
    return not names or attributes.name in names


class Authorizer:
    """RBAC over the stored Roles and bindings; counts what each restricted user was allowed and refused."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.allowed: Counter[tuple[str, Attributes]] = Counter()
        self.denied: Counter[tuple[str, Attributes]] = Counter()

    def allows(self, user: User, attributes: Attributes) -> bool:
        if user.admin:
            return True
        if not attributes.resource_request and attributes.verb == "get":
            decided = True  # discovery, OpenAPI, version, health: open to authenticated users
        else:
            decided = any(rule_allows(rule, attributes) for rule in self._rules_for(user, attributes.namespace))
        key = (user.name, _without_name(attributes))
        (self.allowed if decided else self.denied)[key] += 1
        return decided

    def _rules_for(self, user: User, namespace: str) -> Iterable[Mapping[str, Any]]:
        for binding in _stored(self.cluster, "clusterrolebindings", None):
            if any(_subject_matches(s, user, "") for s in binding.get("subjects") or []):
                yield from self._role_rules(binding.get("roleRef") or {}, "")
        if namespace:
            for binding in _stored(self.cluster, "rolebindings", namespace):
                if any(_subject_matches(s, user, namespace) for s in binding.get("subjects") or []):
                    yield from self._role_rules(binding.get("roleRef") or {}, namespace)

    def _role_rules(self, ref: Mapping[str, Any], namespace: str) -> list[Mapping[str, Any]]:
        kind, name = ref.get("kind"), str(ref.get("name", ""))
        if kind == "ClusterRole":
            roles, role_namespace = "clusterroles", ""
        elif kind == "Role" and namespace:
            roles, role_namespace = "roles", namespace
        else:
            return []
        rtype = self.cluster.registry.lookup(RBAC_GROUP, "v1", roles)
        role = self.cluster.store.get(rtype.storage_key, role_namespace, name) if rtype else None
        return list((role or {}).get("rules") or [])


def _without_name(attributes: Attributes) -> Attributes:
    """Usage is counted per (verb, resource, namespace): names would make every RayJob its own entry."""
    return Attributes(attributes.verb, "" if attributes.resource_request else attributes.path,
                      attributes.resource_request, attributes.group, attributes.resource, attributes.subresource,
                      attributes.namespace)


def forbidden(user: User, attributes: Attributes) -> ApiError:
    """kube-apiserver's 403 Status, word for word."""
    if not attributes.resource_request:
        return ApiError(403, "Forbidden", f'forbidden: User "{user.name}" cannot {attributes.verb} path "{attributes.path}"')
    scope = f'in the namespace "{attributes.namespace}"' if attributes.namespace else "at the cluster scope"
    why = (f'User "{user.name}" cannot {attributes.verb} resource "{attributes.resource_path}" in API group '
           f'"{attributes.group}" {scope}')
    subject = qualified(attributes.resource, attributes.group)
    subject = f'{subject} "{attributes.name}"' if attributes.name else subject
    return ApiError(403, "Forbidden", f"{subject} is forbidden: {why}", attributes.name, attributes.group,
                    attributes.resource)
