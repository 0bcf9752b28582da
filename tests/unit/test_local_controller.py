"""The local KubeRay controller against KubeRay v1.7.0's semantics: an in-memory API, a fake Ray, a fake clock."""

from __future__ import annotations

import asyncio
import copy
import re
from datetime import UTC
from typing import Any

import pytest

from kuberay_provider.local.controller import Controller, ControllerSettings, FakeClock, InMemoryClusterAPI
from kuberay_provider.local.controller.api import CONFIGMAPS, EVENTS, PODS, RAYCLUSTERS, RAYJOBS, RAYSERVICES, SERVICES
from kuberay_provider.local.controller.kuberay import ENDPOINTS_ANNOTATION
from kuberay_provider.local.controller.raycluster import declared_ray_resources
from kuberay_provider.local.ray_backend import FakeRayBackend, JobScript, RayResources
from kuberay_provider.local.ray_backend.runtime_env import PackagePolicy

NS = "default"
GENERATED = re.compile(r"^sample-[a-z0-9]{5}$")


def cluster_spec(workers: int = 1) -> dict[str, Any]:
    return {
        "rayVersion": "2.60.0",
        "headGroupSpec": {
            "rayStartParams": {},
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "ray-head",
                            "image": "rayproject/ray:2.60.0",
                            "ports": [
                                {"containerPort": 6379, "name": "gcs-server"},
                                {"containerPort": 8265, "name": "dashboard"},
                                {"containerPort": 10001, "name": "client"},
                            ],
                            "resources": {"requests": {"cpu": "1", "memory": "2Gi"}},
                        }
                    ]
                }
            },
        },
        "workerGroupSpecs": [
            {
                "groupName": "small-group",
                "replicas": workers,
                "minReplicas": 0,
                "maxReplicas": 5,
                "rayStartParams": {},
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "ray-worker",
                                "image": "rayproject/ray:2.60.0",
                                "resources": {"requests": {"cpu": "200m"}},
                            }
                        ]
                    }
                },
            }
        ],
    }


