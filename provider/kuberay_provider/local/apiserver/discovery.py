"""Discovery documents (``/api``, ``/apis``, ``/apis/G/V``...) and the OpenAPI v3 documents kubectl reads.

kubectl reads OpenAPI v3 for two things only: whether PATCH of a kind takes ``fieldValidation`` (then it
lets the server validate) and whether the kind takes strategic merge patches (custom resources do not).
So each group-version document lists, per resource, the paths and operations with their
``x-kubernetes-group-version-kind``, plus the CRD's schema under ``components.schemas``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .registry import ResourceRegistry, ResourceType

SERVER_VERSION = {
    "major": "1",
    "minor": "35",
    "gitVersion": "v1.35.0-kuberay-local",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "go1.24.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}

ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
SUBRESOURCE_VERBS = ["get", "patch", "update"]
PROXY_VERBS = ["create", "delete", "get", "patch", "update"]
WRITE_PARAMETERS = ("dryRun", "fieldManager", "fieldValidation", "force", "pretty")
PATCH_CONTENT_TYPES = ("application/apply-patch+yaml", "application/json-patch+json", "application/merge-patch+json")


AUTHORIZATION_GROUP = "authorization.k8s.io"
# Served by code, never stored (access_review.py): create only, as on a real cluster.
REVIEW_TYPES: tuple[ResourceType, ...] = (
    ResourceType(AUTHORIZATION_GROUP, "v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview", False),
    ResourceType(AUTHORIZATION_GROUP, "v1", "selfsubjectrulesreviews", "SelfSubjectRulesReview", False),
)


def review_type(group: str, version: str, plural: str) -> ResourceType | None:
    return next((t for t in REVIEW_TYPES if (t.group, t.version, t.plural) == (group, version, plural)), None)


def _served_groups(registry: ResourceRegistry) -> dict[str, list[str]]:
    groups = {**registry.groups(), AUTHORIZATION_GROUP: ["v1"]}
    return dict(sorted(groups.items()))


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def _group_entry(group: str, versions: list[str]) -> dict[str, Any]:
    listed = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": listed, "preferredVersion": listed[0]}


def api_group_list(registry: ResourceRegistry) -> dict[str, Any]:
    groups = [_group_entry(group, versions) for group, versions in _served_groups(registry).items()]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(registry: ResourceRegistry, group: str) -> dict[str, Any] | None:
    versions = _served_groups(registry).get(group)
    if not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_entry(group, versions)}


def _resource_entries(rtype: ResourceType) -> list[dict[str, Any]]:
    main = {
        "name": rtype.plural,
        "singularName": rtype.singular,
        "namespaced": rtype.namespaced,
        "kind": rtype.kind,
        "verbs": ALL_VERBS,
        "storageVersionHash": hashlib.sha256(f"{rtype.group}/{rtype.plural}".encode()).hexdigest()[:12],
    }
    if rtype.short_names:
        main["shortNames"] = list(rtype.short_names)
    if rtype.categories:
        main["categories"] = list(rtype.categories)
    entries = [main]
    if rtype.has_status:
        entries.append(
            {
                "name": f"{rtype.plural}/status",
                "singularName": "",
                "namespaced": rtype.namespaced,
                "kind": rtype.kind,
                "verbs": SUBRESOURCE_VERBS,
            }
        )
    if rtype.kind == "Service":
        entries.append(
            {
                "name": "services/proxy",
                "singularName": "",
                "namespaced": True,
                "kind": "ServiceProxyOptions",
                "verbs": PROXY_VERBS,
            }
        )
    return entries


def _review_entry(rtype: ResourceType) -> dict[str, Any]:
    return {
        "name": rtype.plural,
        "singularName": rtype.singular,
        "namespaced": False,
        "kind": rtype.kind,
        "verbs": ["create"],
    }


def api_resource_list(registry: ResourceRegistry, group: str, version: str) -> dict[str, Any] | None:
    entries = [entry for rtype in registry.in_group_version(group, version) for entry in _resource_entries(rtype)]
    entries += [_review_entry(t) for t in REVIEW_TYPES if (t.group, t.version) == (group, version)]
    if not entries:
        return None
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": entries,
    }


# --- OpenAPI v3 ----------------------------------------------------------------------------------------


def _schema_name(rtype: ResourceType) -> str:
    if not rtype.group:
        return f"io.k8s.api.core.v1.{rtype.kind}"
    reversed_group = ".".join(reversed(rtype.group.split(".")))
    return f"{reversed_group}.{rtype.version}.{rtype.kind}"


def _operation(
    rtype: ResourceType, action: str, parameters: tuple[str, ...] = (), body_types: tuple[str, ...] = ()
) -> dict[str, Any]:
    gvk = {"group": rtype.group, "version": rtype.version, "kind": rtype.kind}
    ref = {"$ref": f"#/components/schemas/{_schema_name(rtype)}"}
    operation: dict[str, Any] = {
        "operationId": f"{action}{rtype.kind}",
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk,
        "parameters": [
            {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}} for name in parameters
        ],
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": ref}}}},
    }
    if body_types:
        operation["requestBody"] = {"content": {t: {"schema": ref} for t in body_types}, "required": True}
    return operation


def _paths(rtype: ResourceType) -> dict[str, Any]:
    base = rtype.group_version_path + ("/namespaces/{namespace}" if rtype.namespaced else "")
    collection = {
        "get": _operation(rtype, "list", ("labelSelector", "fieldSelector", "watch", "resourceVersion")),
        "post": _operation(rtype, "post", WRITE_PARAMETERS, ("application/json", "application/yaml")),
    }
    item = {
        "get": _operation(rtype, "get"),
        "put": _operation(rtype, "put", WRITE_PARAMETERS, ("application/json", "application/yaml")),
        "patch": _operation(rtype, "patch", WRITE_PARAMETERS, PATCH_CONTENT_TYPES),
        "delete": _operation(rtype, "delete", ("dryRun", "propagationPolicy")),
    }
    paths = {f"{base}/{rtype.plural}": collection, f"{base}/{rtype.plural}/{{name}}": item}
    if rtype.has_status:
        paths[f"{base}/{rtype.plural}/{{name}}/status"] = {k: item[k] for k in ("get", "put", "patch")}
    return paths


def _component(rtype: ResourceType) -> dict[str, Any]:
    schema = dict(rtype.schema) if rtype.schema else {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    schema["x-kubernetes-group-version-kind"] = [{"group": rtype.group, "version": rtype.version, "kind": rtype.kind}]
    return schema


class OpenApiV3:
    """Per group-version documents, rebuilt when the registry changes; hashes let clients cache them."""

    def __init__(self, registry: ResourceRegistry) -> None:
        self._registry = registry
        self._built_for = -1
        self._documents: dict[str, bytes] = {}
        self._hashes: dict[str, str] = {}

    def _rebuild_if_stale(self) -> None:
        if self._built_for == self._registry.revision:
            return
        grouped: dict[str, list[ResourceType]] = {}
        for rtype in self._registry.all():
            grouped.setdefault(rtype.group_version_path.lstrip("/"), []).append(rtype)
        documents = {}
        for key, types in grouped.items():
            document = {
                "openapi": "3.0.0",
                "info": {"title": "Kubernetes", "version": SERVER_VERSION["gitVersion"]},
                "paths": {path: ops for rtype in types for path, ops in _paths(rtype).items()},
                "components": {"schemas": {_schema_name(rtype): _component(rtype) for rtype in types}},
            }
            documents[key] = json.dumps(document).encode()
        self._documents = documents
        self._hashes = {key: hashlib.sha512(body).hexdigest()[:64].upper() for key, body in documents.items()}
        self._built_for = self._registry.revision

    def root(self) -> dict[str, Any]:
        self._rebuild_if_stale()
        paths = {key: {"serverRelativeURL": f"/openapi/v3/{key}?hash={self._hashes[key]}"} for key in self._documents}
        return {"paths": paths}

    def document(self, key: str) -> bytes | None:
        self._rebuild_if_stale()
        return self._documents.get(key)
