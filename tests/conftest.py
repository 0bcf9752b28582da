"""Shared fixtures. KubeRay's CRDs and samples are read from ../shared/kuberay, never copied here."""

from __future__ import annotations

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
def ray_head():
    """The session's one real local Ray head; every test that needs Ray shares it."""
    from tests.support.ray_head import start_ray_head

    head = start_ray_head()
    yield head
    head.stop()
