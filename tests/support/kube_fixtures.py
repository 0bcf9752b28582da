"""Fixtures for the kube client tests: one fake API server per session, and the sync and the async
client behind one awaitable interface so every test runs against both (``kube`` is parametrized).

Import the fixtures into a test module with ``from tests.support.kube_fixtures import *``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import aclosing
from typing import Any

import kubernetes.client
import kubernetes_asyncio.client
import pytest
import pytest_asyncio

from kuberay_provider.core.kube.async_client import AsyncRayObjectsClient
from kuberay_provider.core.kube.retry import RetryPolicy
from kuberay_provider.core.kube.sync_client import RayObjectsClient
from kuberay_provider.core.kube.watch import WatchEvent
from tests.support.fake_apiserver import FakeApiServer

__all__ = ["FAST_RETRY", "apiserver", "collect", "kube", "make_kube", "names", "rayjob", "served_apiserver"]

# Fast enough for unit tests, still exercising backoff and attempt limits.
FAST_RETRY = RetryPolicy(max_attempts=4, max_delay=10.0, initial=0.01, maximum=0.05)


def rayjob(name: str | None = "job-a", namespace: str = "default", **metadata: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"namespace": namespace, **metadata}
    if name is not None:
        meta["name"] = name
    return {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": meta, "spec": {"entrypoint": "python x.py"}}


def names(events: list[WatchEvent]) -> list[tuple[str, str]]:
    return [(event.type, event.object["metadata"]["name"]) for event in events]


async def collect(events: AsyncIterator[WatchEvent], count: int | None = None) -> list[WatchEvent]:
    """Events until ``count`` arrived (then the watch is closed) or the watch ended by itself."""
    seen: list[WatchEvent] = []
    async with aclosing(events):  # type: ignore[type-var]
        async for event in events:
            seen.append(event)
            if count is not None and len(seen) >= count:
                break
    return seen


class SyncClientAsAsync:
    """The sync client behind awaitables, so one test body covers both clients.

    It calls the sync client directly (blocking the test's loop is fine: the fake server has its own
    thread), so the sync code paths run unchanged.
    """

    def __init__(self, client: RayObjectsClient) -> None:
        self.sync = client

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.sync, name)
        if not callable(attribute):
            return attribute
        if name == "watch":
            return lambda *args, **kwargs: _as_async_iterator(attribute(*args, **kwargs))

        async def call(*args: Any, **kwargs: Any) -> Any:
            return attribute(*args, **kwargs)

        return call


async def _as_async_iterator(iterator: Iterator[WatchEvent]) -> AsyncIterator[WatchEvent]:
    try:
        for item in iterator:
            yield item
    finally:
        iterator.close()  # type: ignore[attr-defined]


def _configuration(module: Any, url: str, token: str | None) -> Any:
    configuration = module.Configuration()
    configuration.host = url
    if token is not None:
        configuration.api_key = {"BearerToken": token}
        configuration.api_key_prefix = {"BearerToken": "Bearer"}
    return configuration


@pytest.fixture(scope="session")
def served_apiserver() -> Iterator[FakeApiServer]:
    with FakeApiServer() as server:
        yield server


@pytest.fixture
def apiserver(served_apiserver: FakeApiServer) -> FakeApiServer:
    served_apiserver.reset()
    return served_apiserver


MakeKube = Callable[..., Awaitable[Any]]


@pytest_asyncio.fixture(params=["sync", "async"], loop_scope="function")
async def make_kube(request: pytest.FixtureRequest, apiserver: FakeApiServer) -> AsyncIterator[MakeKube]:
    """A factory for clients of the parametrized flavour: ``await make_kube(token=..., retry=...)``."""
    flavor: str = request.param
    async_api_clients: list[kubernetes_asyncio.client.ApiClient] = []

    async def make(*, token: str | None = apiserver.token, retry: RetryPolicy = FAST_RETRY) -> Any:
        if flavor == "sync":
            api = kubernetes.client.ApiClient(_configuration(kubernetes.client, apiserver.url, token))
            return SyncClientAsAsync(RayObjectsClient(api, retry))
        async_api = kubernetes_asyncio.client.ApiClient(_configuration(kubernetes_asyncio.client, apiserver.url, token))
        async_api_clients.append(async_api)
        return AsyncRayObjectsClient(async_api, retry)

    yield make
    for async_api in async_api_clients:
        await async_api.close()


@pytest_asyncio.fixture(loop_scope="function")
async def kube(make_kube: MakeKube) -> Any:
    """A client (sync or async, behind awaitables) with the right token and a fast retry policy."""
    return await make_kube()
