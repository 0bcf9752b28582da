"""Reaching a Service (the Ray dashboard / Jobs API) through the API server's service proxy.

The connection settings come from the api client's ``Configuration`` (host, bearer token including a
refresh hook, client certificate, CA bundle, verify flag), so the Ray Jobs client uses exactly the
credentials the adapter handed to the core. Secrets stay out of ``repr``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import quote

REDACTED = "<redacted>"
_SENSITIVE_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})


@dataclass(frozen=True)
class ProxyConnection:
    """What an HTTP client needs to call the proxied service.

    ``verify`` is True/False or a CA bundle path; ``cert`` is a client certificate path or a
    (certificate, key) pair of paths, or None — the conventions ``requests`` and ``httpx`` use.
    """

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    verify: bool | str = True
    cert: str | tuple[str, str] | None = None

    def __repr__(self) -> str:
        shown = {k: REDACTED if k.lower() in _SENSITIVE_HEADERS else v for k, v in self.headers.items()}
        return f"ProxyConnection(url={self.url!r}, headers={shown!r}, verify={self.verify!r}, cert={self.cert!r})"

    __str__ = __repr__


def service_proxy_path(namespace: str, service: str, port: str = "dashboard") -> str:
    ns, svc, port_name = (quote(part, safe="") for part in (namespace, service, port))
    return f"/api/v1/namespaces/{ns}/services/{svc}:{port_name}/proxy/"


def build_proxy_connection(
    configuration: Any, auth_settings: Mapping[str, Mapping[str, Any]], namespace: str, service: str, port: str
) -> ProxyConnection:
    """A ProxyConnection from an official client's Configuration and its already-evaluated
    ``auth_settings()`` (evaluating it runs the token refresh hook; async for kubernetes_asyncio)."""
    headers: dict[str, str] = {}
    for setting in auth_settings.values():
        if setting.get("in") == "header" and setting.get("value"):
            headers[str(setting["key"]).title()] = str(setting["value"])
    verify: bool | str = bool(configuration.verify_ssl)
    if verify and configuration.ssl_ca_cert:
        verify = str(configuration.ssl_ca_cert)
    cert: str | tuple[str, str] | None = None
    if configuration.cert_file:
        cert = (configuration.cert_file, configuration.key_file) if configuration.key_file else configuration.cert_file
    url = str(configuration.host).rstrip("/") + service_proxy_path(namespace, service, port)
    return ProxyConnection(url=url, headers=headers, verify=verify, cert=cert)
