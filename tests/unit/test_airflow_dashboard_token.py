"""The ``kuberay`` connection's ``dashboard_token`` (Ray's token authentication): a password field in the
connection form, handed to the dashboard access, registered with the secrets masker, never in a repr."""

from __future__ import annotations

from tests.airflow_env import configure_airflow_env

configure_airflow_env()

import json

from kuberay_provider.airflow import get_provider_info
from kuberay_provider.airflow.hooks import KubeRayHook
from tests.unit.test_airflow_hook import connection, kubeconfig  # noqa: F401 - the connection fixture

RAY_TOKEN = "ray-dashboard-s3cret-0123456789"


def test_the_connection_form_has_a_password_field_for_the_dashboard_token() -> None:
    [conn] = get_provider_info()["connection-types"]
    assert conn["conn-fields"]["dashboard_token"]["schema"]["format"] == "password"


def test_the_dashboard_token_reaches_the_dashboard_access_and_is_masked(connection) -> None:  # noqa: F811 - the imported fixture, by name
    from airflow.sdk.log import redact

    connection(kube_config=json.dumps(kubeconfig()), dashboard_token=f"  {RAY_TOKEN}\n")
    access = KubeRayHook(kuberay_conn_id="kuberay_test").dashboard
    assert access.token == RAY_TOKEN and access.uses_service_proxy
    assert access.auth_headers() == {"X-Ray-Authorization": f"Bearer {RAY_TOKEN}"}
    assert RAY_TOKEN not in repr(access)
    assert RAY_TOKEN not in str(redact(f"sent X-Ray-Authorization: Bearer {RAY_TOKEN}"))


def test_without_a_dashboard_token_no_dashboard_header_is_sent(connection) -> None:  # noqa: F811 - the imported fixture
    connection(kube_config=json.dumps(kubeconfig()))
    access = KubeRayHook(kuberay_conn_id="kuberay_test").dashboard
    assert access.token is None and access.auth_headers() == {}
