"""KubeRayHook: connection parsing through cncf.kubernetes' machinery, dashboard access, redaction."""

from __future__ import annotations

from tests.airflow_env import configure_airflow_env

configure_airflow_env()

import json
from pathlib import Path

import pytest
import yaml

from kuberay_provider.airflow import get_provider_info
from kuberay_provider.airflow.hooks import AsyncKubeRayHook, KubeRayHook

TOKEN = "s3cr3t-token-value-1234567890"


def kubeconfig(server: str = "https://127.0.0.1:6443", namespace: str = "team-ml") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "ctx",
        "clusters": [{"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": TOKEN}}],
        "contexts": [
            {"name": "ctx", "context": {"cluster": "c", "user": "u", "namespace": namespace}},
            {"name": "other", "context": {"cluster": "c", "user": "u"}},
        ],
    }


@pytest.fixture
def connection(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    def use(**extra: object) -> None:
        monkeypatch.setenv("AIRFLOW_CONN_KUBERAY_TEST", json.dumps({"conn_type": "kuberay", "extra": extra}))

    return use


def test_provider_info_registers_the_connection_type_and_modules():
    info = get_provider_info()
    [conn] = info["connection-types"]
    assert conn["connection-type"] == "kuberay" and conn["hook-class-name"].endswith("hooks.KubeRayHook")
    assert {
        "kube_config_path",
        "kube_config",
        "cluster_context",
        "in_cluster",
        "namespace",
        "disable_verify_ssl",
        "dashboard_url_template",
    } <= set(conn["conn-fields"])
    assert conn["conn-fields"]["kube_config"]["schema"]["format"] == "password"
    assert info["triggers"][0]["python-modules"] == ["kuberay_provider.airflow.triggers"]
    assert info["extra-links"] == ["kuberay_provider.airflow.links.RayDashboardLink"]


def test_hook_identity():
    assert (KubeRayHook.conn_type, KubeRayHook.default_conn_name, KubeRayHook.conn_name_attr) == (
        "kuberay",
        "kuberay_default",
        "kuberay_conn_id",
    )
    assert AsyncKubeRayHook.conn_type == "kuberay"


def test_kubeconfig_path_and_context_are_loaded_by_the_kubernetes_machinery(connection, tmp_path: Path):
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig()))
    connection(kube_config_path=str(path), cluster_context="other", namespace="ray-jobs")
    hook = KubeRayHook(kuberay_conn_id="kuberay_test")
    api_client = hook.get_conn()
    assert api_client.configuration.host == "https://127.0.0.1:6443"
    assert any(str(v).endswith(TOKEN) for v in api_client.configuration.api_key.values())
    assert hook.get_namespace() == "ray-jobs"
    assert hook.dashboard.uses_service_proxy


def test_the_hook_keeps_its_credentials_out_of_the_shared_default_configuration(connection, tmp_path: Path):
    from kubernetes.client import Configuration

    connection(kube_config=json.dumps(kubeconfig(server="https://10.0.0.9:6443")))
    KubeRayHook(kuberay_conn_id="kuberay_test").get_conn()
    assert Configuration.get_default_copy().host != "https://10.0.0.9:6443"


def test_direct_dashboard_url_template(connection, tmp_path: Path):
    connection(kube_config=json.dumps(kubeconfig()), dashboard_url_template="http://{service}.{namespace}.svc:8265")
    access = KubeRayHook(kuberay_conn_id="kuberay_test").dashboard
    endpoint = access.direct_endpoint(namespace="ns", service="job-head-svc")
    assert endpoint.url == "http://job-head-svc.ns.svc:8265"


def test_options_that_exclude_each_other_are_refused(connection, tmp_path: Path):
    connection(kube_config=json.dumps(kubeconfig()), in_cluster=True)
    with pytest.raises(Exception, match="mutually exclusive"):
        KubeRayHook(kuberay_conn_id="kuberay_test").get_conn()


def test_kubeconfig_content_and_token_are_redacted(connection):
    from airflow.sdk.log import redact

    content = json.dumps(kubeconfig())
    connection(kube_config=content)
    KubeRayHook(kuberay_conn_id="kuberay_test").get_conn()
    assert TOKEN not in str(redact(f"token={TOKEN}"))
    assert content not in str(redact(content))


def test_test_connection_reports_failure_without_secrets(connection):
    connection(kube_config=json.dumps(kubeconfig(server="https://127.0.0.1:1")))
    ok, message = KubeRayHook(kuberay_conn_id="kuberay_test").test_connection()
    assert ok is False and TOKEN not in message
