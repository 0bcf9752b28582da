"""The docs' snippets that talk to a cluster, run as written on the local control plane and the session's
Ray: only what a reader would change (their kubeconfig path, their dashboard URL) is replaced."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SAMPLES_DIR
from tests.support.ray_waits import ray_job_status_becomes
from tests.unit.test_docs import DOCS
from tests.unit.test_docs_snippets import page_snippets, run_snippet

pytestmark = [
    pytest.mark.ray,
    pytest.mark.local_only("the docs' snippets exactly as printed, which use the default namespace"),
]


def test_the_kubernetes_client_snippet_creates_the_rayjob_and_watches_it_end(
    local_plane: Any, kubectl: Any, kube: Any, tmp_path: Path
) -> None:
    from kuberay_provider.core.resources import RAYJOB

    if kubectl.run("get", "namespace", "ml").returncode != 0:
        kubectl.create_namespace("ml")
    shutil.copy(SAMPLES_DIR / "ray-job.resources.yaml", tmp_path / "rayjob.yaml")
    spec_snippet, client_snippet = page_snippets("core.md")[:2]
    (tmp_path / "snippet.py").write_text(spec_snippet + "\n" + client_snippet)
    env = {**os.environ, "KUBECONFIG": str(local_plane.kubeconfig_path)}
    process = subprocess.Popen(
        [sys.executable, "-u", "snippet.py"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 180
        assert process.stdout is not None
        for line in process.stdout:  # the snippet watches for an hour: stop reading once the RayJob has ended
            seen.append(line.rstrip())
            if "'jobDeploymentStatus': 'Complete'" in line or "'jobDeploymentStatus': 'Failed'" in line:
                break
            assert time.monotonic() < deadline, "\n".join(seen[-20:])
    finally:
        process.kill()
        process.wait(30)
        kube.delete(RAYJOB, "ml", "nightly-scoring")
    assert seen and seen[0].startswith("ADDED"), "\n".join(seen[-20:])
    # The entrypoint's score.py does not exist here, so the job ends Failed; that it ENDS is what is shown.
    assert "'jobDeploymentStatus': 'Failed'" in seen[-1] or "'jobDeploymentStatus': 'Complete'" in seen[-1]


def test_the_ray_jobs_snippet_submits_reads_and_stops(ray_dashboard_url: str) -> None:
    [snippet] = [body for body in page_snippets("core.md") if "RayJobsClient" in body]
    ran = run_snippet(snippet.replace("http://127.0.0.1:8265", ray_dashboard_url), {}, "docs/core.md Ray Jobs snippet")
    # stop() asks; Ray stops the job a moment later (it may also have failed first: score.py is not there).
    assert ray_job_status_becomes(ray_dashboard_url, "nightly-1", {"STOPPED", "FAILED"}, 60) in ("STOPPED", "FAILED")
    assert ran["jobs"].submit(submission_id="nightly-1", entrypoint="python score.py") is False  # as the comment says


def test_the_prefect_snippets_run_a_flow_save_the_block_and_run_the_custom_flow(
    prefect_api: None, least_privilege_kubeconfig: Path
) -> None:
    import asyncio

    from prefect.settings import PREFECT_API_URL

    from kuberay_provider.prefect import RayJob

    [register] = re.findall(r"^prefect block register .*$", (DOCS / "prefect.md").read_text(), re.M)
    command = [str(Path(sys.executable).parent / "prefect"), *register.split()[1:]]
    registered = subprocess.run(
        command,
        env={**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert (
        registered.returncode == 0
        and "Successfully registered 3 blocks" in registered.stdout
        and "Ray Service" in registered.stdout
        and "Ray Job" in registered.stdout
        and "Ray Cluster" in registered.stdout
    ), registered.stdout + registered.stderr

    run_snippet_block, custom_flow = (
        prefect_snippet("outcome = run_rayjob(job)"),
        prefect_snippet("async def score(job: RayJob)"),
    )
    ran = run_snippet(
        run_snippet_block.replace("~/.kube/config", str(least_privilege_kubeconfig)), {}, "docs/prefect.md snippet 1"
    )
    assert ran["outcome"]["job_status"] == "SUCCEEDED", ran["outcome"]
    saved = RayJob.load("nightly-scoring")
    assert saved.entrypoint == ran["job"].entrypoint
    flows = run_snippet(custom_flow, {}, "docs/prefect.md snippet 2")
    outcome = asyncio.run(flows["score"](saved))
    assert outcome["job_status"] == "SUCCEEDED", outcome


def prefect_snippet(containing: str) -> str:
    [snippet] = [body for body in page_snippets("prefect.md") if containing in body]
    return snippet


def test_the_prefect_first_run_works_as_printed_on_a_fresh_machine(
    least_privilege_kubeconfig: Path, tmp_path: Path
) -> None:
    """docs/prefect.md's first run, the file as printed, run as its text says (``python first_run.py``) by a
    new user: a fresh home whose ~/.kube/config reaches the local plane, no Prefect settings at all, so
    Prefect starts its temporary server on a new database (this 2-core machine once timed out there)."""
    home = tmp_path / "home"
    (home / ".kube").mkdir(parents=True)
    shutil.copy(least_privilege_kubeconfig, home / ".kube" / "config")
    (tmp_path / "first_run.py").write_text(prefect_snippet("outcome = run_rayjob(job)"))
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_") and key != "KUBECONFIG"}
    ran = subprocess.run(
        [sys.executable, "first_run.py"],
        cwd=tmp_path,
        env={**env, "HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    output = ran.stdout + ran.stderr
    assert ran.returncode == 0, output[-6000:]
    assert "Starting temporary server" in output and "Finished in state Completed" in output, output[-6000:]
