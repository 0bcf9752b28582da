"""Kueue and Volcano: labels, suspension, the schedulers' rules, and the local Kueue's admission plan."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from kuberay_provider.core.job_request import RayJobRequest, RunIdentity
from kuberay_provider.core.schedulers import KUEUE_QUEUE_LABEL, is_held_by_kueue, suspend_for_kueue
from kuberay_provider.core.spec import simple_cluster_spec
from kuberay_provider.core.status import RayJobState, WaitTarget
from kuberay_provider.core.validation import validate_manifest
from kuberay_provider.local.kueue.admission import QueueView, Workload, plan_admissions, rayjob_cpu

SPEC = simple_cluster_spec(image="rayproject/ray:2.60.0", workers=1)


def rayjob(**spec_params: Any) -> RayJobRequest:
    params = {
        "entrypoint": "python -c 'print(1)'",
        "ray_cluster_spec": SPEC,
        "shutdown_after_job_finishes": True,
        **spec_params,
    }
    return RayJobRequest(RunIdentity("dag", "task", "run"), spec_params=params, queue_name="team-a")


def rules(manifest: dict[str, Any]) -> set[str]:
    return {error.rule for error in validate_manifest(manifest)}


def test_queue_name_labels_and_suspends_the_rayjob() -> None:
    manifest = rayjob().manifest()
    assert manifest["metadata"]["labels"][KUEUE_QUEUE_LABEL] == "team-a"
    assert manifest["spec"]["suspend"] is True and is_held_by_kueue(manifest)
    assert not validate_manifest(manifest)


def test_queue_name_refuses_an_explicit_suspend_false() -> None:
    with pytest.raises(ValueError, match="suspend=False"):
        rayjob(suspend=False)


def test_a_queue_label_in_the_base_manifest_is_honoured_too() -> None:
    base = {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"labels": {KUEUE_QUEUE_LABEL: "from-yaml"}},
        "spec": {"entrypoint": "x", "rayClusterSpec": SPEC, "shutdownAfterJobFinishes": True},
    }
    request = RayJobRequest(RunIdentity("dag", "task", "run"), rayjob=base)
    assert request.kueue_queue == "from-yaml" and request.manifest()["spec"]["suspend"] is True


def test_volcano_queue_sets_both_labels() -> None:
    request = RayJobRequest(
        RunIdentity("d", "t", "r"), spec_params={"entrypoint": "x", "ray_cluster_spec": SPEC}, volcano_queue="q1"
    )
    labels = request.manifest()["metadata"]["labels"]
    assert labels["ray.io/scheduler-name"] == "volcano" and labels["volcano.sh/queue-name"] == "q1"
    assert "suspend" not in request.manifest()["spec"]


@pytest.mark.parametrize(
    "change, rule",
    [
        (lambda m: m["spec"].update(shutdownAfterJobFinishes=False), "kueue:shutdown-after-job-finishes"),
        (lambda m: m["spec"]["rayClusterSpec"].update(enableInTreeAutoscaling=True), "kueue:no-autoscaling"),
        (
            lambda m: m["spec"]["rayClusterSpec"].update(
                workerGroupSpecs=[
                    dict(m["spec"]["rayClusterSpec"]["workerGroupSpecs"][0], groupName=f"g{i}") for i in range(8)
                ]
            ),
            "kueue:max-worker-groups",
        ),
        (
            lambda m: m["spec"]["rayClusterSpec"]["workerGroupSpecs"][0].update(groupName="head"),
            "kueue:reserved-group-name",
        ),
        (lambda m: m["metadata"]["labels"].update({KUEUE_QUEUE_LABEL: "Not_A_Queue"}), "kueue:queue-name"),
        (
            lambda m: m["metadata"]["labels"].update({"ray.io/scheduler-name": "volcano"}),
            "provider:one-batch-scheduler",
        ),
    ],
)
def test_kueue_rules_name_the_field(change: Any, rule: str) -> None:
    manifest = rayjob().manifest()
    change(manifest)
    assert rule in rules(manifest)


def test_kueue_refuses_an_existing_cluster() -> None:
    request = RayJobRequest(
        RunIdentity("d", "t", "r"), spec_params={"entrypoint": "x"}, cluster_selector="shared", queue_name="q"
    )
    errors = validate_manifest(request.manifest())
    assert [e.path for e in errors if e.rule == "kueue:no-existing-cluster"] == ["spec.clusterSelector"]


def test_kueue_rules_for_raycluster_and_rayservice_paths() -> None:
    cluster = {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": "c", "labels": {KUEUE_QUEUE_LABEL: "q"}},
        "spec": {**SPEC, "enableInTreeAutoscaling": True},
    }
    assert {e.path for e in validate_manifest(cluster) if e.rule == "kueue:no-autoscaling"} == {
        "spec.enableInTreeAutoscaling"
    }
    service = {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": "s", "labels": {KUEUE_QUEUE_LABEL: "q"}},
        "spec": {"rayClusterConfig": {**SPEC, "enableInTreeAutoscaling": True}},
    }
    paths = {e.path for e in validate_manifest(service) if e.rule == "kueue:no-autoscaling"}
    assert paths == {"spec.rayClusterConfig.enableInTreeAutoscaling"}
    assert suspend_for_kueue(service)["spec"]["rayClusterConfig"]["suspend"] is True


def test_a_volcano_queue_alone_is_valid_as_in_kuberays_sample() -> None:
    manifest = rayjob().manifest()
    del manifest["metadata"]["labels"][KUEUE_QUEUE_LABEL]
    manifest["spec"].pop("suspend")
    manifest["metadata"]["labels"]["volcano.sh/queue-name"] = "q"
    assert not validate_manifest(manifest)
    manifest["metadata"]["labels"]["volcano.sh/queue-name"] = "-bad-"
    assert "volcano:queue-name" in rules(manifest)


def test_state_reports_the_queue_and_admission() -> None:
    manifest = rayjob().manifest()
    manifest["status"] = {"jobDeploymentStatus": "Suspended"}
    queued = RayJobState.from_object(manifest)
    assert queued.is_queued_for_admission and "queued for admission on Kueue LocalQueue 'team-a'" in queued.describe()
    assert not WaitTarget.ADMITTED.reached(queued)
    manifest["spec"]["suspend"] = False
    assert WaitTarget.ADMITTED.reached(RayJobState.from_object(manifest))


# --- the local Kueue's plan -----------------------------------------------------------------------


def _workload(
    name: str, created: str, cpu: str, suspended: bool = True, finished: bool = False, queue: str = "lq"
) -> Workload:
    return Workload("RayJob", "default", name, queue, created, Decimal(cpu), suspended, finished)


def _queues(quota: str, strategy: str = "BestEffortFIFO") -> QueueView:
    cq = {
        "metadata": {"name": "cq"},
        "spec": {
            "queueingStrategy": strategy,
            "resourceGroups": [
                {
                    "coveredResources": ["cpu"],
                    "flavors": [{"name": "default", "resources": [{"name": "cpu", "nominalQuota": quota}]}],
                }
            ],
        },
    }
    lq = {"metadata": {"namespace": "default", "name": "lq"}, "spec": {"clusterQueue": "cq"}}
    return QueueView.from_objects([cq], [lq])


def test_plan_admits_in_creation_order_within_quota() -> None:
    plan = plan_admissions(
        _queues("3"), [_workload("b", "2026-01-01T00:00:02Z", "2"), _workload("a", "2026-01-01T00:00:01Z", "2")]
    )
    assert [w.name for w in plan.admit] == ["a"]
    assert (plan.cluster_queues["cq"].pending, plan.cluster_queues["cq"].admitted) == (1, 1)


def test_plan_holds_quota_until_a_rayjob_finishes() -> None:
    running = _workload("a", "1", "2", suspended=False)
    assert plan_admissions(_queues("3"), [running, _workload("b", "2", "2")]).admit == []
    done = _workload("a", "1", "2", suspended=False, finished=True)
    assert [w.name for w in plan_admissions(_queues("3"), [done, _workload("b", "2", "2")]).admit] == ["b"]


def test_strict_fifo_does_not_let_a_smaller_workload_pass() -> None:
    queued = [_workload("big", "1", "5"), _workload("small", "2", "1")]
    assert [w.name for w in plan_admissions(_queues("3"), queued).admit] == ["small"]
    assert plan_admissions(_queues("3", "StrictFIFO"), queued).admit == []


def test_a_missing_local_queue_keeps_the_workload_pending() -> None:
    plan = plan_admissions(_queues("3"), [_workload("a", "1", "1", queue="nope")])
    assert plan.admit == [] and plan.local_queues[("default", "nope")].pending == 1


def test_rayjob_cpu_counts_head_workers_and_the_submitter() -> None:
    spec = {
        "rayClusterSpec": {
            "headGroupSpec": {"template": {"spec": {"containers": [{"resources": {"requests": {"cpu": "1"}}}]}}},
            "workerGroupSpecs": [
                {"replicas": 2, "template": {"spec": {"containers": [{"resources": {"limits": {"cpu": "500m"}}}]}}}
            ],
        }
    }
    assert rayjob_cpu(spec) == Decimal("2.5")  # 1 + 2 x 0.5 + the default submitter's 0.5
    assert rayjob_cpu({**spec, "submissionMode": "InteractiveMode"}) == Decimal("2")
