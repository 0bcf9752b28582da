"""Transport-neutral descriptions of the Kubernetes API calls the provider makes.

Both the sync and the async client execute these through ``ApiClient.call_api``; building them here
keeps paths, query parameters and content types in one place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import quote

from kuberay_provider.core.errors import ManifestError
from kuberay_provider.core.resources import RayKind, kind_of

KubeObject = dict[str, Any]
KubeObjects = list[KubeObject]
JsonPatch = list[dict[str, Any]]
PatchType = Literal["merge", "json", "strategic"]

DEFAULT_NAMESPACE = "default"
SERVICES = "services"
CRDS = "customresourcedefinitions.apiextensions.k8s.io"

PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
}

# call_api deserialises a response only when its status is listed; "object" means "plain JSON".
_JSON_RESPONSES = {status: "object" for status in (200, 201, 202, 204)}
CONNECT_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Target:
    """What a call is about, in the words an error message needs (never any credential)."""

    verb: str
    resource: str
    namespace: str | None = None
    name: str | None = None

    @property
    def where(self) -> str:
        return f"in namespace '{self.namespace}'" if self.namespace else "at cluster scope"

    @property
    def subject(self) -> str:
        return f"{self.resource} '{self.name}'" if self.name else self.resource


@dataclass(frozen=True)
class KubeRequest:
    method: str
    path: str
    target: Target
    query: tuple[tuple[str, str], ...] = ()
    body: Any = None
    content_type: str = "application/json"
    read_timeout: float | None = None
    is_list: bool = field(default=False)
    missing_ok: bool = False  # a 404 answers None instead of raising NotFoundError

    def allowing_missing(self) -> KubeRequest:
        return replace(self, missing_ok=True)

    def call_api_arguments(self, *, stream: bool = False) -> dict[str, Any]:
        """Keyword arguments for ``ApiClient.call_api`` of either official client."""
        timeout = None if self.read_timeout is None else (CONNECT_TIMEOUT_SECONDS, self.read_timeout)
        return {
            "resource_path": self.path,
            "method": self.method,
            "query_params": list(self.query),
            "header_params": {"Accept": "application/json", "Content-Type": self.content_type},
            "body": self.body,
            "auth_settings": ["BearerToken"],
            "response_types_map": _JSON_RESPONSES,
            "_return_http_data_only": True,
            "_preload_content": not stream,
            "_request_timeout": timeout,
        }

    def query_value(self, key: str) -> str | None:
        return dict(self.query).get(key)


def _segment(value: str) -> str:
    return quote(value, safe="")


def _collection_path(kind: RayKind, namespace: str) -> str:
    return f"/apis/{kind.group}/{kind.version}/namespaces/{_segment(namespace)}/{kind.plural}"


def _object_path(kind: RayKind, namespace: str, name: str) -> str:
    return f"{_collection_path(kind, namespace)}/{_segment(name)}"


def manifest_kind(manifest: KubeObject) -> RayKind:
    kind = kind_of(manifest)
    if kind is None:
        raise ManifestError(
            f"not a ray.io/v1 RayJob, RayCluster or RayService: apiVersion={manifest.get('apiVersion')!r} "
            f"kind={manifest.get('kind')!r}"
        )
    return kind


def create_request(manifest: KubeObject, *, dry_run: bool = False) -> KubeRequest:
    kind = manifest_kind(manifest)
    metadata = manifest.get("metadata") or {}
    namespace = metadata.get("namespace") or DEFAULT_NAMESPACE
    name = metadata.get("name") or (f"{metadata['generateName']}*" if metadata.get("generateName") else None)
    if name is None:
        raise ManifestError(f"{kind.kind} manifest has neither metadata.name nor metadata.generateName")
    query = (("dryRun", "All"),) if dry_run else ()
    target = Target("create", kind.crd_name, namespace, name)
    return KubeRequest("POST", _collection_path(kind, namespace), target, query, body=manifest)


def get_request(kind: RayKind, namespace: str, name: str) -> KubeRequest:
    return KubeRequest("GET", _object_path(kind, namespace, name), Target("get", kind.crd_name, namespace, name))


def list_request(
    kind: RayKind, namespace: str, *, label_selector: str | None = None, field_selector: str | None = None
) -> KubeRequest:
    query = tuple(
        (key, value) for key, value in (("labelSelector", label_selector), ("fieldSelector", field_selector)) if value
    )
    target = Target("list", kind.crd_name, namespace)
    return KubeRequest("GET", _collection_path(kind, namespace), target, query, is_list=True)


def watch_request(
    kind: RayKind,
    namespace: str,
    *,
    resource_version: str,
    server_timeout: float,
    read_timeout: float,
    label_selector: str | None = None,
    field_selector: str | None = None,
) -> KubeRequest:
    listing = list_request(kind, namespace, label_selector=label_selector, field_selector=field_selector)
    query = (
        *listing.query,
        ("watch", "true"),
        ("allowWatchBookmarks", "true"),
        ("resourceVersion", resource_version),
        # The server ends the stream after this long; we then resume from the last resourceVersion.
        ("timeoutSeconds", str(max(1, math.ceil(server_timeout)))),
    )
    target = Target("watch", kind.crd_name, namespace)
    return KubeRequest("GET", listing.path, target, query, read_timeout=read_timeout)


def patch_request(
    kind: RayKind, namespace: str, name: str, body: KubeObject | JsonPatch, patch_type: PatchType
) -> KubeRequest:
    if patch_type not in PATCH_CONTENT_TYPES:
        raise ValueError(f"patch_type must be one of {sorted(PATCH_CONTENT_TYPES)}, not {patch_type!r}")
    if (patch_type == "json") != isinstance(body, list):
        raise TypeError("a JSON patch is a list of operations; merge and strategic patches are a mapping")
    target = Target("patch", kind.crd_name, namespace, name)
    path = _object_path(kind, namespace, name)
    return KubeRequest("PATCH", path, target, body=body, content_type=PATCH_CONTENT_TYPES[patch_type])


def delete_request(kind: RayKind, namespace: str, name: str, propagation_policy: str) -> KubeRequest:
    options = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation_policy}
    target = Target("delete", kind.crd_name, namespace, name)
    return KubeRequest("DELETE", _object_path(kind, namespace, name), target, body=options)


def service_request(namespace: str, name: str) -> KubeRequest:
    path = f"/api/v1/namespaces/{_segment(namespace)}/services/{_segment(name)}"
    return KubeRequest("GET", path, Target("get", SERVICES, namespace, name))


def crd_request(name: str) -> KubeRequest:
    path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{_segment(name)}"
    return KubeRequest("GET", path, Target("get", CRDS, None, name))
