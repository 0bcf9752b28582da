from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kuberay_provider.core.errors import ManifestError
from kuberay_provider.core.manifests import (
    companion_objects,
    dump_json,
    dump_yaml,
    load_documents,
    load_manifest,
    parse_documents,
    ray_objects,
)
from kuberay_provider.core.resources import RAY_KINDS
from kuberay_provider.core.spec import SPEC_FIELDS, build_manifest, spec_params
from tests.conftest import SAMPLES_DIR

SAMPLES = sorted(SAMPLES_DIR.glob("*.yaml"))


def test_every_sample_is_found():
    assert len(SAMPLES) >= 20


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_sample_round_trips_unchanged(sample: Path):
    original = [d for d in yaml.safe_load_all(sample.read_text()) if d]
    loaded = load_documents(sample)
    assert loaded == original
    for doc in ray_objects(loaded):
        assert parse_documents(dump_yaml(doc)) == [doc]
        assert parse_documents(dump_json(doc)) == [doc]


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_every_sample_spec_field_is_reachable_by_keyword(sample: Path):
    for doc in ray_objects(load_documents(sample)):
        kind = RAY_KINDS[doc["kind"]]
        meta = doc["metadata"]
        rebuilt = build_manifest(
            kind,
            meta.get("name"),
            meta.get("namespace"),
            generate_name=meta.get("generateName"),
            labels=meta.get("labels"),
            annotations=meta.get("annotations"),
            **spec_params(doc),
        )
        assert rebuilt["spec"] == doc["spec"]
        assert rebuilt["metadata"] == meta


def test_spec_field_tables_match_the_crds(crds_dir: Path):
    for crd_file in crds_dir.glob("*.yaml"):
        crd = yaml.safe_load(crd_file.read_text())
        kind = crd["spec"]["names"]["kind"]
        v1 = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
        crd_fields = set(v1["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"])
        assert set(SPEC_FIELDS[kind].values()) == crd_fields, kind


def test_load_manifest_picks_the_ray_object_beside_a_configmap():
    manifest = load_manifest(SAMPLES_DIR / "ray-job.sample.yaml")
    assert manifest["kind"] == "RayJob"
    assert [o["kind"] for o in companion_objects(SAMPLES_DIR / "ray-job.sample.yaml")] == ["ConfigMap"]


def test_load_manifest_from_text_and_dict():
    text = "apiVersion: ray.io/v1\nkind: RayCluster\nmetadata: {name: c}\nspec: {}\n"
    assert load_manifest(text)["metadata"]["name"] == "c"
    assert load_manifest(yaml.safe_load(text), kind="RayCluster")["kind"] == "RayCluster"


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("a: [1, 2", "not valid YAML"),
        ("- 1\n- 2\n", "not a mapping"),
        ("apiVersion: v1\nkind: ConfigMap\n", "no RayJob found"),
        ("apiVersion: ray.io/v1alpha1\nkind: RayJob\n", "apiVersion 'ray.io/v1alpha1'"),
        (
            "apiVersion: ray.io/v1\nkind: RayJob\nmetadata: {name: a}\n---\napiVersion: ray.io/v1\nkind: RayJob\nmetadata: {name: b}\n",
            "2 RayJob objects",
        ),
    ],
)
def test_bad_manifest_text_is_refused_clearly(text: str, fragment: str):
    with pytest.raises(ManifestError, match=fragment):
        load_manifest(text, kind="RayJob")


def test_non_utf8_file_is_refused(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"kind: RayJob\nname: \xff\xfe\n")
    with pytest.raises(ManifestError, match="not UTF-8"):
        load_documents(bad)


def test_list_kind_is_unpacked():
    text = "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: ray.io/v1, kind: RayJob, metadata: {name: a}}\n"
    assert [d["metadata"]["name"] for d in parse_documents(text)] == ["a"]
