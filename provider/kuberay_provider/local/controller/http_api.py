"""HttpClusterAPI: the ClusterAPI over HTTP with a kubernetes_asyncio ApiClient, on raw JSON.

Raw JSON (``_preload_content=False``) keeps objects as the wire's camelCase dicts, so CRDs and core
objects are handled alike and nothing is lost to model round-trips.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

from kubernetes_asyncio.client import ApiClient

from .api import Resource, WatchEvent, api_error, label_selector, meta

_JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
WATCH_TIMEOUT_SECONDS = 300  # the server ends each watch; the caller re-lists and watches again


class HttpClusterAPI:
    def __init__(self, api_client: ApiClient) -> None:
        self._client = api_client

    async def _call(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, Any]] | None = None,
        body: Any = None,
        timeout: float | None = 30.0,
    ) -> dict[str, Any]:
        response = await self._client.call_api(
            path,
            method,
            query_params=query or [],
            header_params=dict(_JSON_HEADERS),
            body=body,
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=timeout,
        )
        try:
            raw = await response.read()
            status = response.status
        finally:
            response.release()
        data: dict[str, Any] = json.loads(raw) if raw else {}  # the API server answers with an object
        if not 200 <= status <= 299:
            raise api_error(status, data.get("reason", ""), data.get("message", raw.decode(errors="replace")))
        return data

    async def get(self, resource: Resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            return await self._call("GET", resource.object_path(namespace, name))
        except Exception as exc:
            if getattr(exc, "status", None) == 404:
                return None
            raise

    async def _list_raw(
        self, resource: Resource, namespace: str | None, labels: Mapping[str, str] | None
    ) -> dict[str, Any]:
        query = [("labelSelector", label_selector(labels))] if labels else []
        return await self._call("GET", resource.collection_path(namespace), query=query)

    async def list(
        self, resource: Resource, namespace: str | None = None, labels: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]]:
        data = await self._list_raw(resource, namespace, labels)
        return [_with_type(resource, item) for item in data.get("items") or []]

    async def create(self, resource: Resource, namespace: str | None, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self._call("POST", resource.collection_path(namespace), body=dict(body))

    async def replace(self, resource: Resource, body: Mapping[str, Any]) -> dict[str, Any]:
        m = meta(body)
        return await self._call("PUT", resource.object_path(m.get("namespace"), m["name"]), body=dict(body))

    async def replace_status(self, resource: Resource, body: Mapping[str, Any]) -> dict[str, Any]:
        m = meta(body)
        return await self._call("PUT", resource.object_path(m.get("namespace"), m["name"]) + "/status", body=dict(body))

    async def delete(self, resource: Resource, namespace: str | None, name: str) -> bool:
        options = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        try:
            await self._call("DELETE", resource.object_path(namespace, name), body=options)
        except Exception as exc:
            if getattr(exc, "status", None) == 404:
                return False
            raise
        return True

    async def watch(self, resource: Resource) -> AsyncIterator[WatchEvent]:
        listed = await self._list_raw(resource, None, None)
        for item in listed.get("items") or []:
            yield WatchEvent("ADDED", _with_type(resource, item))
        query = [
            ("watch", "true"),
            ("resourceVersion", (listed.get("metadata") or {}).get("resourceVersion", "")),
            ("timeoutSeconds", WATCH_TIMEOUT_SECONDS),
            ("allowWatchBookmarks", "false"),
        ]
        response = await self._client.call_api(
            resource.collection_path(None),
            "GET",
            query_params=query,
            header_params=dict(_JSON_HEADERS),
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=WATCH_TIMEOUT_SECONDS + 30,
        )
        try:
            if response.status != 200:
                raw = await response.read()
                raise api_error(response.status, "", raw.decode(errors="replace"))
            while line := await response.content.readline():
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":  # e.g. 410 Gone: the caller re-lists
                    return
                if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                    yield WatchEvent(event["type"], _with_type(resource, event["object"]))
        finally:
            response.release()


def _with_type(resource: Resource, item: dict[str, Any]) -> dict[str, Any]:
    """List items may omit apiVersion/kind; the controller relies on them (ownerReferences, events)."""
    item.setdefault("apiVersion", resource.api_version)
    item.setdefault("kind", resource.kind)
    return item
