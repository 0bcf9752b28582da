"""Asyncio access to ray.io/v1 objects through an official ``kubernetes_asyncio.client.ApiClient``.

Same methods and behaviour as ``RayObjectsClient`` (sync_client.py), whose docstrings describe them;
every method here is awaitable and ``watch`` is an async iterator.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any, cast

import aiohttp
import tenacity
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.client.rest import RESTResponse

from kuberay_provider.core.kube import api_requests as req
from kuberay_provider.core.kube.api_requests import JsonPatch, KubeObject, PatchType
from kuberay_provider.core.kube.client_base import ObjectList, RayObjectsClientBase
from kuberay_provider.core.kube.errors import AlreadyExistsError
from kuberay_provider.core.kube.proxy import ProxyConnection, build_proxy_connection, held_bearer_headers
from kuberay_provider.core.kube.retry import CallGuard, HttpStack, RetryPolicy
from kuberay_provider.core.kube.watch import LineSplitter, WatchEvent, WatchQuery
from kuberay_provider.core.resources import RayKind

ASYNC_STACK = HttpStack(
    api_exception=ApiException,
    transport_errors=(aiohttp.ClientError, asyncio.TimeoutError, ConnectionError),
    connect_errors=(aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError),
    fatal_errors=(aiohttp.ClientSSLError, aiohttp.InvalidURL),
)


# Loads the credentials into the api client's Configuration again (e.g. re-runs the kubeconfig's exec plugin).
Reauthenticate = Callable[[], Awaitable[None]]


class AsyncRayObjectsClient(RayObjectsClientBase):
    """Async twin of ``RayObjectsClient``: same methods, awaitable; ``watch`` is an async iterator.

    ``reauthenticate``: called once when a request gets 401, then the request is sent again. Unlike the
    sync client, kubernetes_asyncio never refreshes an exec plugin's token (EKS, GKE: 15-60 min), so a
    long wait outlives the token it loaded; the adapter, which knows where the credentials come from,
    reloads them.
    """

    _stack = ASYNC_STACK

    def __init__(
        self, api_client: Any, retry: RetryPolicy | None = None, *, reauthenticate: Reauthenticate | None = None
    ) -> None:
        super().__init__(api_client, retry)
        self.reauthenticate = reauthenticate

    async def _call(self, request: req.KubeRequest, guard: CallGuard | None = None, *, stream: bool = False) -> Any:
        guard = guard or self._guard(request)
        try:
            return await tenacity.AsyncRetrying(**guard.retrying_options())(self._send, request, stream)
        except ASYNC_STACK.raw_errors as exc:
            return guard.fail(exc)

    async def _send(self, request: req.KubeRequest, stream: bool) -> Any:
        try:
            return await self._send_once(request, stream)
        except ApiException as exc:
            if exc.status != 401 or self.reauthenticate is None:
                raise
        await self.reauthenticate()  # once: a second 401 means the fresh credentials are refused too
        return await self._send_once(request, stream)

    async def _send_once(self, request: req.KubeRequest, stream: bool) -> Any:
        response = await self.api_client.call_api(**request.call_api_arguments(stream=stream))
        if stream and response.status >= 300:
            # Unlike the sync client, kubernetes_asyncio leaves unread error responses to the caller.
            # ApiException reads .data and .getheaders(), which a RESTResponse has; its stub says ClientResponse.
            error_response = RESTResponse(response, await response.read())
            raise ApiException(http_resp=error_response)  # type: ignore[arg-type]  # the stub's type is wrong (above)
        return response

    # kubernetes_asyncio deserialises a JSON body to a dict (response type "object"), and a request
    # that allows a missing object answers None for 404.
    async def _object(self, request: req.KubeRequest, guard: CallGuard | None = None) -> KubeObject:
        return cast(KubeObject, await self._call(request, guard))

    async def _object_or_none(self, request: req.KubeRequest) -> KubeObject | None:
        return cast("KubeObject | None", await self._call(request))

    async def create(self, manifest: KubeObject, *, dry_run: bool = False) -> KubeObject:
        creation = self._plan_create(manifest, dry_run)
        try:
            return await self._object(creation.request, creation.guard)
        except AlreadyExistsError as conflict:
            return await self._object(creation.reattach_request(conflict))

    async def get(self, kind: RayKind, namespace: str, name: str) -> KubeObject:
        return await self._object(req.get_request(kind, namespace, name))

    async def find(self, kind: RayKind, namespace: str, name: str) -> KubeObject | None:
        return await self._object_or_none(req.get_request(kind, namespace, name).allowing_missing())

    async def list_with_version(
        self, kind: RayKind, namespace: str, *, label_selector: str | None = None
    ) -> ObjectList:
        response = await self._object(req.list_request(kind, namespace, label_selector=label_selector))
        return ObjectList.from_response(response)

    async def list(self, kind: RayKind, namespace: str, *, label_selector: str | None = None) -> req.KubeObjects:
        return (await self.list_with_version(kind, namespace, label_selector=label_selector)).items

    async def patch(
        self, kind: RayKind, namespace: str, name: str, body: KubeObject | JsonPatch, *, patch_type: PatchType = "merge"
    ) -> KubeObject:
        return await self._object(req.patch_request(kind, namespace, name, body, patch_type))

    async def delete(self, kind: RayKind, namespace: str, name: str, *, propagation_policy: str = "Foreground") -> bool:
        request = req.delete_request(kind, namespace, name, propagation_policy).allowing_missing()
        return (await self._call(request)) is not None

    async def watch(
        self,
        kind: RayKind,
        namespace: str,
        *,
        name: str | None = None,
        label_selector: str | None = None,
        resource_version: str | None = None,
        timeout_seconds: float | None = None,
    ) -> AsyncIterator[WatchEvent]:
        query = WatchQuery(kind, namespace, name, label_selector, resource_version, timeout_seconds)
        session = self._watch_session(query)
        while (request := session.next_request()) is not None:
            if request.is_list:
                for event in session.on_list(await self._call(request)):
                    yield event
                continue
            try:
                async with aclosing(self._stream_lines(request)) as lines:
                    async for line in lines:
                        for event in session.on_line(line):
                            yield event
                session.on_stream_end()
            except Exception as exc:
                session.handle_stream_failure(exc)
            await asyncio.sleep(session.take_pause())

    async def _stream_lines(self, request: req.KubeRequest) -> AsyncGenerator[bytes, None]:
        response = await self._call(request, stream=True)
        try:
            splitter = LineSplitter()
            async for chunk in response.content.iter_any():
                for line in splitter.feed(chunk):
                    yield line
        finally:
            response.close()

    async def read_service(self, namespace: str, name: str) -> KubeObject | None:
        return await self._object_or_none(req.service_request(namespace, name).allowing_missing())

    async def read_crd(self, name: str) -> KubeObject:
        return await self._object(req.crd_request(name))

    async def proxy_connection(self, namespace: str, service: str, port: str = "dashboard") -> ProxyConnection:
        configuration = self.api_client.configuration
        await configuration.auth_settings()  # runs the refresh hook now; requests read the token held then
        return build_proxy_connection(
            configuration, namespace, service, port, lambda: held_bearer_headers(configuration)
        )
