"""`kuberay-provider validate`, the tool users put in their own CI, run as users run it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import CRDS_DIR, SAMPLES_DIR


def _validate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kuberay_provider.cli", "validate", *args], capture_output=True, text=True, timeout=120
    )


def test_every_kuberay_sample_is_valid():
    result = _validate("--crds", str(CRDS_DIR), *map(str, sorted(SAMPLES_DIR.glob("*.yaml"))))
    assert result.returncode == 0, result.stderr
    assert "all valid" in result.stdout


def test_broken_schema_rule_and_kuberay_rule_name_file_object_and_field(tmp_path: Path):
    text = (SAMPLES_DIR / "ray-job.shutdown.yaml").read_text()
    schema_broken = tmp_path / "typo.yaml"
    schema_broken.write_text(text.replace("shutdownAfterJobFinishes: true", 'shutdownAfterJobFinishes: "yes"'))
    rule_broken = tmp_path / "rule.yaml"
    rule_broken.write_text(
        text.replace("spec:\n", "spec:\n  suspend: true\n  clusterSelector:\n    ray.io/cluster: other\n", 1)
    )
    result = _validate("--crds", str(CRDS_DIR), str(schema_broken), str(rule_broken))
    assert result.returncode == 1
    assert f"{schema_broken}: RayJob/rayjob-sample-shutdown: spec.shutdownAfterJobFinishes" in result.stderr
    assert "[schema:type]" in result.stderr
    assert f"{rule_broken}: RayJob/rayjob-sample-shutdown: spec.suspend" in result.stderr
    assert "[kuberay:cluster-selector-with-suspend]" in result.stderr
    assert "[kuberay:cluster-selector-with-cluster-spec]" in result.stderr


def test_without_crds_only_kuberay_rules_run_and_it_says_so(tmp_path: Path):
    manifest = tmp_path / "job.yaml"
    manifest.write_text("apiVersion: ray.io/v1\nkind: RayJob\nmetadata: {name: j}\nspec: {entrypoint: python x.py}\n")
    result = _validate(str(manifest))
    assert result.returncode == 1  # neither rayClusterSpec nor clusterSelector
    assert "rules only" in result.stderr and "rayClusterSpec" in result.stderr


def test_unreadable_yaml_fails_with_the_file_named(tmp_path: Path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: [RayJob\n")
    result = _validate("--crds", str(CRDS_DIR), str(broken))
    assert result.returncode == 1 and f"{broken}: not valid YAML" in result.stderr
