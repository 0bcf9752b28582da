"""InMemoryClusterAPI: a faithful-enough in-process Kubernetes API for controller tests.

It keeps what the controller's correctness depends on: resourceVersion conflicts, the /status
subresource (PUT of the object ignores status, PUT of /status ignores the rest), generation bumps on
spec changes, generateName, finalizers with deletionTimestamp, ownerReference cascade deletion, label
selection and watch streams.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any

from .api import (
    NAMESPACES,
    ApiError,
    ConflictError,
    NotFoundError,
    Resource,
    WatchEvent,
    labels_match,
    meta,
)
from .kuberay import random_suffix

Key = tuple[str, str, str]  # (plural, namespace, name)


def _now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class InMemoryClusterAPI:
    def __init__(self) -> None:
        self.objects: dict[Key, dict[str, Any]] = {}
        self._kinds: dict[str, Resource] = {}
        self._versions = itertools.count(1)
        self._watchers: dict[str, list[asyncio.Queue[WatchEvent | None]]] = {}

    # -- helpers ---------------------------------------------------------------------------------
    @staticmethod
    def _key(resource: Resource, namespace: str | None, name: str) -> Key:
        return (resource.plural, (namespace or "") if resource.namespaced else "", name)

    def _publish(self, resource: Resource, event_type: str, obj: dict[str, Any]) -> None:
        for queue in self._watchers.get(resource.plural, []):
            queue.put_nowait(WatchEvent(event_type, copy.deepcopy(obj)))

    def _stored(self, resource: Resource, body: Mapping[str, Any]) -> dict[str, Any]:
        m = body.get("metadata") or {}
        key = self._key(resource, m.get("namespace"), m.get("name", ""))
        current = self.objects.get(key)
        if current is None:
            raise NotFoundError(404, "NotFound", f'{resource.plural} "{m.get("name")}" not found')
        sent_version = m.get("resourceVersion")
        if sent_version and sent_version != meta(current)["resourceVersion"]:
            raise ConflictError(
                409,
                "Conflict",
                "the object has been modified; please apply your changes to the latest version and try again",
            )
        return current

    def _commit(self, resource: Resource, obj: dict[str, Any], event_type: str) -> dict[str, Any]:
        obj["metadata"]["resourceVersion"] = str(next(self._versions))
        self.objects[self._key(resource, obj["metadata"].get("namespace"), obj["metadata"]["name"])] = obj
        self._publish(resource, event_type, obj)
        return copy.deepcopy(obj)

    # -- ClusterAPI ------------------------------------------------------------------------------
    async def get(self, resource: Resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        obj = self.objects.get(self._key(resource, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    async def list(
        self, resource: Resource, namespace: str | None = None, labels: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(obj)
            for (plural, ns, _), obj in sorted(self.objects.items())
            if plural == resource.plural and (not namespace or ns == namespace) and labels_match(obj, labels)
        ]

    async def create(self, resource: Resource, namespace: str | None, body: Mapping[str, Any]) -> dict[str, Any]:
        obj = copy.deepcopy(dict(body))
        m = obj.setdefault("metadata", {})
        if not m.get("name") and m.get("generateName"):
            m["name"] = m["generateName"] + random_suffix()
        if resource.namespaced:
            m["namespace"] = namespace or m.get("namespace") or "default"
        if self._key(resource, m.get("namespace"), m["name"]) in self.objects:
            raise ConflictError(409, "AlreadyExists", f'{resource.plural} "{m["name"]}" already exists')
        m.update(uid=str(uuid.uuid4()), creationTimestamp=_now_rfc3339(), generation=1)
        obj.setdefault("apiVersion", resource.api_version)
        obj.setdefault("kind", resource.kind)
        if resource.has_status_subresource:
            obj.pop("status", None)  # a real API server ignores status on create
        return self._commit(resource, obj, "ADDED")

    async def replace(self, resource: Resource, body: Mapping[str, Any]) -> dict[str, Any]:
        current = self._stored(resource, body)
        obj = copy.deepcopy(dict(body))
        m = obj["metadata"]
        for field in ("uid", "creationTimestamp", "generation", "deletionTimestamp", "namespace"):
            if field in current["metadata"]:
                m[field] = current["metadata"][field]
        if resource.has_status_subresource:
            obj["status"] = copy.deepcopy(current.get("status"))
            if obj.get("status") is None:
                obj.pop("status")
        if obj.get("spec") != current.get("spec"):
            m["generation"] = current["metadata"].get("generation", 1) + 1
        if m.get("deletionTimestamp") and not m.get("finalizers"):
            return self._remove(resource, obj)
        return self._commit(resource, obj, "MODIFIED")

    async def replace_status(self, resource: Resource, body: Mapping[str, Any]) -> dict[str, Any]:
        if not resource.has_status_subresource:
            raise ApiError(404, "NotFound", "no status subresource")
        current = copy.deepcopy(self._stored(resource, body))
        current["status"] = copy.deepcopy(body.get("status"))
        return self._commit(resource, current, "MODIFIED")

    async def delete(self, resource: Resource, namespace: str | None, name: str) -> bool:
        return self._delete_now(resource, namespace, name)

    def _delete_now(self, resource: Resource, namespace: str | None, name: str) -> bool:
        obj = self.objects.get(self._key(resource, namespace, name))
        if obj is None:
            return False
        if obj["metadata"].get("finalizers"):
            if not obj["metadata"].get("deletionTimestamp"):
                obj = copy.deepcopy(obj)
                obj["metadata"]["deletionTimestamp"] = _now_rfc3339()
                self._commit(resource, obj, "MODIFIED")
            return True
        self._remove(resource, obj)
        return True

    def _remove(self, resource: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        m = obj["metadata"]
        self.objects.pop(self._key(resource, m.get("namespace"), m["name"]), None)
        obj = copy.deepcopy(obj)
        m = obj["metadata"]
        m["resourceVersion"] = str(next(self._versions))
        self._publish(resource, "DELETED", obj)
        self._cascade(m.get("uid", ""))
        return obj

    def _cascade(self, owner_uid: str) -> None:
        """Garbage collection: delete what the removed object owned (background propagation)."""
        for (plural, ns, name), child in list(self.objects.items()):
            refs = child["metadata"].get("ownerReferences") or []
            if any(ref.get("uid") == owner_uid for ref in refs):
                resource = self._kinds.get(plural) or Resource(
                    child.get("kind", ""), child.get("apiVersion", "v1"), plural
                )
                self._delete_now(resource, ns, name)

    def register(self, *resources: Resource) -> None:
        """Teach the store resource types so cascade deletion publishes events with the right type."""
        for resource in resources:
            self._kinds[resource.plural] = resource

    async def watch(self, resource: Resource) -> AsyncIterator[WatchEvent]:
        self._kinds.setdefault(resource.plural, resource)
        queue: asyncio.Queue[WatchEvent | None] = asyncio.Queue()
        self._watchers.setdefault(resource.plural, []).append(queue)
        try:
            for obj in await self.list(resource):
                yield WatchEvent("ADDED", obj)
            while (event := await queue.get()) is not None:
                yield event
        finally:
            self._watchers[resource.plural].remove(queue)

    def close_watches(self) -> None:
        for queues in self._watchers.values():
            for queue in queues:
                queue.put_nowait(None)

    async def ensure_namespace(self, name: str) -> None:
        if await self.get(NAMESPACES, None, name) is None:
            await self.create(NAMESPACES, None, {"metadata": {"name": name}})
