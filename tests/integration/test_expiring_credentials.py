"""The async Kubernetes client outlives its token (#18 item 5): kubernetes_asyncio keeps the token an exec
plugin gave it at load time, so the Airflow triggerer's and the Prefect block's async clients reload the
credentials on a 401 and send again. On the local control plane (no Ray), with tokens living 2 s."""

from __future__ import annotations

from tests.airflow_env import configure_airflow_env

configure_airflow_env()

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kuberay_provider.core.resources import RAYJOB
from kuberay_provider.local.plane import LocalControlPlane
from tests.conftest import CRDS_DIR
from tests.support.expiring_tokens import expiring_kubeconfig

NS = "expiring"
TOKEN_SECONDS = 2
RAYJOB_MANIFEST = {
    "apiVersion": "ray.io/v1",
    "kind": "RayJob",
    "metadata": {"name": "waited-on", "namespace": NS},
    "spec": {"entrypoint": "python -c 'print(1)'", "clusterSelector": {"ray.io/cluster": "shared"}},
}


@pytest.fixture(scope="module")
def kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    from kubernetes import client

    with LocalControlPlane(crds_dir=CRDS_DIR, controller=False, min_token_seconds=1) as plane:
        with plane.api_client() as admin:
            client.CoreV1Api(admin).create_namespace({"metadata": {"name": NS}})
            client.CustomObjectsApi(admin).create_namespaced_custom_object(
                "ray.io", "v1", NS, "rayjobs", RAYJOB_MANIFEST
            )
        yield expiring_kubeconfig(plane, NS, tmp_path_factory.mktemp("expiring"), TOKEN_SECONDS)


async def outlive_the_token(kube: Any) -> None:
    """Read, let the token expire, then read and watch again: each must succeed."""
    assert (await kube.get(RAYJOB, NS, "waited-on"))["metadata"]["name"] == "waited-on"
    await asyncio.sleep(TOKEN_SECONDS + 1)
    assert (await kube.get(RAYJOB, NS, "waited-on"))["metadata"]["name"] == "waited-on"
    await asyncio.sleep(TOKEN_SECONDS + 1)
    events = [event async for event in kube.watch(RAYJOB, NS, name="waited-on", timeout_seconds=1)]
    assert [event.type for event in events] == ["ADDED"]


def test_the_airflow_async_hook_reloads_an_expired_exec_token(
    kubeconfig: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kuberay_provider.airflow.hooks import AsyncKubeRayHook

    connection = {"conn_type": "kuberay", "extra": {"kube_config_path": str(kubeconfig)}}
    monkeypatch.setenv("AIRFLOW_CONN_KUBERAY_EXPIRING", json.dumps(connection))

    async def run() -> None:
        async with AsyncKubeRayHook(kuberay_conn_id="kuberay_expiring").objects_client() as kube:
            await outlive_the_token(kube)

    asyncio.run(run())


def test_the_prefect_block_s_async_client_reloads_an_expired_exec_token(kubeconfig: Path) -> None:
    from prefect_kubernetes.credentials import KubernetesClusterConfig, KubernetesCredentials

    from kuberay_provider.prefect.blocks import async_objects_client

    credentials = KubernetesCredentials(cluster_config=KubernetesClusterConfig.from_file(kubeconfig))

    async def run() -> None:
        async with async_objects_client(credentials) as kube:
            await outlive_the_token(kube)

    asyncio.run(run())
