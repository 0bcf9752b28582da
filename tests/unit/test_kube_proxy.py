"""ProxyConnection: URL, bearer token (read per request, through the refresh hook), TLS settings from the
api client's Configuration; secrets never in repr; and the connection actually works against the service proxy."""

from __future__ import annotations

import json
from typing import Any

import kubernetes.client
import kubernetes_asyncio.client
import urllib3

from kuberay_provider.core.kube.async_client import AsyncRayObjectsClient
from kuberay_provider.core.kube.proxy import ProxyConnection, service_proxy_path
from kuberay_provider.core.kube.sync_client import RayObjectsClient
from tests.support.fake_apiserver import FakeApiServer
from tests.support.kube_fixtures import *  # noqa: F403 - fixtures


async def test_proxy_connection_reaches_the_service_with_the_clients_credentials(
    kube: Any, apiserver: FakeApiServer
) -> None:
    connection = await kube.proxy_connection("team", "job-a-head-svc")

    assert connection.url == f"{apiserver.url}/api/v1/namespaces/team/services/job-a-head-svc:dashboard/proxy/"
    assert connection.request_headers() == {"Authorization": f"Bearer {apiserver.token}"}
    assert connection.verify is True and connection.cert is None
    response = urllib3.PoolManager().request("GET", connection.url + "api/jobs/", headers=connection.request_headers())
    assert response.status == 200
    echoed = json.loads(response.data)
    assert echoed == {"namespace": "team", "service": "job-a-head-svc:dashboard", "path": "api/jobs/"}


async def test_repr_and_str_hide_the_token(kube: Any, apiserver: FakeApiServer) -> None:
    connection = await kube.proxy_connection("team", "svc", port="8265")

    assert connection.url.endswith("/services/svc:8265/proxy/")
    for text in (repr(connection), str(connection), f"{connection}", repr([connection])):
        assert apiserver.token not in text
        assert "<redacted>" in text


def test_sync_configuration_refresh_hook_and_tls_settings() -> None:
    configuration = kubernetes.client.Configuration()
    configuration.host = "https://k8s.example:6443/"
    configuration.api_key = {"BearerToken": "old"}
    configuration.api_key_prefix = {"BearerToken": "Bearer"}
    configuration.refresh_api_key_hook = lambda c: c.api_key.update(BearerToken="fresh")
    configuration.ssl_ca_cert = "/etc/ca.pem"
    configuration.cert_file, configuration.key_file = "/etc/client.crt", "/etc/client.key"

    connection = RayObjectsClient(kubernetes.client.ApiClient(configuration)).proxy_connection("ns", "svc")

    assert connection.url == "https://k8s.example:6443/api/v1/namespaces/ns/services/svc:dashboard/proxy/"
    assert connection.request_headers() == {"Authorization": "Bearer fresh"}
    configuration.refresh_api_key_hook = lambda c: c.api_key.update(BearerToken="fresher")
    assert connection.request_headers() == {"Authorization": "Bearer fresher"}  # asked anew, never copied
    assert connection.verify == "/etc/ca.pem"
    assert connection.cert == ("/etc/client.crt", "/etc/client.key")


async def test_async_configuration_with_an_async_refresh_hook_and_no_verification() -> None:
    configuration = kubernetes_asyncio.client.Configuration()
    configuration.host = "https://k8s.example:6443"
    configuration.api_key = {"BearerToken": "old"}
    configuration.api_key_prefix = {"BearerToken": "Bearer"}

    async def refresh(c: Any) -> None:
        c.api_key["BearerToken"] = "fresh-async"

    configuration.refresh_api_key_hook = refresh
    configuration.verify_ssl = False
    async with kubernetes_asyncio.client.ApiClient(configuration) as api:
        # Set after the ApiClient exists: it loads certificate files eagerly, and these do not exist.
        configuration.cert_file = "/etc/client.pem"  # certificate and key in one file
        connection = await AsyncRayObjectsClient(api).proxy_connection("ns", "svc")

    assert connection.request_headers() == {"Authorization": "Bearer fresh-async"}
    configuration.api_key["BearerToken"] = "reloaded"  # e.g. after a 401: the async client reloads credentials
    assert connection.request_headers() == {"Authorization": "Bearer reloaded"}
    assert connection.verify is False
    assert connection.cert == "/etc/client.pem"


def test_no_token_means_no_authorization_header() -> None:
    configuration = kubernetes.client.Configuration()
    configuration.host = "http://localhost:8001"  # e.g. kubectl proxy

    connection = RayObjectsClient(kubernetes.client.ApiClient(configuration)).proxy_connection("ns", "svc")

    assert connection == ProxyConnection(url=f"http://localhost:8001{service_proxy_path('ns', 'svc')}", headers={})
    assert connection.request_headers() == {}


def test_path_segments_are_quoted() -> None:
    assert service_proxy_path("ns", "a/b", "x y") == "/api/v1/namespaces/ns/services/a%2Fb:x%20y/proxy/"
