"""Reaching a Service (the Ray dashboard / Jobs API) through the API server's service proxy.

The connection settings come from the api client's ``Configuration`` (host, client certificate, CA
bundle, verify flag), so the Ray Jobs client uses exactly the credentials the adapter handed to the core.
The bearer token is not copied: ``credentials`` asks the Configuration for it on every request, because
an exec plugin's token (EKS, GKE: 15-60 min) expires while a job runs. Secrets stay out of ``repr``.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

REDACTED = "<redacted>"
_SENSITIVE_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-ray-authorization"})
# The headers that authenticate one request, as they are at the moment it is sent.
HeaderSource = Callable[[], Mapping[str, str]]


@dataclass(frozen=True)
class ProxyConnection:
    """What an HTTP client needs to call the proxied service.

    ``headers`` are fixed; ``credentials`` gives the API server's current auth headers and is called for
    every request (``request_headers``). ``verify`` is True/False or a CA bundle path; ``cert`` is a client
    certificate path or a (certificate, key) pair of paths, or None — the conventions ``requests`` and
    ``httpx`` use.
    """

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    verify: bool | str = True
    cert: str | tuple[str, str] | None = None
    credentials: HeaderSource | None = field(default=None, compare=False)

    def request_headers(self) -> dict[str, str]:
        """The headers of a request sent now: the fixed ones and the credentials as they are now."""
        return {**self.headers, **(self.credentials() if self.credentials is not None else {})}

    def aiohttp_ssl(self) -> ssl.SSLContext | bool:
        """The TLS settings as aiohttp takes them (False: no verification)."""
        if self.verify is False:
            return False
        context = ssl.create_default_context(cafile=self.verify if isinstance(self.verify, str) else None)
        if self.cert:
            certfile, keyfile = self.cert if isinstance(self.cert, tuple) else (self.cert, None)
            context.load_cert_chain(certfile, keyfile)
        return context

    def __repr__(self) -> str:
        shown = {k: REDACTED if k.lower() in _SENSITIVE_HEADERS else v for k, v in self.headers.items()}
        credentials = "" if self.credentials is None else f", credentials={REDACTED}"
        return (
            f"{type(self).__name__}(url={self.url!r}, headers={shown!r}{credentials}, verify={self.verify!r}, "
            f"cert={self.cert!r})"
        )

    __str__ = __repr__


def service_proxy_path(namespace: str, service: str, port: str = "dashboard") -> str:
    ns, svc, port_name = (quote(part, safe="") for part in (namespace, service, port))
    return f"/api/v1/namespaces/{ns}/services/{svc}:{port_name}/proxy/"


def bearer_headers(auth_settings: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """The header auth settings of an official client's ``Configuration.auth_settings()`` (evaluating
    which runs the token refresh hook: the sync client's way to a fresh exec-plugin token)."""
    headers: dict[str, str] = {}
    for setting in auth_settings.values():
        if setting.get("in") == "header" and setting.get("value"):
            headers[str(setting["key"]).title()] = str(setting["value"])
    return headers


def held_bearer_headers(configuration: Any) -> dict[str, str]:
    """The Authorization header of the token a Configuration holds now, without running its refresh hook:
    kubernetes_asyncio's hook is a coroutine, and the Ray Jobs client calling this is synchronous. The
    async client keeps the held token current (its hook, and reloading the credentials on a 401)."""
    key = configuration.api_key.get("BearerToken") or configuration.api_key.get("authorization")
    if not key:
        return {}
    prefix = configuration.api_key_prefix.get("BearerToken") or configuration.api_key_prefix.get("authorization")
    return {"Authorization": f"{prefix} {key}" if prefix else str(key)}


def build_proxy_connection(
    configuration: Any, namespace: str, service: str, port: str, credentials: HeaderSource
) -> ProxyConnection:
    """A ProxyConnection from an official client's Configuration; ``credentials`` reads its token."""
    verify: bool | str = bool(configuration.verify_ssl)
    if verify and configuration.ssl_ca_cert:
        verify = str(configuration.ssl_ca_cert)
    cert: str | tuple[str, str] | None = None
    if configuration.cert_file:
        cert = (configuration.cert_file, configuration.key_file) if configuration.key_file else configuration.cert_file
    url = str(configuration.host).rstrip("/") + service_proxy_path(namespace, service, port)
    return ProxyConnection(url=url, verify=verify, cert=cert, credentials=credentials)
