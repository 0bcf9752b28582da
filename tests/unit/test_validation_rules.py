"""KubeRay's semantic rules (ported from validation.go v1.7.0), checked through validate_manifest.

Every invalid case starts from one of KubeRay's own samples (read from ../shared/kuberay) and changes a
few fields; the table names the exact field path and rule each change must produce.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from functools import cache
from typing import Any

import pytest
import yaml

from kuberay_provider.core.errors import FieldError, ValidationError
from kuberay_provider.core.validation import SchemaRegistry, ensure_valid, validate_manifest
from kuberay_provider.core.validation.rules import (
    go_duration_seconds,
    parse_ray_version,
    raycluster_rules,
    rayjob_rules,
    rayservice_rules,
)
from tests.conftest import CRDS_DIR, SAMPLES_DIR

JOB, CLUSTER, SERVICE = "ray-job.sample.yaml", "ray-cluster.sample.yaml", "ray-service.sample.yaml"
DELETE = object()  # table marker: remove the field
SELECTOR_MODE: dict[str, Any] = {"spec.clusterSelector": {"ray.io/cluster": "shared"}, "spec.rayClusterSpec": DELETE}


@cache
def _sample(name: str) -> dict:
    documents = yaml.safe_load_all((SAMPLES_DIR / name).read_text())
    return next(d for d in documents if isinstance(d, dict) and d.get("apiVersion") == "ray.io/v1")


def load_sample(name: str) -> dict:
    """A fresh copy of the first ray.io/v1 object in a KubeRay sample file."""
    return copy.deepcopy(_sample(name))


@pytest.fixture(scope="module")
def registry() -> SchemaRegistry:
    return SchemaRegistry.from_directory(CRDS_DIR)


def _path_parts(path: str) -> list[str | int]:
    return [int(p[1:-1]) if p.startswith("[") else p for p in re.findall(r"\[\d+\]|[^.\[\]]+", path)]


def mutate(manifest: dict, changes: dict[str, Any]) -> dict:
    """Apply {dotted path: value} to ``manifest``; DELETE removes, a callable derives the value from it."""
    for path, value in changes.items():
        *parents, last = _path_parts(path)
        node: Any = manifest
        for part in parents:
            node = node[part] if isinstance(part, int) else node.setdefault(part, {})
        value = value(manifest) if callable(value) else value
        if value is DELETE:
            node.pop(last, None)
        elif isinstance(last, int) and last == len(node):
            node.append(value)
        else:
            node[last] = value
    return manifest


def _copy_of(path: str) -> Callable[[dict], Any]:
    def derive(manifest: dict) -> Any:
        node: Any = manifest
        for part in _path_parts(path):
            node = node[part]
        return copy.deepcopy(node)

    return derive


def _rule(condition: dict, policy: str) -> dict:
    return {"condition": condition, "policy": policy}


SUCCEEDED = {"jobStatus": "SUCCEEDED"}
LEGACY = {"onSuccess": {"policy": "DeleteCluster"}, "onFailure": {"policy": "DeleteCluster"}}
HEAD = "spec.headGroupSpec.template.spec.containers"
JOB_WORKER = "spec.rayClusterSpec.workerGroupSpecs[0]"

INVALID = [
    # --- RayJob: cluster source ---
    ("cluster-selector+suspend", JOB, {**SELECTOR_MODE, "spec.suspend": True, "spec.shutdownAfterJobFinishes": True},
     "spec.suspend", "kuberay:cluster-selector-with-suspend"),
    ("cluster-selector+backoffLimit", JOB, {**SELECTOR_MODE, "spec.backoffLimit": 2},
     "spec.backoffLimit", "kuberay:cluster-selector-with-backoff-limit"),
    ("cluster-selector+SidecarMode", JOB, {**SELECTOR_MODE, "spec.submissionMode": "SidecarMode"},
     "spec.submissionMode", "kuberay:cluster-selector-with-sidecar-mode"),
    ("cluster-selector-without-ray.io/cluster", JOB, {**SELECTOR_MODE, "spec.clusterSelector": {"team": "a"}},
     "spec.clusterSelector", "kuberay:cluster-selector-without-cluster"),
    ("cluster-selector+rayClusterSpec", JOB, {"spec.clusterSelector": {"ray.io/cluster": "shared"}},
     "spec.rayClusterSpec", "kuberay:cluster-selector-with-cluster-spec"),
    ("neither-selector-nor-spec", JOB, {"spec.rayClusterSpec": DELETE},
     "spec.rayClusterSpec", "kuberay:cluster-spec-or-selector-required"),
    # --- RayJob: submission mode and lifecycle ---
    ("InteractiveMode+backoffLimit", JOB, {"spec.submissionMode": "InteractiveMode", "spec.backoffLimit": 1},
     "spec.backoffLimit", "kuberay:interactive-mode-with-backoff-limit"),
    ("SidecarMode+submitterPodTemplate", JOB,
     {"spec.submissionMode": "SidecarMode", "spec.submitterPodTemplate": {"spec": {"containers": [{"name": "s"}]}}},
     "spec.submitterPodTemplate", "kuberay:sidecar-mode-with-submitter-pod-template"),
    ("SidecarMode+submitterConfig", JOB, {"spec.submissionMode": "SidecarMode", "spec.submitterConfig": {"backoffLimit": 1}},
     "spec.submitterConfig", "kuberay:sidecar-mode-with-submitter-config"),
    ("unknown-submissionMode", JOB, {"spec.submissionMode": "BatchMode"},
     "spec.submissionMode", "kuberay:unknown-submission-mode"),
    ("suspend-without-shutdown", JOB, {"spec.suspend": True},
     "spec.suspend", "kuberay:suspend-requires-shutdown"),
    ("negative-ttl", JOB, {"spec.shutdownAfterJobFinishes": True, "spec.ttlSecondsAfterFinished": -1},
     "spec.ttlSecondsAfterFinished", "kuberay:negative-ttl"),
    ("ttl-without-shutdown", JOB, {"spec.ttlSecondsAfterFinished": 60},
     "spec.ttlSecondsAfterFinished", "kuberay:ttl-requires-shutdown"),
    ("activeDeadline-zero", JOB, {"spec.activeDeadlineSeconds": 0},
     "spec.activeDeadlineSeconds", "kuberay:deadline-not-positive"),
    ("runtimeEnvYAML-not-a-mapping", JOB, {"spec.runtimeEnvYAML": "- pip\n- conda\n"},
     "spec.runtimeEnvYAML", "kuberay:invalid-runtime-env-yaml"),
    # --- RayJob: deletion strategy ---
    ("deletionRules+shutdown", JOB,
     {"spec.shutdownAfterJobFinishes": True, "spec.deletionStrategy": {"deletionRules": [_rule(SUCCEEDED, "DeleteCluster")]}},
     "spec.deletionStrategy.deletionRules", "kuberay:deletion-rules-with-shutdown"),
    ("deletionRules+legacy", JOB, {"spec.deletionStrategy": {**LEGACY, "deletionRules": [_rule(SUCCEEDED, "DeleteCluster")]}},
     "spec.deletionStrategy", "kuberay:deletion-rules-with-legacy-policies"),
    ("legacy-DeleteNone+shutdown", JOB,
     {"spec.shutdownAfterJobFinishes": True, "spec.deletionStrategy": {**LEGACY, "onSuccess": {"policy": "DeleteNone"}}},
     "spec.deletionStrategy.onSuccess.policy", "kuberay:shutdown-with-delete-none"),
    ("legacy-onFailure-missing", JOB, {"spec.deletionStrategy": {"onSuccess": {"policy": "DeleteSelf"}}},
     "spec.deletionStrategy.onFailure", "kuberay:legacy-deletion-policy-incomplete"),
    ("legacy-DeleteCluster+cluster-selector", JOB, {**SELECTOR_MODE, "spec.deletionStrategy": LEGACY},
     "spec.deletionStrategy.onSuccess.policy", "kuberay:deletion-policy-with-cluster-selector"),
    ("deletionStrategy-empty", JOB, {"spec.deletionStrategy": {}},
     "spec.deletionStrategy", "kuberay:deletion-strategy-empty"),
    ("condition-both-statuses", JOB,
     {"spec.deletionStrategy": {"deletionRules": [_rule({"jobStatus": "FAILED", "jobDeploymentStatus": "Failed"}, "DeleteSelf")]}},
     "spec.deletionStrategy.deletionRules[0].condition", "kuberay:deletion-condition-both-statuses"),
    ("condition-without-status", JOB, {"spec.deletionStrategy": {"deletionRules": [_rule({"ttlSeconds": 5}, "DeleteSelf")]}},
     "spec.deletionStrategy.deletionRules[0].condition", "kuberay:deletion-condition-without-status"),
    ("duplicate-deletion-rule", JOB,
     {"spec.deletionStrategy": {"deletionRules": [_rule(SUCCEEDED, "DeleteSelf"), _rule(SUCCEEDED, "DeleteSelf")]}},
     "spec.deletionStrategy.deletionRules[1]", "kuberay:deletion-rule-duplicate"),
    ("ttl-order-inconsistent", JOB, {"spec.deletionStrategy": {"deletionRules": [
        _rule({**SUCCEEDED, "ttlSeconds": 100}, "DeleteCluster"), _rule({**SUCCEEDED, "ttlSeconds": 10}, "DeleteSelf")]}},
     "spec.deletionStrategy.deletionRules[1].condition.ttlSeconds", "kuberay:deletion-ttl-order"),
    # --- names ---
    ("rayjob-name-48-chars", JOB, {"metadata.name": "j" * 48}, "metadata.name", "kuberay:name-too-long"),
    ("rayjob-name-not-dns1035", JOB, {"metadata.name": "1-job"}, "metadata.name", "kuberay:name-not-dns1035"),
    ("rayjob-generateName-too-long", JOB, {"metadata.name": DELETE, "metadata.generateName": "j" * 43 + "-"},
     "metadata.generateName", "kuberay:name-too-long"),
    ("raycluster-name-54-chars", CLUSTER, {"metadata.name": "c" * 54}, "metadata.name", "kuberay:name-too-long"),
    ("raycluster-name-uppercase", CLUSTER, {"metadata.name": "RayCluster"}, "metadata.name", "kuberay:name-not-dns1035"),
    ("rayservice-name-48-chars", SERVICE, {"metadata.name": "s" * 48}, "metadata.name", "kuberay:name-too-long"),
    # --- RayCluster spec, alone and embedded ---
    ("duplicate-worker-group-name", CLUSTER, {"spec.workerGroupSpecs[1]": _copy_of("spec.workerGroupSpecs[0]")},
     "spec.workerGroupSpecs[1].groupName", "kuberay:worker-group-name-duplicate"),
    ("minReplicas>maxReplicas", CLUSTER, {"spec.workerGroupSpecs[0].minReplicas": 6},
     "spec.workerGroupSpecs[0].minReplicas", "kuberay:min-replicas-exceeds-max"),
    ("negative-maxReplicas", CLUSTER, {"spec.workerGroupSpecs[0].minReplicas": 0, "spec.workerGroupSpecs[0].maxReplicas": -1},
     "spec.workerGroupSpecs[0].maxReplicas", "kuberay:negative-max-replicas"),
    ("embedded-minReplicas>maxReplicas", JOB, {f"{JOB_WORKER}.minReplicas": 9},
     f"{JOB_WORKER}.minReplicas", "kuberay:min-replicas-exceeds-max"),
    ("rayservice-embedded-minReplicas>maxReplicas", SERVICE, {"spec.rayClusterConfig.workerGroupSpecs[0].minReplicas": 9},
     "spec.rayClusterConfig.workerGroupSpecs[0].minReplicas", "kuberay:min-replicas-exceeds-max"),
    ("head-without-containers", CLUSTER, {HEAD: []}, HEAD, "kuberay:head-containers-required"),
    ("rayStartParams+resources", CLUSTER,
     {"spec.headGroupSpec.rayStartParams": {"num-cpus": "1"}, "spec.headGroupSpec.resources": {"CPU": "1"}},
     "spec.headGroupSpec.resources", "kuberay:group-resources-conflict"),
    ("idleTimeout-without-autoscaler-v2", CLUSTER, {"spec.workerGroupSpecs[0].idleTimeoutSeconds": 60},
     "spec.workerGroupSpecs[0].idleTimeoutSeconds", "kuberay:idle-timeout-requires-autoscaler-v2"),
    ("token-auth-old-ray", CLUSTER, {"spec.authOptions": {"mode": "token"}, "spec.rayVersion": "2.9.0"},
     "spec.rayVersion", "kuberay:auth-ray-version"),
    ("tlsOptions-gate-off", CLUSTER, {"spec.tlsOptions": {"enabled": True}}, "spec.tlsOptions", "kuberay:feature-gate-disabled"),
    ("upgradeStrategy-in-rayjob-cluster", JOB, {"spec.rayClusterSpec.upgradeStrategy": {"type": "Recreate"}},
     "spec.rayClusterSpec.upgradeStrategy.type", "kuberay:upgrade-strategy-not-allowed"),
    # --- RayService ---
    ("head-service-name", SERVICE, {"spec.rayClusterConfig.headGroupSpec.headService": {"metadata": {"name": "svc"}}},
     "spec.rayClusterConfig.headGroupSpec.headService.metadata.name", "kuberay:head-service-name-set"),
    ("initializing-timeout-garbage", SERVICE, {"metadata.annotations": {"ray.io/initializing-timeout": "soon"}},
     "metadata.annotations", "kuberay:initializing-timeout-format"),
    ("incremental-upgrade-without-options", SERVICE,
     {"spec.upgradeStrategy": {"type": "NewClusterWithIncrementalUpgrade"}, "spec.rayClusterConfig.enableInTreeAutoscaling": True},
     "spec.upgradeStrategy.clusterUpgradeOptions", "kuberay:cluster-upgrade-options-required"),
    # --- CRD schema ---
    ("schema-type-replicas", JOB, {f"{JOB_WORKER}.replicas": "3"}, f"{JOB_WORKER}.replicas", "schema:type"),
    ("schema-typo-shutdownAfterJobFinish", JOB, {"spec.shutdownAfterJobFinish": True},
     "spec.shutdownAfterJobFinish", "schema:unknown-field"),
    ("schema-enum-deletion-policy", JOB, {"spec.deletionStrategy": {**LEGACY, "onSuccess": {"policy": "DeleteAll"}}},
     "spec.deletionStrategy.onSuccess.policy", "schema:enum"),
    ("schema-int-or-string-float-cpu", CLUSTER, {f"{HEAD}[0].resources.limits.cpu": 1.5},
     f"{HEAD}[0].resources.limits.cpu", "schema:type"),
    ("schema-int32-overflow", JOB, {"spec.backoffLimit": 2**31}, "spec.backoffLimit", "schema:maximum"),
    ("schema-required-groupName", CLUSTER, {"spec.workerGroupSpecs[0].groupName": DELETE},
     "spec.workerGroupSpecs[0].groupName", "schema:required"),
    ("schema-list-map-duplicate-container", CLUSTER, {f"{HEAD}[1]": _copy_of(f"{HEAD}[0]")}, f"{HEAD}[1]", "schema:list-map-keys"),
    ("schema-metadata-name-missing", SERVICE, {"metadata.name": DELETE}, "metadata.name", "schema:required"),
    ("cel-managedBy", JOB, {"spec.managedBy": "someone-else"}, "spec.managedBy", "schema:cel"),
    ("cel-legacy+rules", JOB, {"spec.deletionStrategy": {**LEGACY, "deletionRules": [_rule(SUCCEEDED, "DeleteSelf")]}},
     "spec.deletionStrategy", "schema:cel"),
    ("cel-condition-needs-status", JOB, {"spec.deletionStrategy": {"deletionRules": [_rule({}, "DeleteSelf")]}},
     "spec.deletionStrategy.deletionRules[0].condition", "schema:cel"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("sample", "changes", "path", "rule"), [pytest.param(*case[1:], id=case[0]) for case in INVALID]
)
def test_invalid_manifest_reports_path_and_rule(registry, sample, changes, path, rule):
    errors = validate_manifest(mutate(load_sample(sample), changes), registry)
    assert (path, rule) in {(e.path, e.rule) for e in errors}, errors


def test_table_is_large_enough():
    assert len(INVALID) >= 30


def test_all_problems_are_reported_at_once(registry):
    manifest = mutate(load_sample(JOB), {"metadata.name": "J" * 60, "spec.suspend": True, "spec.backoffLimit": -1,
                                         f"{JOB_WORKER}.minReplicas": 9, "spec.typo": 1})  # fmt: skip
    rules = {e.rule for e in validate_manifest(manifest, registry)}
    expected = {"kuberay:name-too-long", "kuberay:name-not-dns1035", "kuberay:suspend-requires-shutdown",
                "kuberay:negative-backoff-limit", "kuberay:min-replicas-exceeds-max", "schema:unknown-field"}  # fmt: skip
    assert expected <= rules


def test_errors_are_sorted_by_path_and_deduplicated(registry):
    manifest = mutate(load_sample(JOB), {"spec.zeta": 1, "spec.alpha": 1, "spec.suspend": True})
    errors = validate_manifest(manifest, registry)
    assert [e.path for e in errors] == sorted(e.path for e in errors)
    assert len(errors) == len(set(errors))


def test_rules_alone_run_without_schemas():
    errors = validate_manifest(mutate(load_sample(JOB), {"spec.suspend": True, "spec.typo": 1}))
    assert [(e.path, e.rule) for e in errors] == [("spec.suspend", "kuberay:suspend-requires-shutdown")]


@pytest.mark.parametrize(
    ("sample", "changes"),
    [
        (JOB, {"spec.submissionMode": "InteractiveMode", "spec.backoffLimit": 0}),
        (
            JOB,
            {
                **SELECTOR_MODE,
                "spec.deletionStrategy": {
                    **LEGACY,
                    "onSuccess": {"policy": "DeleteSelf"},
                    "onFailure": {"policy": "DeleteNone"},
                },
            },
        ),
        (
            JOB,
            {
                "spec.deletionStrategy": {
                    "deletionRules": [
                        _rule({**SUCCEEDED, "ttlSeconds": 10}, "DeleteWorkers"),
                        _rule({**SUCCEEDED, "ttlSeconds": 10}, "DeleteCluster"),
                        _rule({"jobDeploymentStatus": "Failed", "ttlSeconds": 0}, "DeleteSelf"),
                    ]
                }
            },
        ),
        (JOB, {"metadata.name": "j" * 47, "spec.shutdownAfterJobFinishes": True, "spec.ttlSecondsAfterFinished": 30}),
        (JOB, {f"{JOB_WORKER}.minReplicas": DELETE, f"{JOB_WORKER}.maxReplicas": DELETE}),  # CRD defaults apply
        (CLUSTER, {"metadata.name": "c" * 53, "spec.workerGroupSpecs[0].priority": 0}),
        (
            CLUSTER,
            {
                "spec.enableInTreeAutoscaling": True,
                "spec.autoscalerOptions": {"version": "v2"},
                "spec.workerGroupSpecs[0].idleTimeoutSeconds": 60,
            },
        ),
        (
            SERVICE,
            {"metadata.annotations": {"ray.io/initializing-timeout": "5m"}, "spec.rayClusterDeletionDelaySeconds": 0},
        ),
        (
            SERVICE,
            {
                "spec.upgradeStrategy": {
                    "type": "NewClusterWithIncrementalUpgrade",
                    "clusterUpgradeOptions": {
                        "stepSizePercent": 50,
                        "intervalSeconds": 30,
                        "gatewayClassName": "istio",
                    },
                },
                "spec.rayClusterConfig.enableInTreeAutoscaling": True,
            },
        ),
    ],
)
def test_valid_variations_pass(registry, sample, changes):
    assert validate_manifest(mutate(load_sample(sample), changes), registry) == []


GARBAGE = [None, [], "RayJob", 42, 1.5, True, {"spec": "oops"}, {"spec": []}, {"metadata": "x", "spec": None}]
NESTED_GARBAGE = {
    "metadata": {"name": 5, "annotations": ["x"], "labels": "y"},
    "spec": {
        "clusterSelector": "x", "suspend": "yes", "backoffLimit": "2", "submissionMode": 3, "deletionStrategy": {
            "onSuccess": "x", "deletionRules": ["x", {"condition": [], "policy": {}}, {"condition": {"jobStatus": []}}]},
        "rayClusterSpec": {"headGroupSpec": {"template": "x", "rayStartParams": [], "labels": {1: 2}},
                           "workerGroupSpecs": ["x", None, {"template": {"spec": {"containers": "x"}}, "minReplicas": "1"}],
                           "authOptions": {"mode": "token"}, "rayVersion": 2, "autoscalerOptions": []},
        "rayClusterConfig": {"gcsFaultToleranceOptions": "x", "headGroupSpec": []},
        "upgradeStrategy": {"type": "NewClusterWithIncrementalUpgrade", "clusterUpgradeOptions": "x"},
    },
}  # fmt: skip


@pytest.mark.parametrize("manifest", [*GARBAGE, NESTED_GARBAGE], ids=repr)
@pytest.mark.parametrize("rules", [rayjob_rules, raycluster_rules, rayservice_rules])
def test_rules_never_raise_on_garbage(rules, manifest):
    assert all(isinstance(e, FieldError) for e in rules(copy.deepcopy(manifest)))


@pytest.mark.parametrize("kind", ["RayJob", "RayCluster", "RayService"])
@pytest.mark.parametrize("manifest", [*GARBAGE, NESTED_GARBAGE], ids=repr)
def test_validate_manifest_never_raises_on_garbage(registry, kind, manifest):
    if isinstance(manifest, dict):
        manifest = {**copy.deepcopy(manifest), "apiVersion": "ray.io/v1", "kind": kind}
    assert all(isinstance(e, FieldError) for e in validate_manifest(manifest, registry))


@pytest.mark.parametrize(
    ("manifest", "path", "rule"),
    [
        (None, "(root)", "manifest:not-a-mapping"),
        (["RayJob"], "(root)", "manifest:not-a-mapping"),
        ({"apiVersion": "ray.io/v1alpha1", "kind": "RayJob"}, "apiVersion", "manifest:api-version"),
        ({"apiVersion": "v1", "kind": "ConfigMap"}, "kind", "manifest:kind"),
    ],
)
def test_not_a_ray_object(manifest, path, rule):
    assert (path, rule) in {(e.path, e.rule) for e in validate_manifest(manifest)}


def test_ensure_valid_names_the_object_and_lists_every_error(registry):
    manifest = mutate(load_sample(JOB), {"metadata.namespace": "team-a", "spec.suspend": True, "spec.typo": 1})
    with pytest.raises(ValidationError) as caught:
        ensure_valid(manifest, registry)
    assert caught.value.object_name == "RayJob team-a/rayjob-sample"
    assert {e.rule for e in caught.value.errors} == {"kuberay:suspend-requires-shutdown", "schema:unknown-field"}
    ensure_valid(load_sample(JOB), registry)  # a valid manifest passes silently


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5m", 300), ("1h30m", 5400), ("1.5s", 1.5), ("-2s", -2), ("0", 0), ("300", None), ("5 m", None), ("", None)],
)
def test_go_duration(text, seconds):
    assert go_duration_seconds(text) == seconds


@pytest.mark.parametrize(
    ("text", "version"),
    [("2.52.0", (2, 52, 0)), ("v2.52", (2, 52, 0)), ("2.56.0rc1", (2, 56, 0)), ("2", None), ("latest", None)],
)
def test_ray_version(text, version):
    assert parse_ray_version(text) == version
