from __future__ import annotations

import json

import pytest
import yaml

from kuberay_provider.core.spec import raycluster, rayjob, rayservice, runtime_env_from_yaml, simple_cluster_spec


def test_rayjob_from_keywords_writes_kuberay_field_names():
    manifest = rayjob(
        "nightly",
        "ml",
        entrypoint="python score.py",
        runtime_env={"pip": ["numpy"], "env_vars": {"A": "1"}},
        entrypoint_resources={"accelerator": 1},
        shutdown_after_job_finishes=True,
        ttl_seconds_after_finished=60,
        submission_mode="HTTPMode",
        ray_cluster_spec=simple_cluster_spec(image="rayproject/ray:2.60.0", workers=2),
        labels={"team": "ml"},
    )
    spec = manifest["spec"]
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == "RayJob"
    assert manifest["metadata"] == {"name": "nightly", "namespace": "ml", "labels": {"team": "ml"}}
    assert runtime_env_from_yaml(spec["runtimeEnvYAML"]) == {"pip": ["numpy"], "env_vars": {"A": "1"}}
    assert json.loads(spec["entrypointResources"]) == {"accelerator": 1}
    assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] == 60
    assert spec["rayClusterSpec"]["workerGroupSpecs"][0]["replicas"] == 2
    assert "runtime_env" not in spec


def test_keywords_override_a_base_manifest_without_mutating_it():
    base = rayjob("a", entrypoint="python a.py", suspend=True)
    derived = rayjob("b", base=base, entrypoint="python b.py")
    assert base["spec"]["entrypoint"] == "python a.py"
    assert derived["spec"] == {"entrypoint": "python b.py", "suspend": True}
    assert derived["metadata"]["name"] == "b"


def test_unknown_keyword_names_the_known_ones():
    with pytest.raises(TypeError, match="shutdown_after_job_finish.*known: .*shutdown_after_job_finishes"):
        rayjob("a", shutdown_after_job_finish=True)


def test_runtime_env_and_yaml_together_are_refused():
    with pytest.raises(TypeError, match="not both"):
        rayjob("a", runtime_env={}, runtime_env_yaml="pip: []")


def test_none_values_are_left_out():
    assert rayjob("a", entrypoint="x", backoff_limit=None)["spec"] == {"entrypoint": "x"}


def test_raycluster_and_rayservice_builders():
    cluster = raycluster("c", ray_version="2.60.0", head_group_spec={"rayStartParams": {}, "template": {}})
    assert cluster["spec"]["rayVersion"] == "2.60.0"
    service = rayservice("s", serve_config={"applications": [{"name": "app", "import_path": "m:app"}]})
    assert yaml.safe_load(service["spec"]["serveConfigV2"])["applications"][0]["name"] == "app"


def test_simple_cluster_spec_without_workers_has_only_a_head():
    spec = simple_cluster_spec(image="img")
    assert "workerGroupSpecs" not in spec
    assert spec["headGroupSpec"]["template"]["spec"]["containers"][0]["image"] == "img"
