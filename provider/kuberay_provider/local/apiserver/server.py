"""The aiohttp application and a runner that serves it on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web
from aiohttp.typedefs import Handler

from .access_review import AccessReviews
from .auth import authentication_middleware, authorization_middleware, status_errors
from .faults import FaultPlan, fault_middleware
from .handlers import ApiHandlers
from .impersonation import impersonation_middleware
from .rbac import MIN_TOKEN_SECONDS, Authorizer, Tokens
from .registry import CRD_TYPE
from .resources import Cluster, WriteOptions

log = logging.getLogger(__name__)
# Installing KubeRay's CRDs sends bodies over 1 MiB (aiohttp's default limit).
MAX_REQUEST_BYTES = 64 * 1024 * 1024
CLUSTER_KEY = web.AppKey("cluster", Cluster)
REQUEST_COUNTS_KEY = web.AppKey("request_counts", Counter)
AUTHORIZER_KEY = web.AppKey("authorizer", Authorizer)


def request_counter(counts: Counter[str]) -> Any:
    """Counts requests by User-Agent, so benchmarks can tell how much load each client puts on the API."""

    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        counts[request.headers.get("User-Agent", "")] += 1
        return await handler(request)

    return count


_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class ApiServerSettings:
    token: str
    host: str = "127.0.0.1"
    port: int = 0
    history_limit: int = 10_000
    bookmark_interval: float = 10.0
    ssl_context: ssl.SSLContext | None = None
    faults: FaultPlan | None = None  # fault injection, off unless given
    min_token_seconds: int = MIN_TOKEN_SECONDS  # the shortest TokenRequest; tests lower it


def build_app(settings: ApiServerSettings, cluster: Cluster | None = None) -> web.Application:
    cluster = cluster or Cluster(settings.history_limit)
    stopping = asyncio.Event()
    tokens, authorizer = Tokens(settings.token, settings.min_token_seconds), Authorizer(cluster)
    handlers = ApiHandlers(cluster, stopping, settings.bookmark_interval, tokens, AccessReviews(authorizer).serve)
    counts: Counter[str] = Counter()
    middlewares = [
        request_counter(counts),
        status_errors,
        authentication_middleware(tokens, cluster),
        impersonation_middleware(authorizer),
        authorization_middleware(authorizer),
    ]
    if settings.faults is not None:
        middlewares.insert(1, fault_middleware(settings.faults))
    app = web.Application(middlewares=middlewares, client_max_size=MAX_REQUEST_BYTES)
    app[CLUSTER_KEY] = cluster
    app[REQUEST_COUNTS_KEY] = counts
    app[AUTHORIZER_KEY] = authorizer
    handlers.add_routes(app)

    async def open_proxy_session(_: web.Application) -> None:
        # No auto-decompression: the proxy passes bodies through byte for byte.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        handlers.session = aiohttp.ClientSession(auto_decompress=False, timeout=timeout)

    async def stop_watches(_: web.Application) -> None:
        stopping.set()

    async def close_proxy_session(_: web.Application) -> None:
        if handlers.session is not None:
            await handlers.session.close()

    app.on_startup.append(open_proxy_session)
    app.on_shutdown.append(stop_watches)
    app.on_cleanup.append(close_proxy_session)
    return app


def load_crd_documents(directory: Path) -> list[dict[str, Any]]:
    """Every CustomResourceDefinition in the ``*.yaml`` / ``*.yml`` / ``*.json`` files of a directory."""
    documents: list[dict[str, Any]] = []
    for path in sorted(p for p in Path(directory).iterdir() if p.suffix in (".yaml", ".yml", ".json")):
        with path.open("rb") as stream:
            documents += [d for d in yaml.load_all(stream, Loader=_YAML_LOADER) if isinstance(d, dict)]
    return [d for d in documents if d.get("kind") == "CustomResourceDefinition"]


def install_crds(cluster: Cluster, crds: list[dict[str, Any]]) -> list[str]:
    """Create or replace CRDs directly in the store (what ``up --crds`` does before serving)."""
    installed = []
    for crd in crds:
        name = crd["metadata"]["name"]
        existing = cluster.store.get(CRD_TYPE.storage_key, "", name)
        if existing is None:
            cluster.create(CRD_TYPE, "", crd, WriteOptions())
        else:
            current_version = existing["metadata"]["resourceVersion"]
            replacement = {**crd, "metadata": {**crd["metadata"], "resourceVersion": current_version}}
            cluster.update(CRD_TYPE, "", name, replacement, WriteOptions())
        installed.append(name)
    return installed


class ApiServer:
    """Serves one Cluster over HTTP(S) on the current event loop."""

    def __init__(self, settings: ApiServerSettings) -> None:
        self.settings = settings
        self.cluster = Cluster(settings.history_limit)
        self.app = build_app(settings, self.cluster)
        self._runner: web.AppRunner | None = None
        self.port = settings.port

    @property
    def request_counts(self) -> Counter[str]:
        """Requests served so far, by User-Agent (including refused ones)."""
        return self.app[REQUEST_COUNTS_KEY]

    @property
    def authorizer(self) -> Authorizer:
        """RBAC decisions so far for ServiceAccount tokens (the admin token is never checked)."""
        return self.app[AUTHORIZER_KEY]

    @property
    def url(self) -> str:
        scheme = "https" if self.settings.ssl_context else "http"
        return f"{scheme}://{self.settings.host}:{self.port}"

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        # Bind first so that port 0 (any free port) is known before anyone is told the URL.
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.settings.host, self.settings.port))
        self.port = listener.getsockname()[1]
        await web.SockSite(self._runner, listener, ssl_context=self.settings.ssl_context).start()
        log.info("local API server listening on %s", self.url)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
