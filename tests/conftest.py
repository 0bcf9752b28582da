"""Shared fixtures. KubeRay's CRDs and samples are read from ../shared/kuberay, never copied here."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

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
    from kuberay_provider.local.ray_backend import LocalRayBackend

    backend = LocalRayBackend(num_cpus=4)
    asyncio.run(backend.start())
    yield backend
    asyncio.run(backend.close())


@pytest.fixture(scope="session")
def ray_dashboard_url(ray_backend) -> str:
    return ray_backend.dashboard_url


def pytest_configure(config: pytest.Config) -> None:
    """The controller of an xdist run gives its workers a folder for their summary lines."""
    from tests.support import summary

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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within a file, and of all other files, is kept


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The counts long runs recorded (tests/support/summary.py): faults, crashes, RBAC use."""
    from tests.support import summary

    summary.write(terminalreporter)
