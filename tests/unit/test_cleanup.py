"""core.cleanup: each choice's KubeRay fields, that KubeRay's own rules accept them, and conflicts refused."""

from __future__ import annotations

from typing import Any

import pytest

from kuberay_provider.core.cleanup import apply_cleanup, cleanup_spec_fields, held_cleanup
from kuberay_provider.core.job_request import RayJobRequest, RunIdentity
from kuberay_provider.core.validation import SchemaRegistry, validate_manifest

CLUSTER = {
    "headGroupSpec": {
        "rayStartParams": {},
        "template": {"spec": {"containers": [{"name": "head", "image": "rayproject/ray:2.60.0"}]}},
    },
    "workerGroupSpecs": [
        {
            "groupName": "w",
            "replicas": 1,
            "minReplicas": 0,
            "maxReplicas": 1,
            "rayStartParams": {},
            "template": {"spec": {"containers": [{"name": "w", "image": "rayproject/ray:2.60.0"}]}},
        }
    ],
}


def request(cleanup: str, rayjob: dict[str, Any] | None = None, **spec_params: Any) -> RayJobRequest:
    return RayJobRequest(
        RunIdentity("dag", "task", "run"),
        namespace="default",
        rayjob=rayjob,
        cleanup=cleanup,
        spec_params={"entrypoint": "python x.py", "ray_cluster_spec": CLUSTER, **spec_params},
    )


def test_keep_and_delete_cluster_set_shutdown_only():
    assert request("keep").manifest()["spec"]["shutdownAfterJobFinishes"] is False
    spec = request("delete_cluster").manifest()["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert "ttlSecondsAfterFinished" not in spec and "deletionStrategy" not in spec


def test_delete_cluster_after_sets_the_ttl():
    spec = request("delete_cluster_after:300").manifest()["spec"]
    assert (spec["shutdownAfterJobFinishes"], spec["ttlSecondsAfterFinished"]) == (True, 300)


def test_delete_workers_then_cluster_writes_rules_for_every_end():
    rules = request("delete_workers_then_cluster:0:600").manifest()["spec"]["deletionStrategy"]["deletionRules"]
    ttl = {
        (
            tuple(sorted(rule["condition"].items() - {("ttlSeconds", rule["condition"]["ttlSeconds"])})),
            rule["policy"],
        ): rule["condition"]["ttlSeconds"]
        for rule in rules
    }
    for condition in ((("jobStatus", "SUCCEEDED"),), (("jobStatus", "FAILED"),), (("jobDeploymentStatus", "Failed"),)):
        assert ttl[(condition, "DeleteWorkers")] == 0 and ttl[(condition, "DeleteCluster")] == 600
    assert "shutdownAfterJobFinishes" not in request("delete_workers_then_cluster:0:600").manifest()["spec"]


@pytest.mark.parametrize(
    "choice",
    [
        "keep",
        "delete_cluster",
        "delete_cluster_after:0",
        "delete_cluster_after:60",
        "delete_workers_then_cluster:10:10",
        "delete_workers_then_cluster:0:600",
    ],
)
def test_every_choice_passes_kuberays_rules_and_the_crd_schema(choice: str, crds_dir):
    assert validate_manifest(request(choice).manifest(), SchemaRegistry.from_directory(crds_dir)) == []


@pytest.mark.parametrize(
    "choice",
    [
        "",
        "delete",
        "delete_cluster_after:",
        "delete_cluster_after:-1",
        "delete_cluster_after:1.5",
        "delete_workers_then_cluster:60",
        "delete_workers_then_cluster:60:10",
    ],
)
def test_unknown_or_malformed_choices_are_refused(choice: str):
    with pytest.raises(ValueError):
        cleanup_spec_fields(choice)
    with pytest.raises(ValueError):
        request(choice)  # at construction, before any manifest is built


@pytest.mark.parametrize(
    ("choice", "explicit"),
    [
        ("keep", {"shutdown_after_job_finishes": True}),
        ("keep", {"ttl_seconds_after_finished": 30}),
        ("delete_cluster", {"ttl_seconds_after_finished": 30}),
        ("delete_cluster_after:60", {"ttl_seconds_after_finished": 30}),
        ("delete_workers_then_cluster:0:60", {"shutdown_after_job_finishes": True}),
        (
            "delete_cluster",
            {"deletion_strategy": {"onSuccess": {"policy": "DeleteCluster"}, "onFailure": {"policy": "DeleteNone"}}},
        ),
    ],
)
def test_a_disagreeing_explicit_field_is_refused(choice: str, explicit: dict[str, Any]):
    with pytest.raises(ValueError, match="conflicting explicit field"):
        request(choice, **explicit).manifest()


def test_the_base_manifest_counts_as_explicit_and_agreeing_values_pass():
    with pytest.raises(ValueError, match="shutdownAfterJobFinishes=False"):
        request(
            "delete_cluster",
            rayjob={"apiVersion": "ray.io/v1", "kind": "RayJob", "spec": {"shutdownAfterJobFinishes": False}},
        ).manifest()
    spec = request(
        "delete_cluster_after:60", shutdown_after_job_finishes=True, ttl_seconds_after_finished=60
    ).manifest()["spec"]
    assert (spec["shutdownAfterJobFinishes"], spec["ttlSecondsAfterFinished"]) == (True, 60)


def test_apply_cleanup_leaves_other_fields_alone():
    assert apply_cleanup({"entrypoint": "x", "suspend": False}, "delete_cluster") == {
        "entrypoint": "x",
        "suspend": False,
        "shutdownAfterJobFinishes": True,
    }


@pytest.mark.parametrize(
    ("choice", "held"),
    [
        ("keep", "keep"),  # nothing to hold: the cluster stays anyway
        ("delete_cluster", "delete_cluster_after:3600"),
        ("delete_cluster_after:60", "delete_cluster_after:3600"),
        ("delete_cluster_after:7200", "delete_cluster_after:7200"),  # already longer than the hold
        (
            "delete_workers_then_cluster:30:600",
            "delete_workers_then_cluster:30:3600",
        ),  # workers go as chosen: the log is the head's
    ],
)
def test_a_held_cleanup_keeps_the_cluster_at_least_the_hold_after_the_job(choice: str, held: str, crds_dir):
    assert held_cleanup(choice, 3600) == held
    assert validate_manifest(request(held).manifest(), SchemaRegistry.from_directory(crds_dir)) == []


def test_a_negative_hold_or_an_unknown_choice_is_refused():
    with pytest.raises(ValueError, match="result_hold_seconds"):
        held_cleanup("delete_cluster", -1)
    with pytest.raises(ValueError, match="unknown cleanup choice"):
        held_cleanup("delete", 60)