def rayjob(name: str = "sample", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"entrypoint": "python -c 'print(1)'", "rayClusterSpec": cluster_spec()}
    body.update(spec)
    return {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": name, "namespace": NS}, "spec": body}


class RecordingAPI(InMemoryClusterAPI):
    """Remembers every (jobDeploymentStatus, jobStatus) the controller wrote for RayJobs."""

    def __init__(self) -> None:
        super().__init__()
        self.transitions: list[tuple[str, str]] = []

    async def replace_status(self, resource, body):  # type: ignore[override]
        if resource is RAYJOBS:
            status = body.get("status") or {}
            self.transitions.append((status.get("jobDeploymentStatus", ""), status.get("jobStatus", "")))
        return await super().replace_status(resource, body)


# The state-machine tests below move a fake clock by hand; they start with a submitter that submits and
# exits at once. The realistic submitter timing (the default) has tests of its own.
INSTANT_SUBMITTER = ControllerSettings(submitter_start_delay_seconds=0, submitter_exit_delay_seconds=0)


class Harness:
    def __init__(self, *, settings: ControllerSettings | None = INSTANT_SUBMITTER) -> None:
        self.clock = FakeClock()
        self.api = RecordingAPI()
        self.api.register(RAYJOBS, RAYCLUSTERS, RAYSERVICES, PODS, SERVICES, CONFIGMAPS, EVENTS)
        self.backend = FakeRayBackend(now=self.clock.epoch)
        self.controller = Controller(self.api, self.backend, clock=self.clock, settings=settings)

    async def settle(self, rounds: int = 8) -> None:
        """Reconcile every object a few times: time only moves when the test advances the clock."""
        for _ in range(rounds):
            for resource in (RAYCLUSTERS, RAYJOBS, RAYSERVICES):
                for obj in await self.api.list(resource):
                    await self.controller.reconcile(resource.kind, NS, obj["metadata"]["name"])

    async def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        await self.settle()

    async def job(self, name: str = "sample") -> dict[str, Any]:
        obj = await self.api.get(RAYJOBS, NS, name)
        assert obj is not None
        return obj

    async def status(self, name: str = "sample") -> dict[str, Any]:
        return (await self.job(name)).get("status") or {}

    async def create(self, resource, body) -> dict[str, Any]:
        return await self.api.create(resource, NS, body)

    async def update_spec(self, name: str, **changes: Any) -> None:
        obj = await self.job(name)
        obj["spec"].update(changes)
        await self.api.replace(RAYJOBS, obj)

    async def clusters(self) -> list[dict[str, Any]]:
        return await self.api.list(RAYCLUSTERS, NS)

    async def event_reasons(self) -> list[str]:
        return [e["reason"] for e in await self.api.list(EVENTS, NS)]


@pytest.fixture
def h() -> Harness:
    return Harness()


async def test_k8s_job_mode_happy_path(h: Harness) -> None:
    await h.create(RAYJOBS, rayjob())
    await h.settle()
    status = await h.status()
    assert status["jobDeploymentStatus"] == "Running"
    assert GENERATED.match(status["rayClusterName"]) and GENERATED.match(status["jobId"])
    assert status["dashboardURL"] == f"{status['rayClusterName']}-head-svc.default.svc.cluster.local:8265"
    assert ("ray.io/rayjob-finalizer") in (await h.job())["metadata"]["finalizers"]

    [cluster] = await h.clusters()
    owner = cluster["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("RayJob", "sample", True)
    assert cluster["metadata"]["labels"]["ray.io/originated-from-crd"] == "RayJob"
    assert cluster["metadata"]["labels"]["ray.io/job-submission-mode"] == "K8sJobMode"
    job_svc = await h.api.get(SERVICES, NS, "sample-head-svc")
    assert job_svc is not None and job_svc["spec"]["selector"]["ray.io/cluster"] == cluster["metadata"]["name"]
    assert '"dashboard": "http://127.0.0.1:18265"' in job_svc["metadata"]["annotations"][ENDPOINTS_ANNOTATION]
    assert h.backend.jobs[status["jobId"]].request.entrypoint == "python -c 'print(1)'"

    await h.advance(2)
    status = await h.status()
    assert (status["jobDeploymentStatus"], status["jobStatus"]) == ("Complete", "SUCCEEDED")
    assert (status["succeeded"], status["failed"]) == (1, 0)
    assert status["endTime"] and status["startTime"] and status["rayJobInfo"]["endTime"]
    assert status["rayClusterStatus"]["state"] == "ready"
    assert "reason" not in status
    assert h.api.transitions == [
        ("Initializing", ""),
        ("Running", ""),
        ("Running", "RUNNING"),
        ("Complete", "SUCCEEDED"),
    ]
    assert "CreatedRayCluster" in await h.event_reasons()
    # No deletion policy: the cluster stays.
    assert len(await h.clusters()) == 1


async def test_app_failure_is_failed_with_app_failed(h: Harness) -> None:
    h.backend.default_script = JobScript(
        final_status="FAILED", message="Job entrypoint command failed with exit code 1"
    )
    await h.create(RAYJOBS, rayjob())
    await h.settle()
    await h.advance(2)
    status = await h.status()
    assert (status["jobDeploymentStatus"], status["jobStatus"], status["reason"]) == ("Failed", "FAILED", "AppFailed")
    assert status["message"] == "Job entrypoint command failed with exit code 1"
    assert (status["failed"], status["succeeded"]) == (1, 0)


async def test_backoff_limit_retries_on_a_new_cluster(h: Harness) -> None:
    h.backend.default_script = JobScript(final_status="FAILED")
    await h.create(RAYJOBS, rayjob(backoffLimit=1))
    await h.settle()
    first = await h.status()
    await h.advance(2)
    second = await h.status()
    assert ("Retrying", "FAILED") in h.api.transitions
    assert second["rayClusterName"] != first["rayClusterName"] and second["jobId"] != first["jobId"]
    assert [c["metadata"]["name"] for c in await h.clusters()] == [second["rayClusterName"]]
    await h.advance(2)
    final = await h.status()
    assert (final["jobDeploymentStatus"], final["failed"], final["succeeded"]) == ("Failed", 2, 0)


async def test_http_mode_submits_from_the_controller(h: Harness) -> None:
    await h.create(
        RAYJOBS,
        rayjob(
            submissionMode="HTTPMode",
            jobId="my-id",
            runtimeEnvYAML="env_vars:\n  A: b\n",
            entrypointNumCpus=0.5,
            entrypointResources='{"r": 1}',
            metadata={"k": "v"},
        ),
    )
    await h.settle()
    request = h.backend.jobs["my-id"].request
    assert (request.runtime_env, request.num_cpus, request.resources, request.metadata) == (
        {"env_vars": {"A": "b"}},
        0.5,
        {"r": 1},
        {"k": "v"},
    )
    await h.advance(2)
    assert (await h.status())["jobDeploymentStatus"] == "Complete"


async def test_refused_submission_is_submission_failed(h: Harness) -> None:
    h.backend.default_script = JobScript(reject_submission="runtime_env invalid")
    await h.create(RAYJOBS, rayjob(backoffLimit=0))
    await h.settle()
    status = await h.status()
    assert (status["jobDeploymentStatus"], status["reason"]) == ("Failed", "SubmissionFailed")
    assert "runtime_env invalid" in status["message"]
    attempts = [c for c in h.backend.calls if c[0] == "submit_job"]
    assert len(attempts) == 3  # the submitter Job's default backoffLimit of 2


async def test_active_deadline_fails_and_is_not_retried(h: Harness) -> None:
    h.backend.default_script = JobScript(final_status=None)
    await h.create(RAYJOBS, rayjob(activeDeadlineSeconds=5, backoffLimit=2))
    await h.settle()
    await h.advance(6)
    status = await h.status()
    assert (status["jobDeploymentStatus"], status["reason"]) == ("Failed", "DeadlineExceeded")
    assert "activeDeadlineSeconds" in status["message"]


async def test_interactive_mode_waits_for_spec_job_id(h: Harness) -> None:
    await h.create(RAYJOBS, rayjob(submissionMode="InteractiveMode"))
    await h.settle()
    status = await h.status()
    assert status["jobDeploymentStatus"] == "Waiting" and "jobId" not in status
    assert not h.backend.jobs
    from kuberay_provider.local.ray_backend import JobRequest

    await h.backend.submit_job(NS, status["rayClusterName"], JobRequest("mine", "python x.py"))
    await h.update_spec("sample", jobId="mine")
    await h.settle()
    status = await h.status()
    assert (status["jobDeploymentStatus"], status["jobId"]) == ("Running", "mine")
    await h.advance(2)
    assert (await h.status())["jobDeploymentStatus"] == "Complete"


async def test_pre_running_deadline_in_waiting(h: Harness) -> None:
    await h.create(RAYJOBS, rayjob(submissionMode="InteractiveMode", preRunningDeadlineSeconds=10))
    await h.settle()
    await h.advance(11)
    status = await h.status()
    assert (status["jobDeploymentStatus"], status["reason"]) == ("Failed", "PreRunningDeadlineExceeded")


@pytest.mark.parametrize(
    ("spec", "reason", "text"),
    [
        (
            {"suspend": True},
            "InvalidRayJobSpec",
            "shutdownAfterJobFinishes set to false is not allowed to be suspended",
        ),
        ({"rayClusterSpec": None}, "InvalidRayJobSpec", "one of RayClusterSpec or ClusterSelector must be set"),
        (
            {"submissionMode": "InteractiveMode", "backoffLimit": 1},
            "InvalidRayJobSpec",
            "BackoffLimit is incompatible with InteractiveMode",
        ),
    ],
)
async def test_validation_failed(h: Harness, spec: dict[str, Any], reason: str, text: str) -> None:
    body = rayjob(**spec)
    body["spec"] = {key: value for key, value in body["spec"].items() if value is not None}
    await h.create(RAYJOBS, body)
    await h.settle()
    status = await h.status()
    assert (status["jobDeploymentStatus"], status["reason"]) == ("ValidationFailed", "ValidationFailed")
    assert text in status["message"]
    assert reason in await h.event_reasons()
    assert not await h.clusters()


async def test_long_name_fails_metadata_validation(h: Harness) -> None:
    await h.create(RAYJOBS, rayjob(name="x" * 48))
    await h.settle()
    assert (await h.status("x" * 48))["jobDeploymentStatus"] == "ValidationFailed"


async def test_suspend_deletes_the_cluster_and_resume_starts_over(h: Harness) -> None:
    h.backend.default_script = JobScript(final_status=None)
    await h.create(RAYJOBS, rayjob(shutdownAfterJobFinishes=True))
    await h.settle()
    before = await h.status()
    await h.update_spec("sample", suspend=True)
    await h.settle()
    status = await h.status()
    assert status["jobDeploymentStatus"] == "Suspended"
    assert "rayClusterName" not in status and "jobId" not in status and "jobStatus" not in status
    assert ("Suspending", "RUNNING") in h.api.transitions or ("Suspending", "PENDING") in h.api.transitions
    assert not await h.clusters()
    assert h.backend.jobs[before["jobId"]].stopped_at is not None  # deleting the cluster stopped the job
    await h.update_spec("sample", suspend=False)
    await h.settle()
    status = await h.status()
    assert status["jobDeploymentStatus"] == "Running" and status["rayClusterName"] != before["rayClusterName"]


async def ready_cluster(h: Harness, name: str = "shared") -> dict[str, Any]:
    body = {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": name, "namespace": NS},
        "spec": cluster_spec(),
    }
    await h.create(RAYCLUSTERS, body)
    await h.settle(2)
    cluster = await h.api.get(RAYCLUSTERS, NS, name)
    assert cluster is not None and cluster["status"]["state"] == "ready"
    return cluster


async def test_cluster_selector_runs_on_the_existing_cluster_and_keeps_it(h: Harness) -> None:
    await ready_cluster(h)
    spec = {"clusterSelector": {"ray.io/cluster": "shared"}, "rayClusterSpec": None, "shutdownAfterJobFinishes": True}
    body = rayjob(**spec)
    del body["spec"]["rayClusterSpec"]
    await h.create(RAYJOBS, body)
    await h.settle()
    status = await h.status()
    assert (status["rayClusterName"], status["jobDeploymentStatus"]) == ("shared", "Running")
    assert await h.api.get(SERVICES, NS, "sample-head-svc") is None
    await h.advance(2)
    assert (await h.status())["jobDeploymentStatus"] == "Complete"
    assert [c["metadata"]["name"] for c in await h.clusters()] == ["shared"]


async def test_cluster_selector_without_the_cluster_waits_with_an_event(h: Harness) -> None:
    body = rayjob(clusterSelector={"ray.io/cluster": "missing"})
    del body["spec"]["rayClusterSpec"]
    await h.create(RAYJOBS, body)
    await h.settle()
    assert (await h.status())["jobDeploymentStatus"] == "Initializing"
    assert "RayClusterNotFound" in await h.event_reasons()
    assert not await h.clusters()


async def test_shutdown_after_job_finishes_waits_for_the_ttl(h: Harness) -> None:
    await h.create(RAYJOBS, rayjob(shutdownAfterJobFinishes=True, ttlSecondsAfterFinished=10))
    await h.settle()
    await h.advance(2)
    assert (await h.status())["jobDeploymentStatus"] == "Complete"
    assert len(await h.clusters()) == 1
    await h.advance(11)
    assert not await h.clusters()
    assert not await h.api.list(PODS, NS)  # cascade
    assert "DeletedRayCluster" in await h.event_reasons()


def rule(policy: str, ttl: int, **condition: str) -> dict[str, Any]:
    return {"policy": policy, "condition": {"ttlSeconds": ttl, **condition}}


async def test_deletion_rules_run_in_ttl_order(h: Harness) -> None:
    rules = [
        rule("DeleteWorkers", 0, jobStatus="SUCCEEDED"),
        rule("DeleteCluster", 10, jobStatus="SUCCEEDED"),
        rule("DeleteSelf", 20, jobStatus="SUCCEEDED"),
    ]
    await h.create(RAYJOBS, rayjob(deletionStrategy={"deletionRules": rules}))
    await h.settle()
    await h.advance(2)
    [cluster] = await h.clusters()
    assert all(g["suspend"] is True for g in cluster["spec"]["workerGroupSpecs"])
    assert cluster["status"]["desiredWorkerReplicas"] == 0
    workers = await h.api.list(PODS, NS, {"ray.io/node-type": "worker"})
    assert workers == []
    await h.advance(10)
    assert not await h.clusters()
    assert await h.api.get(RAYJOBS, NS, "sample") is not None
    await h.advance(10)
    assert await h.api.get(RAYJOBS, NS, "sample") is None


async def test_deletion_rules_most_impactful_overdue_rule_first(h: Harness) -> None:
    rules = [
        rule("DeleteWorkers", 0, jobDeploymentStatus="Complete"),
        rule("DeleteSelf", 5, jobDeploymentStatus="Complete"),
    ]
    h.backend.default_script = JobScript(running_seconds=1)
    await h.create(RAYJOBS, rayjob(deletionStrategy={"deletionRules": rules}))
    await h.settle()
    h.clock.advance(2)
    await h.controller.reconcile("RayJob", NS, "sample")  # -> Complete
    h.clock.advance(10)  # both overdue now
    await h.controller.reconcile("RayJob", NS, "sample")
    job = await h.api.get(RAYJOBS, NS, "sample")
    assert job is None or job["metadata"].get("deletionTimestamp")
    [cluster] = await h.clusters()  # DeleteSelf ran, not DeleteWorkers
    assert not any(g.get("suspend") for g in cluster["spec"]["workerGroupSpecs"])


async def test_legacy_on_success_and_on_failure(h: Harness) -> None:
    strategy = {"onSuccess": {"policy": "DeleteCluster"}, "onFailure": {"policy": "DeleteNone"}}
    await h.create(RAYJOBS, rayjob(deletionStrategy=strategy))
    h.backend.script_entrypoint("fail", JobScript(final_status="FAILED"))
    await h.create(RAYJOBS, rayjob(name="bad", entrypoint="python fail.py", deletionStrategy=strategy))
    await h.settle()
    await h.advance(2)
    owners = [c["metadata"]["ownerReferences"][0]["name"] for c in await h.clusters()]
    assert owners == ["bad"]


async def test_deleting_a_running_rayjob_stops_its_ray_job(h: Harness) -> None:
    h.backend.default_script = JobScript(final_status=None)
    await h.create(RAYJOBS, rayjob())
    await h.settle()
    job_id = (await h.status())["jobId"]
    await h.api.delete(RAYJOBS, NS, "sample")
    await h.settle()
    assert any(call[0] == "stop_job" and call[2] == job_id for call in h.backend.calls)
    assert await h.api.get(RAYJOBS, NS, "sample") is None
    assert not await h.clusters()  # ownerReference cascade


async def test_job_status_check_timeout(h: Harness) -> None:
    h.backend.default_script = JobScript(final_status=None)
    await h.create(RAYJOBS, rayjob(backoffLimit=3))
    await h.settle()
    h.backend.job_info_error = "connection refused"
    await h.settle()
    assert "jobStatusCheckFailureStartTime" in await h.status()
    await h.advance(301)
    status = await h.status()
    assert (status["jobDeploymentStatus"], status["reason"]) == ("Failed", "JobStatusCheckTimeoutExceeded")


async def test_transition_grace_period_when_the_submitter_lingers() -> None:
    h = Harness(settings=ControllerSettings(submitter_start_delay_seconds=0, submitter_exit_delay_seconds=10_000))
    await h.create(RAYJOBS, rayjob())
    await h.settle()
    await h.advance(2)
    status = await h.status()
    assert (status["jobDeploymentStatus"], status["jobStatus"]) == ("Running", "SUCCEEDED")
    await h.advance(301)
    status = await h.status()
    assert (status["jobDeploymentStatus"], status["reason"]) == (
        "Complete",
        "JobDeploymentStatusTransitionGracePeriodExceeded",
    )


async def test_sidecar_mode_adds_the_submitter_container(h: Harness) -> None:
    await h.create(RAYJOBS, rayjob(submissionMode="SidecarMode"))
    await h.settle()
    [cluster] = await h.clusters()
    containers = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["ray-head", "ray-job-submitter"]
    assert cluster["metadata"]["annotations"]["ray.io/disable-provisioned-head-restart"] == "true"
    await h.advance(2)
    assert (await h.status())["jobDeploymentStatus"] == "Complete"


async def test_raycluster_pods_services_and_status(h: Harness) -> None:
    cluster = await ready_cluster(h)
    status = cluster["status"]
    assert (status["desiredWorkerReplicas"], status["availableWorkerReplicas"], status["readyWorkerReplicas"]) == (
        1,
        1,
        1,
    )
    assert (status["minWorkerReplicas"], status["maxWorkerReplicas"]) == (0, 5)
    assert (status["desiredCPU"], status["desiredMemory"]) == ("1200m", "2Gi")
    assert status["endpoints"] == {"client": "10001", "dashboard": "8265", "gcs-server": "6379", "metrics": "8080"}
    assert status["head"]["serviceName"] == "shared-head-svc" and status["head"]["podIP"] == "127.0.0.1"
    conditions = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert conditions["HeadPodReady"] == ("True", "HeadPodRunningAndReady")
    assert conditions["RayClusterProvisioned"] == ("True", "AllPodRunningAndReadyFirstTime")
    head = (await h.api.list(PODS, NS, {"ray.io/node-type": "head"}))[0]
    labels = head["metadata"]["labels"]
    assert labels["ray.io/group"] == "headgroup" and labels["ray.io/is-ray-node"] == "yes"
    assert labels["app.kubernetes.io/created-by"] == "kuberay-operator"
    assert head["metadata"]["ownerReferences"][0]["kind"] == "RayCluster"
    assert head["status"]["phase"] == "Running"
    service = await h.api.get(SERVICES, NS, "shared-head-svc")
    assert service is not None and service["spec"]["clusterIP"] == "None"
    annotation = service["metadata"]["annotations"][ENDPOINTS_ANNOTATION]
    assert '"8265": "http://127.0.0.1:18265"' in annotation and '"dashboard"' in annotation


async def test_raycluster_waits_for_its_configmap(h: Harness) -> None:
    spec = cluster_spec(workers=0)
    template = spec["headGroupSpec"]["template"]["spec"]
    template["volumes"] = [
        {"name": "code", "configMap": {"name": "code", "items": [{"key": "main.py", "path": "main.py"}]}}
    ]
    template["containers"][0]["volumeMounts"] = [{"name": "code", "mountPath": "/home/ray/samples"}]
    await h.create(
        RAYCLUSTERS,
        {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": "c", "namespace": NS}, "spec": spec},
    )
    await h.settle(2)
    cluster = await h.api.get(RAYCLUSTERS, NS, "c")
    assert cluster and cluster["status"].get("state") != "ready"
    await h.create(CONFIGMAPS, {"metadata": {"name": "code"}, "data": {"main.py": "print(1)"}})
    await h.settle(2)
    cluster = await h.api.get(RAYCLUSTERS, NS, "c")
    assert cluster and cluster["status"]["state"] == "ready"
    [mount] = h.backend.clusters[f"{NS}/c"].config_map_mounts
    assert (mount.mount_path, dict(mount.files)) == ("/home/ray/samples", {"main.py": "print(1)"})


async def test_ray_version_mismatch_is_a_warning_event(h: Harness) -> None:
    spec = cluster_spec()
    spec["rayVersion"] = "2.52.0"
    await h.create(
        RAYCLUSTERS,
        {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": "old", "namespace": NS}, "spec": spec},
    )
    await h.settle(2)
    assert (await h.event_reasons()).count("RayVersionMismatch") == 1
    assert (await h.api.get(RAYCLUSTERS, NS, "old"))["status"]["state"] == "ready"  # type: ignore[index]


def serve_cluster_spec() -> dict[str, Any]:
    """A RayService's cluster: its head declares ports, so one must be Serve's (BuildServeService)."""
    spec = cluster_spec()
    spec["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"].append({"containerPort": 8000, "name": "serve"})
    return spec


async def test_rayservice_deploys_serve_config_and_becomes_ready(h: Harness) -> None:
    serve = "applications:\n- name: app1\n  import_path: m:app\n  deployments:\n  - name: D\n"
    body = {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": "svc", "namespace": NS},
        "spec": {"serveConfigV2": serve, "rayClusterConfig": serve_cluster_spec()},
    }
    await h.create(RAYSERVICES, body)
    await h.settle()
    status = (await h.api.get(RAYSERVICES, NS, "svc"))["status"]  # type: ignore[index]
    assert status["serviceStatus"] == "Running"
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    active = status["activeServiceStatus"]
    assert active["applicationStatuses"]["app1"]["serveDeploymentStatuses"]["D"]["status"] == "HEALTHY"
    assert await h.api.get(SERVICES, NS, "svc-serve-svc") is not None
    assert await h.api.get(SERVICES, NS, "svc-head-svc") is not None


async def test_rayservice_upgrades_to_a_new_cluster_when_the_cluster_config_changes(h: Harness) -> None:
    serve = "applications:\n- name: app1\n  import_path: m:app\n  deployments:\n  - name: D\n"
    body = {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": "svc", "namespace": NS},
        "spec": {"serveConfigV2": serve, "rayClusterConfig": serve_cluster_spec(), "rayClusterDeletionDelaySeconds": 0},
    }
    await h.create(RAYSERVICES, body)
    await h.settle()

    async def service() -> dict[str, Any]:
        return (await h.api.get(RAYSERVICES, NS, "svc")) or {}

    def condition(obj: dict[str, Any], kind: str) -> str:
        return next(c["status"] for c in obj["status"]["conditions"] if c["type"] == kind)

    first = (await service())["status"]["activeServiceStatus"]["rayClusterName"]
    # Scaling workers is no upgrade: the same cluster goes on serving.
    obj = await service()
    obj["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["replicas"] = 2
    await h.api.replace(RAYSERVICES, obj)
    await h.settle()
    assert (await service())["status"]["activeServiceStatus"]["rayClusterName"] == first
    # A changed cluster config is: a pending cluster named first (no active applications meanwhile)...
    obj = await service()
    obj["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"] = {"num-cpus": "1"}
    await h.api.replace(RAYSERVICES, obj)
    await h.controller.reconcile("RayService", NS, "svc")
    during = await service()
    assert condition(during, "UpgradeInProgress") == "True" and condition(during, "Ready") == "True"
    assert "applicationStatuses" not in during["status"]["activeServiceStatus"]
    pending = during["status"]["pendingServiceStatus"]["rayClusterName"]
    assert pending != first and [c["metadata"]["name"] for c in await h.clusters()] == [first]
    # ...created by the next pass; both exist while it comes up...
    await h.controller.reconcile("RayService", NS, "svc")
    assert {c["metadata"]["name"] for c in await h.clusters()} == {first, pending}
    # ...then it serves and the Services point at it; the old cluster goes after the deletion delay.
    await h.settle()
    done = await service()
    assert done["status"]["activeServiceStatus"]["rayClusterName"] == pending
    assert "rayClusterName" not in done["status"]["pendingServiceStatus"]
    assert condition(done, "UpgradeInProgress") == "False" and condition(done, "Ready") == "True"
    await h.advance(1)
    assert [c["metadata"]["name"] for c in await h.clusters()] == [pending]
    for service_name in ("svc-serve-svc", "svc-head-svc"):
        assert (await h.api.get(SERVICES, NS, service_name))["spec"]["selector"]["ray.io/cluster"] == pending  # type: ignore[index]


async def test_run_controller_loop_end_to_end() -> None:
    from kuberay_provider.local.controller import run_cluster_api_controller
    from kuberay_provider.local.controller.rayjob_model import RayJobSettings

    api = InMemoryClusterAPI()
    backend = FakeRayBackend(default_script=JobScript(running_seconds=0.2))
    stop = asyncio.Event()
    settings = ControllerSettings(rayjob=RayJobSettings(requeue_seconds=0.05), submitter_start_delay_seconds=0.5)
    task = asyncio.create_task(run_cluster_api_controller(api, backend, stop, settings=settings, resync_seconds=1))
    await api.create(RAYJOBS, NS, rayjob(shutdownAfterJobFinishes=True))
    for _ in range(400):
        job = await api.get(RAYJOBS, NS, "sample")
        if (
            job
            and (job.get("status") or {}).get("jobDeploymentStatus") == "Complete"
            and not await api.list(RAYCLUSTERS)
        ):
            break
        await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert (job["status"]["jobDeploymentStatus"], job["status"]["jobStatus"]) == ("Complete", "SUCCEEDED")  # type: ignore[index]
    assert not await api.list(RAYCLUSTERS)


async def test_k8s_job_mode_is_running_before_the_submitter_has_submitted() -> None:
    """KubeRay writes Running in the pass that creates the submitter Job; the Ray job exists only once the
    submitter Pod has started and submitted it (BEHAVIOUR.md 2.1). Until then Ray answers 404."""
    h = Harness(settings=ControllerSettings())
    delay = ControllerSettings().submitter_start_delay_seconds
    assert delay >= 1  # realistic by default, never zero
    await h.create(RAYJOBS, rayjob())
    await h.settle()
    status = await h.status()
    assert status["jobDeploymentStatus"] == "Running" and "jobStatus" not in status
    assert status["jobId"] not in h.backend.jobs  # the Jobs API would answer 404
    await h.advance(delay - 0.5)
    assert status["jobId"] not in h.backend.jobs
    await h.advance(0.5)
    assert status["jobId"] in h.backend.jobs
    assert (await h.status())["jobStatus"] in ("PENDING", "RUNNING", "SUCCEEDED")


def test_pure_reconcile_of_a_new_rayjob() -> None:
    from datetime import datetime

    from kuberay_provider.local.controller import RayJobObservation, reconcile_rayjob
    from kuberay_provider.local.controller.actions import AddFinalizer

    obj = copy.deepcopy(rayjob(jobId="fixed"))
    obj["metadata"]["uid"] = "u1"
    now = datetime(2025, 1, 1, tzinfo=UTC)
    outcome = reconcile_rayjob(RayJobObservation(rayjob=obj, now=now))
    assert outcome.actions == [AddFinalizer("ray.io/rayjob-finalizer")]
    assert outcome.status is not None
    assert (outcome.status["jobDeploymentStatus"], outcome.status["jobId"], outcome.status["startTime"]) == (
        "Initializing",
        "fixed",
        "2025-01-01T00:00:00Z",
    )
    assert (outcome.status["failed"], outcome.status["succeeded"]) == (0, 0)


async def test_kuberay_sample_rayjob_runs_with_its_configmap(h: Harness) -> None:
    import pathlib

    import yaml

    sample = pathlib.Path(__file__).resolve().parents[3] / "shared/kuberay/samples/ray-job.sample.yaml"
    docs = [d for d in yaml.safe_load_all(sample.read_text()) if d]
    for doc in sorted(docs, key=lambda d: d["kind"] != "ConfigMap"):
        await h.create(CONFIGMAPS if doc["kind"] == "ConfigMap" else RAYJOBS, doc)
    await h.settle()
    status = await h.status("rayjob-sample")
    assert status["jobDeploymentStatus"] == "Running"
    [mount] = h.backend.clusters[f"{NS}/{status['rayClusterName']}"].config_map_mounts
    assert mount.mount_path == "/home/ray/samples" and "sample_code.py" in mount.files
    request = h.backend.jobs[status["jobId"]].request
    assert request.entrypoint == "python /home/ray/samples/sample_code.py"
    assert request.runtime_env == {
        "pip": ["requests==2.26.0", "pendulum==2.1.2"],
        "env_vars": {"counter_name": "test_counter"},
    }
    assert "RayVersionMismatch" in await h.event_reasons()  # the sample asks for 2.52.0
    await h.advance(2)
    assert (await h.status("rayjob-sample"))["jobDeploymentStatus"] == "Complete"


async def test_runtime_env_package_notices_become_events_on_the_rayjob(h: Harness) -> None:
    h.backend.package_policy = PackagePolicy.SKIP_SATISFIED
    await h.create(RAYJOBS, rayjob(runtimeEnvYAML="pip:\n  - pyyaml\n  - surely-not-installed-here==0.1\n"))
    await h.settle()
    request = h.backend.jobs[(await h.status())["jobId"]].request
    assert request.runtime_env == {"pip": ["surely-not-installed-here==0.1"]}
    notices = {
        e["type"]: e["message"] for e in await h.api.list(EVENTS, NS) if e["reason"] == "LocalRuntimeEnvPackages"
    }
    assert "not installed: pyyaml" in notices["Warning"]
    assert "Ray installs surely-not-installed-here==0.1" in notices["Normal"]


def test_declared_ray_resources_from_ray_start_params() -> None:
    spec = cluster_spec(workers=2)
    assert declared_ray_resources(spec) is None  # CPUs only: the shared Ray serves it
    spec["headGroupSpec"]["rayStartParams"] = {
        "num-cpus": "3",
        "num-gpus": "2",
        "resources": '"{\\"resource1\\": 2, \\"resource2\\": 3}"',
    }
    spec["workerGroupSpecs"][0]["rayStartParams"] = {"resources": '{"resource1": 1}'}
    # Head: 3 CPUs, 2 GPUs; each worker: 1 CPU (its 200m request, rounded up) and resource1 1.
    assert declared_ray_resources(spec) == RayResources(num_cpus=5, num_gpus=2, custom={"resource1": 4, "resource2": 3})
