"""What a task reports at the end of a RayJob that did not succeed, against what KubeRay leaves behind:
a cluster already deleted with its log (shutdownAfterJobFinishes, no TTL), and a STOPPED job that no
deletion rule matches. Kubernetes and the Jobs API are faked at the lifecycle's clients."""

from __future__ import annotations

from typing import Any

import pytest

from kuberay_provider.core.cleanup import cleanup_spec_fields
from kuberay_provider.core.job_runner import RayJobFailed, RayJobRunner
from kuberay_provider.core.resources import RAYCLUSTER
from kuberay_provider.core.status import RayJobState


class GoneJobs:
    def logs(self, job_id: str) -> str:
        raise RuntimeError("503 Service Unavailable: no endpoints available for service")


class Kube:
    def __init__(self, clusters: set[str]) -> None:
        self.clusters = set(clusters)
        self.deleted: list[str] = []

    def find(self, kind: Any, namespace: str, name: str) -> dict[str, Any] | None:
        return {"metadata": {"name": name}} if kind is RAYCLUSTER and name in self.clusters else None

    def delete(self, kind: Any, namespace: str, name: str, *, propagation_policy: str = "Foreground") -> bool:
        assert kind is RAYCLUSTER
        self.deleted.append(name)
        return name in self.clusters


class Lifecycle:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    def rayjob_jobs_client(self, state: RayJobState) -> GoneJobs:
        return GoneJobs()

    def head_service(self, state: RayJobState) -> str:
        raise RuntimeError("no link in these tests")


def rayjob(job_status: str, deployment: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": "daily", "namespace": "ns"},
        "spec": spec,
        "status": {
            "jobStatus": job_status,
            "jobDeploymentStatus": deployment,
            "jobId": "daily-abcde",
            "rayClusterName": "daily-c1",
            "reason": "AppFailed" if job_status == "FAILED" else "",
        },
    }


def test_a_failure_whose_cluster_kubeRay_already_deleted_says_the_log_is_gone() -> None:
    runner = RayJobRunner(Lifecycle(Kube(clusters=set())), status_line=lambda line: None)  # type: ignore[arg-type]
    state = RayJobState.from_object(rayjob("FAILED", "Failed", {"shutdownAfterJobFinishes": True}))
    with pytest.raises(RayJobFailed) as failed:
        runner.conclude(state)
    assert "the log is gone: KubeRay deleted RayCluster ns/daily-c1 when the job ended" in str(failed.value)
    assert "delete_cluster_after" in failed.value.log_tail


def test_a_stopped_job_under_delete_workers_then_cluster_has_its_cluster_deleted_by_the_task() -> None:
    """KubeRay's rules match SUCCEEDED / FAILED / Failed only: a STOPPED job would keep its cluster."""
    kube = Kube(clusters={"daily-c1"})
    said: list[str] = []
    runner = RayJobRunner(Lifecycle(kube), status_line=said.append)  # type: ignore[arg-type]
    spec = {k: v for k, v in cleanup_spec_fields("delete_workers_then_cluster:0:60").items() if v is not None}
    state = RayJobState.from_object(rayjob("STOPPED", "Complete", spec))
    with pytest.raises(RayJobFailed):
        runner.conclude(state)
    assert kube.deleted == ["daily-c1"]
    assert any("match no STOPPED job" in line for line in said)


@pytest.mark.parametrize(
    "spec",
    [
        {"shutdownAfterJobFinishes": True},
        {"shutdownAfterJobFinishes": False},
        {"clusterSelector": {"ray.io/cluster": "shared"}},
    ],
)
def test_other_cleanups_are_left_to_kuberay(spec: dict[str, Any]) -> None:
    kube = Kube(clusters={"daily-c1"})
    runner = RayJobRunner(Lifecycle(kube), status_line=lambda line: None)  # type: ignore[arg-type]
    with pytest.raises(RayJobFailed):
        runner.conclude(RayJobState.from_object(rayjob("STOPPED", "Complete", spec)))
    assert kube.deleted == []
