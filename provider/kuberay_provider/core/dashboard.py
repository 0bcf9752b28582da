"""Finding the Ray dashboard (Jobs API) behind a RayJob or RayCluster.

Two ways to reach it: through the Kubernetes API server's service proxy with the API client's own
credentials (the default: no port-forward, ingress or extra secret), or a direct URL built from a
template, for deployments that expose the dashboard themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kuberay_provider.core.ray_jobs import DashboardEndpoint

DASHBOARD_PORT_NAME = "dashboard"
# Ray's token authentication (Ray >= 2.52) also reads the token from this header, meant for proxies: through
# the API server's service proxy, Authorization carries the Kubernetes credentials (and is consumed there).
# KubeRay's own dashboard client sends it the same way.
RAY_TOKEN_HEADER = "X-Ray-Authorization"


def rayjob_head_service(rayjob_name: str) -> str:
    """KubeRay gives a RayJob that made its own cluster a stable ``<rayjob>-head-svc``, across retries."""
    return f"{rayjob_name}-head-svc"


def raycluster_head_service(cluster: Mapping[str, Any]) -> str:
    """The head service KubeRay made for a RayCluster: status.head.serviceName, the override in
    headGroupSpec.headService, or ``<cluster>-head-svc``."""
    status_name = ((cluster.get("status") or {}).get("head") or {}).get("serviceName")
    if status_name:
        return str(status_name)
    override = (((cluster.get("spec") or {}).get("headGroupSpec") or {}).get("headService") or {}).get("metadata", {})
    if override.get("name"):
        return str(override["name"])
    return f"{cluster['metadata']['name']}-head-svc"


@dataclass(frozen=True)
class DashboardAccess:
    """How the provider reaches Ray dashboards.

    ``url_template`` None means the API server's service proxy. Otherwise a direct URL with
    ``{service}``, ``{namespace}`` and ``{cluster}`` placeholders, e.g.
    ``http://{service}.{namespace}.svc.cluster.local:8265`` from inside the cluster.
    ``token``: the cluster's Ray authentication token, when Ray's token authentication is on; sent with
    every dashboard request, direct or through the proxy. ``headers`` and ``token`` never show in ``repr``.
    """

    url_template: str | None = None
    headers: Mapping[str, str] | None = field(default=None, repr=False)
    verify: bool | str = True
    token: str | None = field(default=None, repr=False)

    @property
    def uses_service_proxy(self) -> bool:
        return not self.url_template

    def auth_headers(self) -> dict[str, str]:
        """The dashboard's own headers (not the API server's credentials): ``headers`` and Ray's token."""
        token = {RAY_TOKEN_HEADER: f"Bearer {self.token}"} if self.token else {}
        return {**(self.headers or {}), **token}

    def direct_endpoint(self, *, namespace: str, service: str, cluster: str = "") -> DashboardEndpoint:
        assert self.url_template, "direct_endpoint needs a url_template"
        url = self.url_template.format(namespace=namespace, service=service, cluster=cluster)
        return DashboardEndpoint.direct(url, headers=self.auth_headers(), verify=self.verify)
