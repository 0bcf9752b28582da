"""End-to-end fixtures: ONE local control plane for the session, on the session's real Ray, and kubectl.

With ``KUBERAY_TEST_KUBECONFIG`` set, ``cluster`` is that external cluster instead (tests/support/
cluster_under_test.py): the fixtures below reach it only through its kubeconfig, the jobs run in a namespace
of the session's own (``jobs_namespace``, deleted at the end), and ``local_plane`` skips, naming what it is.

``local_plane`` is a started ``LocalControlPlane`` (TLS on, KubeRay's CRDs installed, controller on) whose
backend is attached to the session's Ray head: use ``.url``, ``.token``, ``.ca_path``,
``.kubeconfig_path``, ``.api_client()`` (official client) and ``.async_api_client()`` (kubernetes_asyncio).
Tests that use it need Ray: mark them ``@pytest.mark.ray``. ``kubectl`` runs kubectl against it;
``namespace`` gives a test a fresh namespace of its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.support.cluster_under_test import (
    EXTERNAL_CONTEXT_VARIABLE,
    JOBS_NAMESPACE,
    ClusterUnderTest,
    external_kubeconfig,
    needs_local_plane_reason,
    write_token_kubeconfig,
)

if TYPE_CHECKING:
    from kuberay_provider.local.plane import LocalControlPlane

KUBECTL = (
    str(Path(sys.executable).parent / "kubectl")
    if (Path(sys.executable).parent / "kubectl").exists()
    else (shutil.which("kubectl") or "kubectl")
)


@dataclass(frozen=True)
class Kubectl:
    """kubectl with a fixed environment (KUBECONFIG, and a private HOME for its discovery cache)."""

    env: dict[str, str]
    context: str | None = None

    @classmethod
    def for_kubeconfig(cls, kubeconfig: Path, home: Path, context: str | None = None) -> Kubectl:
        return cls({**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(home)}, context)

    def command(self, *args: str) -> list[str]:
        return [KUBECTL, *([f"--context={self.context}"] if self.context else []), *args]

    def run(self, *args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args), env=self.env, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )

    def ok(self, *args: str, stdin: str | None = None, timeout: float = 60) -> str:
        """Run, insist on success, return stdout."""
        result = self.run(*args, stdin=stdin, timeout=timeout)
        assert result.returncode == 0, (
            f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "-o", "json"))

    def popen(self, *args: str) -> subprocess.Popen[str]:
        """A long-running kubectl (``get -w``); its stdout is a text pipe. Terminate it when done."""
        return subprocess.Popen(
            self.command(*args), env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def wait(self, condition: str, *target: str, namespace: str, timeout: float) -> None:
        """``kubectl wait --for=<condition> <target...>``; a condition such as ``jsonpath={.status.state}=ready``
        or ``delete``, a target such as ``rayjob/x`` or ``pod -l ray.io/cluster=c``."""
        self.ok(
            "wait", "-n", namespace, f"--for={condition}", *target, f"--timeout={int(timeout)}s", timeout=timeout + 30
        )

    def create_namespace(self, name: str) -> str:
        self.ok("create", "namespace", name)
        return name


@pytest.fixture(scope="session")
def local_plane(crds_dir: Path, ray_dashboard_url: str) -> Iterator[LocalControlPlane]:
    """The session's one local control plane, its controller running workloads on the session's Ray."""
    if external_kubeconfig() is not None:
        pytest.skip(needs_local_plane_reason("the local control plane itself (LocalControlPlane)"))
    from kuberay_provider.local.plane import LocalControlPlane
    from kuberay_provider.local.ray_backend import LocalRayBackend

    backend = LocalRayBackend(dashboard_url=ray_dashboard_url)
    try:
        # Tokens as short as 1 s: test_expiring_credentials.py needs some that expire mid-wait.
        with LocalControlPlane(
            crds_dir=crds_dir, tls=True, controller=True, backend=backend, min_token_seconds=1
        ) as plane:
            yield plane
    finally:
        # Handed in, so not the plane's to close: its work files and any dedicated Ray head it started.
        asyncio.run(backend.close())


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> ClusterUnderTest:
    """The cluster under test: the external one of KUBERAY_TEST_KUBECONFIG, else the session's local plane."""
    kubeconfig = external_kubeconfig()
    if kubeconfig is not None:
        return ClusterUnderTest(kubeconfig, os.environ.get(EXTERNAL_CONTEXT_VARIABLE) or None, external=True)
    plane: LocalControlPlane = request.getfixturevalue("local_plane")
    return ClusterUnderTest(plane.kubeconfig_path)


