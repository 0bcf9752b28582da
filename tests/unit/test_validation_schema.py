"""The CRD schema layer: KubeRay's real CRDs (read from ../shared/kuberay) and Kubernetes schema semantics."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from kuberay_provider.core.validation import CrdSchema, SchemaRegistry, validate_manifest
from kuberay_provider.core.validation.schema import format_path
from kuberay_provider.core.validation.structural import CEL_RULES
from tests.conftest import CRDS_DIR, SAMPLES_DIR
from tests.unit.test_validation_rules import JOB, load_sample, mutate


def _ray_documents() -> list[Any]:
    params = []
    for path in sorted(SAMPLES_DIR.glob("*.yaml")):
        for index, document in enumerate(yaml.safe_load_all(path.read_text())):
            if isinstance(document, dict) and document.get("apiVersion") == "ray.io/v1":
                params.append(pytest.param(document, id=f"{path.name}#{index}"))
    return params


@pytest.fixture(scope="module")
def registry() -> SchemaRegistry:
    return SchemaRegistry.from_directory(CRDS_DIR)


def test_samples_exist():
    assert len(_ray_documents()) >= 20


@pytest.mark.parametrize("document", _ray_documents())
def test_every_kuberay_sample_is_valid(registry, document):
    assert validate_manifest(document, registry) == []


def test_registry_reads_the_three_crds(registry):
    assert registry.kinds() == ["RayCluster", "RayJob", "RayService"]
    job = registry.for_kind("RayJob")
    names = (job.kind, job.plural, job.group, job.version, job.crd_name)
    assert names == ("RayJob", "rayjobs", "ray.io", "v1", "rayjobs.ray.io")
    assert registry.for_kind("ConfigMap") is None


def test_validator_is_compiled_once_and_reused(registry):
    schema = registry.for_kind("RayCluster")
    first = schema.validator
    schema.validate(load_sample("ray-cluster.sample.yaml"))
    schema.validate({"apiVersion": "ray.io/v1", "kind": "RayCluster", "spec": {"typo": 1}})
    validate_manifest(load_sample("ray-cluster.sample.yaml"), registry)
    assert schema.validator is first
    assert schema.compilations == 1
    assert registry.for_kind("RayCluster") is schema


def test_unknown_kind_in_registry_is_reported():
    errors = validate_manifest(load_sample(JOB), SchemaRegistry())
    assert [(e.path, e.rule) for e in errors] == [("kind", "schema:unknown-kind")]


METADATA_CASES = [
    ({"name": "bad_name"}, "metadata.name", "schema:pattern"),
    ({"name": "ok", "namespace": "Team.A"}, "metadata.namespace", "schema:pattern"),
    ({"name": "ok", "annotations": {"/x": "1"}}, "metadata.annotations", "schema:pattern"),
    ({"name": "ok", "labels": {"app": "not valid"}}, "metadata.labels", "schema:pattern"),
    ({"generateName": "Job-"}, "metadata.generateName", "schema:pattern"),
    ({"name": "ok", "uid": 5}, "metadata.uid", "schema:type"),
    ({"name": "ok", "nmae": "x"}, "metadata.nmae", "schema:unknown-field"),
    ({}, "metadata.name", "schema:required"),
]


@pytest.mark.parametrize(("metadata", "path", "rule"), METADATA_CASES)
def test_object_meta_checks(registry, metadata, path, rule):
    manifest = {**load_sample(JOB), "metadata": metadata}
    assert (path, rule) in {(e.path, e.rule) for e in registry.for_kind("RayJob").validate(manifest)}


def test_generate_name_with_trailing_dash_is_valid(registry):
    manifest = {**load_sample(JOB), "metadata": {"generateName": "rayjob-", "namespace": "team-a"}}
    assert registry.for_kind("RayJob").validate(manifest) == []


def test_nulls_are_pruned_like_the_api_server_does(registry):
    nulls = {"spec.suspend": None, "spec.rayClusterSpec.headGroupSpec.rayStartParams": None}
    manifest = mutate(load_sample(JOB), nulls)
    assert registry.for_kind("RayJob").validate(manifest) == []


@pytest.mark.parametrize(
    "garbage", [None, [], "x", 3, {"spec": "x"}, {"spec": {"rayClusterSpec": []}}, {"metadata": []}]
)
def test_schema_validate_never_raises(registry, garbage):
    for kind in registry.kinds():
        assert isinstance(registry.for_kind(kind).validate(copy.deepcopy(garbage)), list)


def test_format_path():
    assert format_path(["spec", "workerGroupSpecs", 0, "replicas"]) == "spec.workerGroupSpecs[0].replicas"
    assert format_path([]) == ""


# --- Kubernetes structural schema semantics, on a small CRD ----------------------------------------

TOY_SPEC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["mode", "size"],
    "properties": {
        "mode": {"type": "string", "default": "a", "enum": ["a", "b"]},
        "size": {"type": "integer", "format": "int32"},
        "big": {"type": "integer", "format": "int64"},
        "ratio": {"type": "number", "minimum": 0, "exclusiveMinimum": True},
        "port": {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]},
        "note": {"type": "string", "nullable": True},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        "template": {
            "type": "object",
            "x-kubernetes-embedded-resource": True,
            "x-kubernetes-preserve-unknown-fields": True,
        },
        "either": {  # a structural value validation: its anyOf branches name fields but declare no types
            "type": "object",
            "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
            "anyOf": [{"properties": {"a": {"minLength": 2}}, "required": ["a"]}, {"required": ["b"]}],
        },
        "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
        "ports": {
            "type": "array",
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["port", "protocol"],
            "items": {
                "type": "object",
                "required": ["port"],
                "properties": {"port": {"type": "integer"}, "protocol": {"type": "string", "default": "TCP"}},
            },
        },
        "owner": {
            "type": "string",
            "x-kubernetes-validations": [
                {"rule": "self == oldSelf", "message": "immutable"},
                {"rule": "self.startsWith('team-')", "message": "unknown to the table"},
                {"rule": "self in ['ray.io/kuberay-operator', 'kueue.x-k8s.io/multikueue']", "message": "bad owner"},
            ],
        },
    },
}
TOY_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "toys.example.com"},
    "spec": {
        "group": "example.com",
        "names": {"kind": "Toy", "plural": "toys"},
        "scope": "Namespaced",
        "versions": [
            {"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                "type": "object", "properties": {"spec": TOY_SPEC_SCHEMA, "apiVersion": {"type": "string"},
                                                 "kind": {"type": "string"}, "metadata": {"type": "object"}}}}},
        ],
    },
}  # fmt: skip
TOY_VALID = {"apiVersion": "example.com/v1", "kind": "Toy", "metadata": {"name": "t"}, "spec": {"size": 1}}


@pytest.fixture(scope="module")
def toy() -> CrdSchema:
    return CrdSchema.from_crd(TOY_CRD)


def _toy_errors(toy: CrdSchema, spec: dict) -> set[tuple[str, str]]:
    return {(e.path, e.rule) for e in toy.validate({**TOY_VALID, "spec": {"size": 1, **spec}})}


@pytest.mark.parametrize(
    "spec",
    [
        {},  # "mode" is required but has a default, which the API server fills in first
        {"port": 80}, {"port": "http"}, {"note": None}, {"big": 2**40}, {"ratio": 0.5},
        {"free": {"anything": {"goes": [1]}}},
        {"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"x": 1}}},
        {"tags": ["a", "b"]}, {"ports": [{"port": 80}, {"port": 80, "protocol": "UDP"}]},
        {"owner": "ray.io/kuberay-operator"}, {"either": {"a": "xy", "b": 1}}, {"either": {"b": 1}},
    ],
)  # fmt: skip
def test_toy_valid(toy, spec):
    assert _toy_errors(toy, spec) == set()


@pytest.mark.parametrize(
    ("spec", "path", "rule"),
    [
        ({"size": 2**31}, "spec.size", "schema:maximum"),
        ({"size": True}, "spec.size", "schema:type"),
        ({"big": 2**63}, "spec.big", "schema:maximum"),
        ({"ratio": 0}, "spec.ratio", "schema:exclusiveMinimum"),
        ({"port": 1.5}, "spec.port", "schema:type"),
        ({"note": 3}, "spec.note", "schema:type"),
        ({"mode": "c"}, "spec.mode", "schema:enum"),
        ({"extra": 1}, "spec.extra", "schema:unknown-field"),
        ({"template": {"apiVersion": "v1"}}, "spec.template.kind", "schema:required"),
        ({"tags": ["a", "a"]}, "spec.tags", "schema:uniqueItems"),
        ({"ports": [{"port": 80}, {"port": 80, "protocol": "TCP"}]}, "spec.ports[1]", "schema:list-map-keys"),
        ({"ports": [{"protocol": "TCP"}]}, "spec.ports[0].port", "schema:required"),
        ({"owner": "me"}, "spec.owner", "schema:cel"),
        ({"either": {}}, "spec.either", "schema:anyOf"),
        ({"either": {"a": "x"}}, "spec.either", "schema:anyOf"),
    ],
)
def test_toy_invalid(toy, spec, path, rule):
    assert (path, rule) in _toy_errors(toy, spec)


def test_unknown_and_transition_cel_rules_are_skipped_with_a_debug_log(caplog):
    with caplog.at_level(logging.DEBUG, logger="kuberay_provider.core.validation"):
        schema = CrdSchema.from_crd(TOY_CRD)
        assert schema.validate({**TOY_VALID, "spec": {"size": 1, "owner": "kueue.x-k8s.io/multikueue"}}) == []
    assert "self.startsWith('team-')" in caplog.text and "oldSelf" in caplog.text


def test_every_cel_rule_in_the_crds_is_known_or_a_transition_rule():
    texts = set()
    for path in CRDS_DIR.glob("*.yaml"):
        lines = path.read_text().splitlines()
        texts |= {line.split("rule:", 1)[1].strip().strip("'") for line in lines if "rule:" in line}
    assert texts - set(CEL_RULES) == {"self == oldSelf"}


def test_missing_version_is_refused():
    with pytest.raises(ValueError, match="v2"):
        CrdSchema.from_crd(TOY_CRD, version="v2")


def test_from_crds_skips_crds_without_the_version():
    assert SchemaRegistry.from_crds([TOY_CRD], version="v1alpha1").kinds() == []


def test_from_directory_reads_multi_document_files(tmp_path: Path):
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}
    (tmp_path / "bundle.yaml").write_text(yaml.safe_dump_all([config_map, TOY_CRD]))
    (tmp_path / "notes.txt").write_text("not yaml: [")
    registry = SchemaRegistry.from_directory(tmp_path)
    assert registry.kinds() == ["Toy"]
    assert registry.for_kind("Toy").validate(TOY_VALID) == []


# --- from a cluster (the API client is real, the server answers are fakes) -------------------------


def _crd_files() -> dict[str, dict]:
    crds = (yaml.load(p.read_text(), Loader=yaml.CSafeLoader) for p in sorted(CRDS_DIR.glob("*.yaml")))
    return {crd["metadata"]["name"]: crd for crd in crds}


def _fake_read_crd(missing: str) -> Any:
    """The core clients' read_crd (what from_cluster reads through, retries included): the CRD files as
    plain dicts, NotFoundError for ``missing``."""
    from kuberay_provider.core.kube.errors import NotFoundError

    crds = _crd_files()

    def read(self: Any, name: str) -> Any:
        if name == missing:
            raise NotFoundError(f"{name} not found", target=None, status=404)  # type: ignore[arg-type]
        return copy.deepcopy(crds[name])

    return read


def test_from_cluster_reads_installed_crds(monkeypatch):
    from kubernetes import client

    from kuberay_provider.core.kube.sync_client import RayObjectsClient

    monkeypatch.setattr(RayObjectsClient, "read_crd", _fake_read_crd(missing="rayservices.ray.io"))
    registry = SchemaRegistry.from_cluster(client.ApiClient())
    assert registry.kinds() == ["RayCluster", "RayJob"]
    assert validate_manifest(load_sample(JOB), registry) == []
    typo = mutate(load_sample(JOB), {"spec.shutdownAfterJobFinish": True})
    found = {(e.path, e.rule) for e in validate_manifest(typo, registry)}
    assert ("spec.shutdownAfterJobFinish", "schema:unknown-field") in found


def test_from_cluster_propagates_other_api_errors(monkeypatch):
    from kubernetes import client

    from kuberay_provider.core.kube.errors import ForbiddenError
    from kuberay_provider.core.kube.sync_client import RayObjectsClient

    def forbidden(self: Any, name: str) -> Any:
        raise ForbiddenError("forbidden", target=None, status=403)  # type: ignore[arg-type]

    monkeypatch.setattr(RayObjectsClient, "read_crd", forbidden)
    with pytest.raises(ForbiddenError):
        SchemaRegistry.from_cluster(client.ApiClient())


async def test_from_cluster_async_reads_installed_crds(monkeypatch):
    from kubernetes_asyncio import client

    from kuberay_provider.core.kube.async_client import AsyncRayObjectsClient

    read = _fake_read_crd(missing="rayservices.ray.io")

    async def read_async(self: Any, name: str) -> Any:
        return read(self, name)

    monkeypatch.setattr(AsyncRayObjectsClient, "read_crd", read_async)
    api_client = client.ApiClient()
    try:
        registry = await SchemaRegistry.from_cluster_async(api_client)
    finally:
        await api_client.close()
    assert registry.kinds() == ["RayCluster", "RayJob"]
    assert validate_manifest(load_sample("ray-cluster.sample.yaml"), registry) == []
