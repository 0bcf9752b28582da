"""What error text about a Ray dashboard may show: credentials stripped, and what a 401 / 403 means here."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from kuberay_provider.core.kube.api_requests import Target
from kuberay_provider.core.kube.errors import missing_permission

if TYPE_CHECKING:
    from kuberay_provider.core.kube.proxy import ProxyConnection

SECRET_HEADERS = {
    "authorization",
    "cookie",
    "x-api-key",
    "proxy-authorization",
    "x-ray-authorization",
}  # stripped from error text
BEARER = re.compile(r"(?i)\b(bearer\s+)[^\s\"',;]+")  # any request's token in error text: the API server's changes
# Ray words an HTTP refusal "Request failed with status code 403: ..." (requests: "403 Client Error: ...").
REFUSAL = re.compile(r"status code (401|403)\b|\b(401|403) Client Error")
PROXY_NAMESPACE = re.compile(r"/api/v1/namespaces/([^/]+)/services/[^/]+/proxy")


def refusal_hint(text: str, endpoint: ProxyConnection, method: str) -> str:
    """What a 401/403 means here. Through the service proxy the API server refuses, so name the RBAC rule."""
    found = REFUSAL.search(text)
    if found is None:
        return ""
    code = found.group(1) or found.group(2)
    proxied = PROXY_NAMESPACE.search(endpoint.url)
    if code == "401":
        who = "the Kubernetes API server" if proxied else "the Ray dashboard"
        return f" ({who} rejected the credentials: the token is missing, invalid or expired)"
    if proxied is None:
        return " (the Ray dashboard refused these credentials; check the headers of the dashboard connection)"
    namespace = proxied.group(1)
    rule = missing_permission(Target("get" if method == "GET" else "create", "services/proxy", namespace))
    return (
        f" (the API server refused the service proxy in namespace '{namespace}': {rule}; the Ray Jobs API "
        f"through it needs get for status and logs and create to submit and stop)"
    )


def strip_secrets(text: str, endpoint: ProxyConnection) -> str:
    for key, value in endpoint.headers.items():
        if key.lower() in SECRET_HEADERS and value:
            text = text.replace(value, "<redacted>")
            # A bearer header's token alone may also appear.
            text = text.replace(value.split(" ", 1)[-1], "<redacted>")
    return BEARER.sub(r"\1<redacted>", text)