@pytest.fixture(scope="session")
def kubectl(cluster: ClusterUnderTest, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    return Kubectl.for_kubeconfig(cluster.kubeconfig_path, tmp_path_factory.mktemp("kubectl-home"), cluster.context)


@pytest.fixture(scope="session")
def jobs_namespace(cluster: ClusterUnderTest, kubectl: Kubectl) -> Iterator[str]:
    """Where the Airflow and Prefect connections run their jobs: ``default`` on the session's own local plane,
    a namespace of this session's own on an external cluster (deleted, with all it holds, at the end)."""
    if not cluster.external:
        yield JOBS_NAMESPACE
        return
    kubectl.create_namespace(JOBS_NAMESPACE)
    yield JOBS_NAMESPACE
    kubectl.run("delete", "namespace", JOBS_NAMESPACE, "--wait=true", "--timeout=180s", timeout=240)


def unique_namespace(hint: str) -> str:
    """A DNS-1123 label from ``hint`` plus a random suffix."""
    base = re.sub(r"[^a-z0-9-]+", "-", hint.lower()).strip("-")[:40].strip("-") or "ns"
    return f"{base}-{uuid.uuid4().hex[:5]}"


@pytest.fixture
def namespace(kubectl: Kubectl, request: pytest.FixtureRequest) -> str:
    """A fresh namespace named after the test."""
    return kubectl.create_namespace(unique_namespace(request.node.name.removeprefix("test_")))


@pytest.fixture(scope="session")
def kube(cluster: ClusterUnderTest, jobs_namespace: str) -> Iterator[Any]:
    """The core's sync RayJob/RayCluster client on the cluster under test."""
    from kuberay_provider.core.kube.sync_client import RayObjectsClient

    with cluster.api_client() as api_client:
        yield RayObjectsClient(api_client)


RBAC_MANIFEST = Path(__file__).resolve().parents[2] / "docker" / "kubernetes" / "rbac.yaml"
CLUSTER_SCOPED_RBAC = "kuberay-provider-read-crds"


def rbac_manifest_for(namespace: str, *, external: bool) -> str:
    """docker/kubernetes/rbac.yaml installed as a user would, into ``namespace``. On an external cluster its
    cluster-scoped pair is named after the namespace too, so parallel sessions neither share nor delete it."""
    manifest = RBAC_MANIFEST.read_text().replace("namespace: ray-jobs", f"namespace: {namespace}")
    if external:
        manifest = manifest.replace(f"name: {CLUSTER_SCOPED_RBAC}", f"name: {CLUSTER_SCOPED_RBAC}-{namespace}")
    return manifest


@pytest.fixture(scope="session")
def least_privilege_kubeconfig(
    cluster: ClusterUnderTest,
    kubectl: Kubectl,
    jobs_namespace: str,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[Path]:
    """A kubeconfig whose token belongs to the ServiceAccount of docker/kubernetes/rbac.yaml, installed as a
    user would (its namespace set to the one the jobs run in) and obtained with ``kubectl create token``.
    The Airflow and Prefect end-to-end runs use it, and the plane enforces RBAC for it, so the suite proves
    the manifest grants enough; what it granted and what went unused is reported at the end."""

    # The plane whose authorizer the report reads, asked for now: pytest gives no fixture during teardown.
    plane: LocalControlPlane | None = None if cluster.external else request.getfixturevalue("local_plane")
    manifest = rbac_manifest_for(jobs_namespace, external=cluster.external)
    kubectl.ok("apply", "-f", "-", stdin=manifest)
    token = kubectl.ok("create", "token", "kuberay-provider", "-n", jobs_namespace, "--duration=24h").strip()
    path = write_token_kubeconfig(
        tmp_path_factory.mktemp("least-privilege") / "kubeconfig", cluster, token, jobs_namespace
    )
    yield path
    if plane is None:
        # The namespaced objects go with jobs_namespace; the cluster-scoped pair would stay.
        cluster_scoped = f"{CLUSTER_SCOPED_RBAC}-{jobs_namespace}"
        kubectl.run("delete", f"clusterrolebinding/{cluster_scoped}", f"clusterrole/{cluster_scoped}")
        return
    from tests.support.rbac_report import record_usage

    record_usage(manifest, plane.server.authorizer, f"system:serviceaccount:{jobs_namespace}:kuberay-provider")


@pytest.fixture(scope="session")
def airflow(least_privilege_kubeconfig: Path, jobs_namespace: str) -> Iterator[Path]:
    """This process's Airflow (tests/airflow_env.py) with a migrated DB and a ``kuberay_default``
    connection to the plane with the least-privilege ServiceAccount's token; yields AIRFLOW_HOME."""
    from tests.airflow_env import configure_airflow_env

    home = configure_airflow_env()
    from kuberay_provider.airflow.devenv import kuberay_connection_env, migrate_database

    kuberay_connection_env(least_privilege_kubeconfig, namespace=jobs_namespace)
    migrate_database(home)
    yield home
    os.environ.pop("AIRFLOW_CONN_KUBERAY_DEFAULT", None)


@pytest.fixture(scope="module")
def triggerer(airflow: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real ``airflow triggerer`` process for one test module's deferred waits."""
    from tests.support.airflow_runs import RealTriggerer

    process = RealTriggerer(tmp_path_factory.mktemp("triggerer"))
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    """One temporary Prefect API for the session's flows (starting one costs about 11 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
