"""Kueue on the local control plane: the real API server, KubeRay's RayJob reconciliation, the local
Kueue admitting by CPU quota, the fast Ray-backend double behind it, and the core's runner waiting."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from kuberay_provider.core.clusters import RayClusterLifecycle, RayClusterRequest
from kuberay_provider.core.job_request import RayJobRequest, RunIdentity
from kuberay_provider.core.job_runner import RayJobRunner
from kuberay_provider.core.kube.sync_client import RayObjectsClient
from kuberay_provider.core.lifecycle import AdmissionTimeout, RayJobLifecycle
from kuberay_provider.core.resources import RAYCLUSTER, RAYJOB
from kuberay_provider.core.spec import simple_cluster_spec
from kuberay_provider.local.plane import LocalControlPlane
from kuberay_provider.local.ray_backend import FakeRayBackend
from kuberay_provider.local.ray_backend.fake import JobScript

CRDS = Path(__file__).resolve().parents[3] / "shared/kuberay/crds"
SPEC = simple_cluster_spec(image="rayproject/ray:2.60.0", workers=1)  # 1 + 1 CPU, + 0.5 for the submitter
KUEUE = ("kueue.x-k8s.io", "v1beta1")


def cluster_queue(name: str, cpu: str) -> dict[str, Any]:
    return {
        "apiVersion": "kueue.x-k8s.io/v1beta1",
        "kind": "ClusterQueue",
        "metadata": {"name": name},
        "spec": {
            "namespaceSelector": {},
            "resourceGroups": [
                {
                    "coveredResources": ["cpu"],
                    "flavors": [{"name": "default-flavor", "resources": [{"name": "cpu", "nominalQuota": cpu}]}],
                }
            ],
        },
    }


def local_queue(name: str, cluster_queue_name: str) -> dict[str, Any]:
    return {
        "apiVersion": "kueue.x-k8s.io/v1beta1",
        "kind": "LocalQueue",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"clusterQueue": cluster_queue_name},
    }


@pytest.fixture(scope="module")
def api() -> Iterator[client.ApiClient]:
    backend = FakeRayBackend(default_script=JobScript(running_seconds=3.0))
    with LocalControlPlane(crds_dir=CRDS, backend=backend, tls=False) as plane, plane.api_client() as api_client:
        custom = client.CustomObjectsApi(api_client)
        custom.create_cluster_custom_object(*KUEUE, "clusterqueues", cluster_queue("one-job", "3"))
        custom.create_namespaced_custom_object(*KUEUE, "default", "localqueues", local_queue("team-a", "one-job"))
        custom.create_cluster_custom_object(*KUEUE, "clusterqueues", cluster_queue("no-quota", "0"))
        custom.create_namespaced_custom_object(*KUEUE, "default", "localqueues", local_queue("starved", "no-quota"))
        yield api_client


def request(task: str, queue: str, **kwargs: Any) -> RayJobRequest:
    return RayJobRequest(
        RunIdentity("kueue_dag", task, "run-1"),
        queue_name=queue,
        spec_params={"entrypoint": f"python {task}.py", "ray_cluster_spec": SPEC, "shutdown_after_job_finishes": True},
        **kwargs,
    )


def test_two_rayjobs_on_a_queue_with_quota_for_one_run_one_after_the_other(api: client.ApiClient) -> None:
    lines: dict[str, list[tuple[float, str]]] = {"first": [], "second": []}
    outcomes: dict[str, Any] = {}

    def run(task: str) -> None:
        runner = RayJobRunner(
            RayJobLifecycle(RayObjectsClient(api)),
            status_line=lambda line: lines[task].append((time.monotonic(), line)),
        )
        outcomes[task] = runner.run(request(task, "team-a"), timeout=120)

    first = threading.Thread(target=run, args=("first",))
    first.start()
    time.sleep(1.0)  # created in this order: Kueue takes them first come, first served
    second = threading.Thread(target=run, args=("second",))
    second.start()
    first.join(120), second.join(120)

    assert outcomes["first"].succeeded and outcomes["second"].succeeded
    admitted = {
        task: next(t for t, line in seen if "admitted by Kueue LocalQueue 'team-a'" in line)
        for task, seen in lines.items()
    }
    first_done = next(t for t, line in lines["first"] if "deployment=Complete" in line)
    assert admitted["second"] >= first_done - 0.5, "the second RayJob was admitted while the first still held the quota"
    assert any("queued for admission on Kueue LocalQueue 'team-a'" in line for _, line in lines["second"])

    custom = client.CustomObjectsApi(api)
    status = custom.get_cluster_custom_object(*KUEUE, "clusterqueues", "one-job").get("status") or {}
    assert status.get("pendingWorkloads") == 0
    events = client.CoreV1Api(api).list_namespaced_event("default").items
    assert any(e.reason == "Started" and e.message == "Admitted by clusterQueue one-job" for e in events)


def test_a_rayjob_not_admitted_in_time_is_withdrawn(api: client.ApiClient) -> None:
    lines: list[str] = []
    runner = RayJobRunner(RayJobLifecycle(RayObjectsClient(api)), status_line=lines.append)
    with pytest.raises(AdmissionTimeout, match="not admitted by Kueue LocalQueue 'starved' within 3"):
        runner.run(request("starved_task", "starved", admission_timeout=3), timeout=60)
    assert any("queued for admission" in line for line in lines)
    name = request("starved_task", "starved").rayjob_name
    deadline = time.monotonic() + 30
    while RayObjectsClient(api).find(RAYJOB, "default", name) is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert RayObjectsClient(api).find(RAYJOB, "default", name) is None


def test_a_raycluster_on_a_queue_is_created_suspended_and_admitted(api: client.ApiClient) -> None:
    clusters = RayClusterLifecycle(RayObjectsClient(api))
    manifest = RayClusterRequest(
        RunIdentity("kueue_dag", "cluster", "run-1"),
        spec=simple_cluster_spec(image="rayproject/ray:2.60.0"),
        queue_name="team-a",
    ).manifest()
    assert manifest["spec"]["suspend"] is True
    clusters.create_or_attach(manifest)
    seen: list[str] = []
    state = clusters.wait_ready(
        "default", manifest["metadata"]["name"], timeout=60, on_change=lambda s: seen.append(s.describe())
    )
    assert state.is_ready
    assert RayObjectsClient(api).get(RAYCLUSTER, "default", manifest["metadata"]["name"])["spec"]["suspend"] is False
    clusters.delete("default", manifest["metadata"]["name"], wait=True, timeout=60)
