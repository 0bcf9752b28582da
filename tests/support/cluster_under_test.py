"""The Kubernetes cluster the end-to-end tests run against: the session's local control plane, or, with
``KUBERAY_TEST_KUBECONFIG`` set, an external cluster with the KubeRay operator installed (kind, k3d, a cloud
cluster, or a local control plane started apart with ``kuberay-provider local up --detach``).

Everything here reaches the cluster only through its kubeconfig, as a user would, so the same fixtures
serve both; this module never imports ``kuberay_provider.local``."""

from __future__ import annotations

import base64
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.abc import MetaPathFinder
from pathlib import Path
from typing import Any

import yaml

EXTERNAL_KUBECONFIG_VARIABLE = "KUBERAY_TEST_KUBECONFIG"
EXTERNAL_CONTEXT_VARIABLE = "KUBERAY_TEST_CONTEXT"
LOCAL_PACKAGE = "kuberay_provider.local"


def external_kubeconfig() -> Path | None:
    """The external cluster's kubeconfig, when the suite runs in external-cluster mode."""
    value = os.environ.get(EXTERNAL_KUBECONFIG_VARIABLE, "").strip()
    return Path(value).expanduser() if value else None


def external_mode() -> bool:
    return external_kubeconfig() is not None


def _jobs_namespace() -> str:
    if not external_mode():
        return "default"
    import uuid

    prefix = os.environ.get("KUBERAY_TEST_NAMESPACE_PREFIX", "").strip() or "kuberay-e2e"
    return f"{prefix}-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-{uuid.uuid4().hex[:6]}"


# Where the end-to-end tests' Airflow connection and Prefect blocks run their jobs: ``default`` on the
# session's own local plane; on an external cluster a namespace of this process's own, which the
# ``jobs_namespace`` fixture creates, grants the RBAC manifest in, and deletes at the end.
JOBS_NAMESPACE = _jobs_namespace()


# The Ray image of the RayJobs, RayClusters and RayServices the tests create (the local plane runs every one on
# the session's Ray whatever it names; a real cluster pulls it). The DAGs under tests/e2e/airflow_dags read the
# same variable themselves, as they are also parsed by Airflow processes of their own.
RAY_IMAGE = os.environ.get("KUBERAY_TEST_RAY_IMAGE", "").strip() or "rayproject/ray:2.60.0"


def needs_local_plane_reason(what: str) -> str:
    """The skip reason of a test that needs the local plane's internals, in external-cluster mode."""
    return f"needs {what}, which only the local control plane offers ({EXTERNAL_KUBECONFIG_VARIABLE} is set)"


@dataclass(frozen=True)
class ClusterUnderTest:
    """A cluster reached through a kubeconfig (and optionally one of its contexts)."""

    kubeconfig_path: Path
    context: str | None = None
    external: bool = False

    def _kubeconfig(self) -> dict[str, Any]:
        return yaml.safe_load(self.kubeconfig_path.read_text()) or {}

    def _current(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The (cluster, user) entries of the chosen context."""
        config = self._kubeconfig()
        name = self.context or config.get("current-context")
        [context] = [entry["context"] for entry in config.get("contexts", []) if entry["name"] == name]
        [cluster] = [entry["cluster"] for entry in config.get("clusters", []) if entry["name"] == context["cluster"]]
        users = [entry.get("user") or {} for entry in config.get("users", []) if entry["name"] == context.get("user")]
        return cluster, (users[0] if users else {})

    @property
    def url(self) -> str:
        return str(self._current()[0]["server"])

    def ca_data(self) -> bytes | None:
        """The cluster's CA certificate (PEM), whether the kubeconfig embeds it or names a file."""
        cluster = self._current()[0]
        if "certificate-authority-data" in cluster:
            return base64.b64decode(cluster["certificate-authority-data"])
        if "certificate-authority" in cluster:
            path = Path(cluster["certificate-authority"])
            return (path if path.is_absolute() else self.kubeconfig_path.parent / path).read_bytes()
        return None

    def api_client(self) -> Any:
        """A ``kubernetes.client.ApiClient`` for this cluster (the official synchronous client)."""
        import kubernetes.config

        return kubernetes.config.new_client_from_config(config_file=str(self.kubeconfig_path), context=self.context)


def write_token_kubeconfig(path: Path, cluster: ClusterUnderTest, token: str, namespace: str) -> Path:
    """A kubeconfig for ``cluster`` that authenticates with a bearer token (a ServiceAccount's)."""
    cluster_entry: dict[str, Any] = {"server": cluster.url}
    ca = cluster.ca_data()
    if ca is not None:
        cluster_entry["certificate-authority-data"] = base64.b64encode(ca).decode()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "under-test", "cluster": cluster_entry}],
        "users": [{"name": "token", "user": {"token": token}}],
        "contexts": [
            {"name": "under-test", "context": {"cluster": "under-test", "user": "token", "namespace": namespace}}
        ],
        "current-context": "under-test",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


class LocalPlaneImportRefused(ImportError):
    pass


class LocalPlaneImportGuard(MetaPathFinder):
    """Installed in external-cluster mode: importing ``kuberay_provider.local`` fails, so a test that passes
    there used only what a real cluster offers (the public Kubernetes API and KubeRay)."""

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: Any = None) -> None:
        if fullname == LOCAL_PACKAGE or fullname.startswith(LOCAL_PACKAGE + "."):
            raise LocalPlaneImportRefused(
                f"{fullname} may not be imported in external-cluster mode ({EXTERNAL_KUBECONFIG_VARIABLE} is set): "
                "an external-mode test must use only the public Kubernetes API; mark the test "
                "@pytest.mark.local_only('<what it needs>') if it needs the local control plane"
            )
        return None


def install_local_plane_import_guard() -> LocalPlaneImportGuard:
    guard = LocalPlaneImportGuard()
    sys.meta_path.insert(0, guard)
    return guard


def imports_local_plane(module: Path, root: Path, seen: set[Path] | None = None) -> bool:
    """Whether a test module imports ``kuberay_provider.local`` at its top level, itself or through the
    project's own test modules it imports there (read, not imported)."""
    import ast

    seen = set() if seen is None else seen
    if module in seen or not module.is_file():
        return False
    seen.add(module)
    for node in ast.parse(module.read_text()).body:
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from .conftest import ..., from . import x
                package = module.parent
                for _ in range(node.level - 1):
                    package = package.parent
                base = ".".join(package.relative_to(root).parts + ((base,) if base else ()))
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for name in names:
            if name == LOCAL_PACKAGE or name.startswith(LOCAL_PACKAGE + "."):
                return True
            if name.startswith("tests."):
                path = root.joinpath(*name.split("."))
                if imports_local_plane(path.with_suffix(".py"), root, seen) or imports_local_plane(
                    path / "__init__.py", root, seen
                ):
                    return True
    return False
