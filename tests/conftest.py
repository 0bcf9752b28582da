"""Shared fixtures. KubeRay's CRDs and samples are read from ../shared/kuberay, never copied here."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from tests.support.cluster_under_test import (
    external_mode,
    imports_local_plane,
    install_local_plane_import_guard,
    needs_local_plane_reason,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_KUBERAY = Path(os.environ.get("KUBERAY_SHARED_DIR", PROJECT_ROOT.parent / "shared" / "kuberay"))
CRDS_DIR = SHARED_KUBERAY / "crds"
SAMPLES_DIR = SHARED_KUBERAY / "samples"


@pytest.fixture(scope="session")
def crds_dir() -> Path:
    if not CRDS_DIR.is_dir():
        pytest.fail(f"KubeRay CRDs not found at {CRDS_DIR} (set KUBERAY_SHARED_DIR)")
    return CRDS_DIR


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    if not SAMPLES_DIR.is_dir():
        pytest.fail(f"KubeRay samples not found at {SAMPLES_DIR} (set KUBERAY_SHARED_DIR)")
    return SAMPLES_DIR


@pytest.fixture(scope="session")
def ray_backend():
    """The session's one real local Ray head (``ray start`` costs 10-25 s here); every test that needs
    Ray shares it, the local control plane included."""
    if external_mode():
        pytest.skip(needs_local_plane_reason("the local Ray head (its dashboard and its jobs, read directly)"))
    from kuberay_provider.local.ray_backend import LocalRayBackend

    backend = LocalRayBackend(num_cpus=4)
    asyncio.run(backend.start())
    yield backend
    asyncio.run(backend.close())


@pytest.fixture(scope="session")
def ray_dashboard_url(ray_backend) -> str:
    return ray_backend.dashboard_url


def pytest_configure(config: pytest.Config) -> None:
    """The controller of an xdist run gives its workers a folder for their summary lines. In external-cluster
    mode, importing the local plane is refused from here on (tests/support/cluster_under_test.py)."""
    from tests.support import summary

    if external_mode():
        install_local_plane_import_guard()

    if "PYTEST_XDIST_WORKER" not in os.environ and summary.SUMMARY_DIR_VARIABLE not in os.environ:
        import tempfile

        os.environ[summary.SUMMARY_DIR_VARIABLE] = tempfile.mkdtemp(prefix="kuberay-test-summary-")


# The longest files (minutes each), started first so that two workers end together rather than one
# finishing them alone after the other ran out of work (pytest-xdist hands out files in collection order).
LONGEST_FIRST = (
    "tests/integration/test_crash_safety.py",
    "tests/e2e/test_example_dags.py",
    "tests/e2e/test_airflow_mapping.py",
    "tests/e2e/test_airflow_reruns.py",
    "tests/e2e/test_prefect_worker.py",
    "tests/e2e/test_taskflow.py",
)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """In external-cluster mode a test module that imports the local plane at its top is not collected (it
    could not be: the import guard refuses it); its tests need the plane by construction."""
    is_test_module = collection_path.suffix == ".py" and collection_path.name.startswith("test_")
    if external_mode() and is_test_module and imports_local_plane(collection_path, PROJECT_ROOT):
        if "e2e" in collection_path.parts:
            NOT_COLLECTED_IN_EXTERNAL_MODE.append(str(collection_path.relative_to(PROJECT_ROOT)))
        return True
    return None


NOT_COLLECTED_IN_EXTERNAL_MODE: list[str] = []  # end-to-end modules, listed at the end with the reason


# Fixtures only the local control plane can give; a test that needs one cannot run on an external cluster.
LOCAL_ONLY_FIXTURES = frozenset({"local_plane", "ray_backend", "ray_dashboard_url"})


def runs_on_an_external_cluster(item: pytest.Item) -> bool:
    """An end-to-end test that needs no local-only fixture and is not marked ``local_only``."""
    in_e2e = item.nodeid.startswith("tests/e2e/")
    fixtures = set(getattr(item, "fixturenames", ()))
    return in_e2e and not fixtures & LOCAL_ONLY_FIXTURES and item.get_closest_marker("local_only") is None


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects: the ``external`` marker is given here
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if runs_on_an_external_cluster(item):
            item.add_marker(pytest.mark.external)
        elif external_mode() and (marker := item.get_closest_marker("local_only")) is not None:
            item.add_marker(pytest.mark.skip(reason=needs_local_plane_reason(marker.args[0])))

    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within a file, and of all other files, is kept


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The counts long runs recorded (tests/support/summary.py): faults, crashes, RBAC use."""
    from tests.support import summary

    summary.write(terminalreporter)
    if NOT_COLLECTED_IN_EXTERNAL_MODE:
        terminalreporter.write_sep("=", "not collected on the external cluster")
        reason = needs_local_plane_reason("the local control plane itself (the module imports kuberay_provider.local)")
        terminalreporter.write_line(f"{len(NOT_COLLECTED_IN_EXTERNAL_MODE)} modules {reason}:")
        for path in sorted(NOT_COLLECTED_IN_EXTERNAL_MODE):
            terminalreporter.write_line(f"  {path}")
