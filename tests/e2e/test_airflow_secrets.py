"""Secrets never reach a log, an exception or XCom, and TLS is verified, end to end: a ``kuberay``
connection with the kubeconfig pasted in (token and CA inside) runs DAGs on the local control plane, and
the plane's bearer token is then searched for everywhere the runs wrote."""

from __future__ import annotations

from tests.airflow_env import configure_airflow_env

configure_airflow_env()

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.airflow_runs import load_dag, task_instance

pytestmark = pytest.mark.ray

INLINE_CONN = "AIRFLOW_CONN_KUBERAY_INLINE"


def inline_connection(kubeconfig: dict[str, Any]) -> str:
    return json.dumps(
        {"conn_type": "kuberay", "extra": {"kube_config": yaml.safe_dump(kubeconfig), "namespace": "default"}}
    )


@pytest.fixture
def kubeconfig(airflow: Path, local_plane: Any) -> Iterator[dict[str, Any]]:
    """The plane's kubeconfig (server, CA data, bearer token); the test sets it as the connection."""
    yield yaml.safe_load(Path(local_plane.kubeconfig_path).read_text())
    os.environ.pop(INLINE_CONN, None)


def test_the_token_and_the_kubeconfig_never_reach_task_logs_exceptions_or_xcom(
    kubeconfig: dict[str, Any], local_plane: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    os.environ[INLINE_CONN] = inline_connection(kubeconfig)
    run = load_dag("kuberay_e2e_secrets").test()
    out = capfd.readouterr()
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states == {"succeeds": "success", "fails": "failed", "deferred": "success"}, out.out[-3000:]
    assert "[ray] E2E-SECRETS-OK" in out.out and "E2E-SECRETS-FAILING" in out.out  # the runs did talk to the plane

    token = local_plane.token
    ca_data = kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"]
    for secret in (token, ca_data):
        assert secret not in out.out and secret not in out.err  # task logs, the failure's exception, tracebacks
    xcoms = [
        task_instance(run, task).xcom_pull(task_ids=task, key=key)
        for task in ("succeeds", "deferred")
        for key in ("return_value", "rayjob", "ray_dashboard_url")
    ]
    assert all(xcoms) and token not in json.dumps(xcoms)
    from airflow.sdk.log import redact

    # And what a future log line might leak is masked: the hook registered the token with Airflow's masker.
    assert token not in str(redact(f"Authorization: Bearer {token}"))


def test_tls_is_verified_refused_without_the_ca_and_accepted_with_it(
    kubeconfig: dict[str, Any], local_plane: Any
) -> None:
    from kuberay_provider.airflow.hooks import KubeRayHook

    os.environ[INLINE_CONN] = inline_connection(kubeconfig)
    ok, message = KubeRayHook(kuberay_conn_id="kuberay_inline").test_connection()
    assert ok, message

    without_ca = json.loads(json.dumps(kubeconfig))
    del without_ca["clusters"][0]["cluster"]["certificate-authority-data"]  # the plane's CA is self-made
    os.environ[INLINE_CONN] = inline_connection(without_ca)
    ok, message = KubeRayHook(kuberay_conn_id="kuberay_inline").test_connection()
    assert not ok and "CERTIFICATE_VERIFY_FAILED" in message, message
    assert local_plane.token not in message
