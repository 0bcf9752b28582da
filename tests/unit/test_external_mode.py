"""External-cluster mode (KUBERAY_TEST_KUBECONFIG): the local plane cannot be imported, modules that import
it are not collected, and only end-to-end tests that need no local-only fixture are marked ``external``."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from tests.support.cluster_under_test import (
    EXTERNAL_KUBECONFIG_VARIABLE,
    ClusterUnderTest,
    imports_local_plane,
    write_token_kubeconfig,
)

ROOT = Path(__file__).resolve().parents[2]


def run_in_external_mode(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter after the suite's own pytest_configure, as in external-cluster mode."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    prelude = "import tests.conftest as suite\nsuite.pytest_configure(None)\n"
    env = {**os.environ, EXTERNAL_KUBECONFIG_VARIABLE: str(kubeconfig)}
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_importing_the_local_plane_is_refused_in_external_mode(tmp_path: Path) -> None:
    result = run_in_external_mode("import kuberay_provider.local.plane", tmp_path)
    assert result.returncode != 0
    assert "LocalPlaneImportRefused" in result.stderr
    assert "may not be imported in external-cluster mode" in result.stderr and "local_only" in result.stderr


def test_the_adapters_still_import_in_external_mode(tmp_path: Path) -> None:
    """The guard refuses the local plane only: what a user installs imports as before."""
    code = "import kuberay_provider.airflow.operators, kuberay_provider.prefect.blocks, kuberay_provider.core.spec"
    result = run_in_external_mode(code, tmp_path)
    assert result.returncode == 0, result.stderr


def test_without_the_variable_the_local_plane_imports(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != EXTERNAL_KUBECONFIG_VARIABLE}
    code = "import tests.conftest as suite\nsuite.pytest_configure(None)\nimport kuberay_provider.local.plane"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("module", "imports_it"),
    [
        ("tests/e2e/test_faults.py", True),  # directly
        ("tests/e2e/test_expiring_credentials.py", True),  # through tests/support/expiring_tokens.py
        ("tests/e2e/test_airflow_rayjob.py", False),
        ("tests/e2e/test_prefect_rayjob.py", False),
        ("tests/e2e/conftest.py", False),  # its local imports are inside the local-only fixtures
    ],
)
def test_modules_that_import_the_local_plane_are_found_without_importing_them(module: str, imports_it: bool) -> None:
    assert imports_local_plane(ROOT / module, ROOT) is imports_it


def test_a_relative_import_of_a_module_that_imports_the_plane_counts(tmp_path: Path) -> None:
    package = tmp_path / "tests" / "e2e"
    package.mkdir(parents=True)
    (package / "helpers.py").write_text("from kuberay_provider.local.plane import LocalControlPlane\n")
    (package / "test_x.py").write_text("from .helpers import LocalControlPlane\n")
    (package / "test_y.py").write_text("import kuberay_provider.core\n")
    assert imports_local_plane(package / "test_x.py", tmp_path)
    assert not imports_local_plane(package / "test_y.py", tmp_path)


def test_a_token_kubeconfig_keeps_the_server_and_ca_of_the_cluster(tmp_path: Path) -> None:
    admin = tmp_path / "admin"
    (tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    admin.write_text(
        yaml.safe_dump(
            {
                "clusters": [
                    {"name": "c", "cluster": {"server": "https://10.0.0.1:6443", "certificate-authority": "ca.crt"}}
                ],
                "users": [{"name": "u", "user": {"exec": {"command": "aws"}}}],
                "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "ctx",
            }
        )
    )
    written = write_token_kubeconfig(tmp_path / "sa", ClusterUnderTest(admin), "sa-token", "jobs-ns")
    config = yaml.safe_load(written.read_text())
    assert config["clusters"][0]["cluster"]["server"] == "https://10.0.0.1:6443"
    assert "AAAA" in base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
    assert config["users"][0]["user"] == {"token": "sa-token"}
    assert config["contexts"][0]["context"]["namespace"] == "jobs-ns"
    assert written.stat().st_mode & 0o777 == 0o600


def test_only_end_to_end_tests_without_local_only_fixtures_are_marked_external() -> None:
    from tests.conftest import runs_on_an_external_cluster as marks_external

    class Item:
        def __init__(self, nodeid: str, fixtures: tuple[str, ...], local_only: bool = False) -> None:
            self.nodeid, self.fixturenames, self.local_only = nodeid, fixtures, local_only

        def get_closest_marker(self, name: str) -> object | None:
            return object() if name == "local_only" and self.local_only else None

    def runs_on_an_external_cluster(item: Item) -> bool:
        return marks_external(cast(Any, item))

    assert runs_on_an_external_cluster(Item("tests/e2e/test_a.py::t", ("airflow", "kube")))
    assert not runs_on_an_external_cluster(Item("tests/e2e/test_a.py::t", ("kube", "local_plane")))
    assert not runs_on_an_external_cluster(Item("tests/e2e/test_a.py::t", ("ray_dashboard_url",)))
    assert not runs_on_an_external_cluster(Item("tests/e2e/test_a.py::t", ("kube",), local_only=True))
    assert not runs_on_an_external_cluster(Item("tests/unit/test_a.py::t", ("kube",)))
