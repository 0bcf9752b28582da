"""``kuberay-provider local up --detach | status | down``, the detached plane running RayJobs on the
session's Ray (``--dashboard-url``), observed with kubectl."""

from __future__ import annotations

import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.local_cli import run_local_cli

from .conftest import Kubectl

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]

LocalCommand = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def local_home(tmp_path: Path) -> Path:
    return tmp_path / "local"


@pytest.fixture
def local(tmp_path: Path, local_home: Path) -> LocalCommand:
    """``kuberay-provider local ARGS`` with its home (state, kubeconfig, token, TLS) under tmp_path."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return run_local_cli(local_home, tmp_path, *args, timeout=150)

    return run


def dashboard_answers(url: str) -> bool:
    with urllib.request.urlopen(f"{url}/api/version", timeout=5) as response:
        return response.status == 200


def test_detached_plane_runs_a_rayjob_on_the_given_ray(
    local: LocalCommand, local_home: Path, tmp_path: Path, crds_dir: Path, samples_dir: Path, ray_dashboard_url: str
) -> None:
    started = local("up", "--detach", "--port", "0", "--crds", str(crds_dir), "--dashboard-url", ray_dashboard_url)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert f"export KUBECONFIG={local_home / 'kubeconfig'}" in started.stdout
        status = local("status")
        assert status.returncode == 0 and "ready at https://127.0.0.1:" in status.stdout
        assert local("up", "--detach").returncode != 0  # one plane at a time

        kubectl = Kubectl.for_kubeconfig(local_home / "kubeconfig", tmp_path)
        assert "No resources found" in kubectl.run("get", "rayjobs").stderr
        kubectl.ok("apply", "-f", str(samples_dir / "ray-job.deletion-rules.yaml"))
        kubectl.wait(
            "jsonpath={.status.jobDeploymentStatus}=Complete",
            "rayjob/rayjob-deletion-rules",
            namespace="default",
            timeout=120,
        )
        listed = kubectl.ok("get", "rayjobs")
        assert "rayjob-deletion-rules" in listed and "SUCCEEDED" in listed
    finally:
        stopped = local("down")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert local("status").returncode != 0
    assert dashboard_answers(ray_dashboard_url)  # the Ray it was given is not the plane's to stop
