"""The small slice of the Kubernetes API the controller uses, as a protocol over plain dict objects.

Two implementations: ``HttpClusterAPI`` (kubernetes_asyncio, against the local API server or any real
one) and ``InMemoryClusterAPI`` (tests). Objects are JSON-shaped dicts with camelCase keys, as on the wire.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from kuberay_provider.core.resources import RAYCLUSTER, RAYJOB, RAYSERVICE, RayKind


@dataclass(frozen=True)
class Resource:
    """A Kubernetes resource type: where it is served and whether it has a /status subresource."""

    kind: str
    api_version: str
    plural: str
    namespaced: bool = True
    has_status_subresource: bool = True

    def _prefix(self) -> str:
        return f"/api/{self.api_version}" if "/" not in self.api_version else f"/apis/{self.api_version}"

    def collection_path(self, namespace: str | None) -> str:
        if namespace and self.namespaced:
            return f"{self._prefix()}/namespaces/{namespace}/{self.plural}"
        return f"{self._prefix()}/{self.plural}"

    def object_path(self, namespace: str | None, name: str) -> str:
        return f"{self.collection_path(namespace)}/{name}"


def _ray_resource(kind: RayKind) -> Resource:
    return Resource(kind.kind, kind.api_version, kind.plural)


RAYJOBS = _ray_resource(RAYJOB)
RAYCLUSTERS = _ray_resource(RAYCLUSTER)
RAYSERVICES = _ray_resource(RAYSERVICE)
PODS = Resource("Pod", "v1", "pods")
SERVICES = Resource("Service", "v1", "services")
CONFIGMAPS = Resource("ConfigMap", "v1", "configmaps", has_status_subresource=False)
EVENTS = Resource("Event", "v1", "events", has_status_subresource=False)
NAMESPACES = Resource("Namespace", "v1", "namespaces", namespaced=False)


class ApiError(Exception):
    """A Kubernetes API error response (Status object)."""

    def __init__(self, status: int, reason: str = "", message: str = "") -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class NotFoundError(ApiError):
    pass


class ConflictError(ApiError):
    """409: a stale resourceVersion, or (reason AlreadyExists) a create of an existing name."""

    @property
    def already_exists(self) -> bool:
        return self.reason == "AlreadyExists"


def api_error(status: int, reason: str = "", message: str = "") -> ApiError:
    """The ApiError subclass for an HTTP status."""
    if status == 404:
        return NotFoundError(status, reason or "NotFound", message)
    if status == 409:
        return ConflictError(status, reason or "Conflict", message)
    return ApiError(status, reason, message)


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED | MODIFIED | DELETED
    object: dict[str, Any]


class ClusterAPI(Protocol):
    async def get(self, resource: Resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        ...

    async def list(
        self, resource: Resource, namespace: str | None = None, labels: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """Objects of a type in a namespace (all namespaces when None) matching every label given."""
        ...

    async def create(self, resource: Resource, namespace: str | None, body: Mapping[str, Any]) -> dict[str, Any]: ...

    async def replace(self, resource: Resource, body: Mapping[str, Any]) -> dict[str, Any]:
        """PUT the object (metadata + spec); ConflictError on a stale resourceVersion."""
        ...

    async def replace_status(self, resource: Resource, body: Mapping[str, Any]) -> dict[str, Any]:
        """PUT the /status subresource; ConflictError on a stale resourceVersion."""
        ...

    async def delete(self, resource: Resource, namespace: str | None, name: str) -> bool:
        """Delete (background propagation); False when it was already gone."""
        ...

    def watch(self, resource: Resource) -> AsyncIterator[WatchEvent]:
        """Every object of the type across namespaces as ADDED, then changes, until the stream ends."""
        ...


def meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    metadata: dict[str, Any] = obj.get("metadata") or {}
    return metadata


def name_of(obj: Mapping[str, Any]) -> str:
    name: str = meta(obj).get("name", "")
    return name


def object_ref(obj: Mapping[str, Any]) -> str:
    """``namespace/name``, as KubeRay's events name an object."""
    return f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"


def namespace_of(obj: Mapping[str, Any]) -> str:
    namespace: str = meta(obj).get("namespace", "")
    return namespace


def labels_match(obj: Mapping[str, Any], labels: Mapping[str, str] | None) -> bool:
    have = meta(obj).get("labels") or {}
    return all(have.get(k) == v for k, v in (labels or {}).items())


def label_selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in labels.items())
