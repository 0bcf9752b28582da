"""The ``kuberay`` worker without a cluster: the work pool's template, the RayJob a flow run gets, what a
second submission does, and the first-run setting of Prefect's temporary server."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from kuberay_provider.core.errors import ConfigurationError
from kuberay_provider.core.lifecycle import NameTakenError
from kuberay_provider.core.naming import LABEL_RUN_KEY
from kuberay_provider.core.spec import simple_cluster_spec

NO_API = object()  # templates without block references or Prefect variables never call the client


def configuration(flow_run_id: uuid.UUID | None = None, **values: Any) -> Any:
    """A job configuration as the worker builds it for one flow run: the pool's default template, the
    deployment's ``values`` (no block references, so no Prefect API is needed)."""
    from prefect.client.schemas.objects import Flow, FlowRun

    from kuberay_provider.prefect.worker import KubeRayWorker
    from kuberay_provider.prefect.worker_config import KubeRayWorkerJobConfiguration

    template = KubeRayWorker.get_default_base_job_template()
    if "rayjob_manifest" in values:  # as a user editing the pool's template would
        template["job_configuration"]["rayjob_manifest"] = values.pop("rayjob_manifest")
    config = asyncio.run(KubeRayWorkerJobConfiguration.from_template_and_values(template, values, client=NO_API))
    flow_run = FlowRun(id=flow_run_id or uuid.uuid4(), flow_id=uuid.uuid4(), name="crimson-panda")
    config.prepare_for_flow_run(flow_run, flow=Flow(id=flow_run.flow_id, name="nightly scoring"))
    return config


def test_the_work_pool_template_is_a_rayjob_and_the_variables_a_deployment_sets() -> None:
    from kuberay_provider.prefect.worker import KubeRayWorker

    template = KubeRayWorker.get_default_base_job_template()
    assert template["job_configuration"]["rayjob_manifest"]["apiVersion"] == "ray.io/v1"
    assert {
        "image",
        "namespace",
        "ray_cluster_spec",
        "cluster_selector",
        "runtime_env",
        "env",
        "cleanup",
        "queue_name",
        "cluster_config",
        "command",
    } <= set(template["variables"]["properties"])
    assert KubeRayWorker.type == "kuberay"


def test_a_flow_run_gets_one_rayjob_named_after_it_running_prefects_engine_as_the_ray_driver() -> None:
    flow_run_id = uuid.uuid4()
    config = configuration(
        flow_run_id, image="my-registry/flows:1", env={"TEAM": "ml"}, runtime_env={"pip": ["polars"]}
    )
    request = config.rayjob_request(config.rayjob_block())
    manifest = request.manifest()
    assert (
        request.rayjob_name
        == configuration(flow_run_id, image="other:2").rayjob_request(config.rayjob_block()).rayjob_name
    )
    assert (
        request.rayjob_name
        != configuration(image="my-registry/flows:1").rayjob_request(config.rayjob_block()).rayjob_name
    )
    assert request.rayjob_name.startswith("flow-run-nightly-scoring-")
    labels = manifest["metadata"]["labels"]
    assert labels["prefect.io/flow-run-id"] == str(flow_run_id) and labels["kuberay-provider.io/owner"] == "flow-run"
    assert labels[LABEL_RUN_KEY] == request.identity.key
    spec = manifest["spec"]
    assert spec["entrypoint"] == "prefect flow-run execute"
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert runtime_env["pip"] == ["polars"] and runtime_env["env_vars"]["TEAM"] == "ml"
    assert runtime_env["env_vars"]["PREFECT__FLOW_RUN_ID"] == str(flow_run_id)
    assert (
        spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["image"] == "my-registry/flows:1"
    )
    assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] == 60


def test_image_goes_into_every_ray_container_of_the_given_cluster() -> None:
    cluster = simple_cluster_spec(image="rayproject/ray:2.60.0", workers=1)
    spec = configuration(image="mine:1", ray_cluster_spec=cluster).cluster_spec()
    images = [
        spec["headGroupSpec"]["template"]["spec"]["containers"][0]["image"],
        spec["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["image"],
    ]
    assert (
        images == ["mine:1", "mine:1"]
        and cluster["headGroupSpec"]["template"]["spec"]["containers"][0]["image"] == "rayproject/ray:2.60.0"
    )
    assert configuration(ray_cluster_spec=cluster).cluster_spec() == cluster


def test_an_existing_cluster_takes_no_cleanup_and_no_own_cluster() -> None:
    config = configuration(cluster_selector="shared")
    spec = config.rayjob_request(config.rayjob_block()).manifest()["spec"]
    assert spec["clusterSelector"] == {"ray.io/cluster": "shared"} and "rayClusterSpec" not in spec
    assert "shutdownAfterJobFinishes" not in spec
    with pytest.raises(ConfigurationError, match="not both"):
        configuration(cluster_selector="shared", ray_cluster_spec=simple_cluster_spec(image="x")).rayjob_block()


def test_a_rayjob_without_a_cluster_says_what_to_set() -> None:
    with pytest.raises(ConfigurationError, match="set the job variable image"):
        configuration().rayjob_block()


def test_a_template_that_sets_the_cleanup_fields_itself_keeps_them() -> None:
    manifest = {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {},
        "spec": {"shutdownAfterJobFinishes": False},
    }
    config = configuration(image="x:1", rayjob_manifest=manifest)
    assert config.effective_cleanup() is None
    assert config.rayjob_request(config.rayjob_block()).manifest()["spec"]["shutdownAfterJobFinishes"] is False


def test_the_workers_server_settings_stay_out_of_the_rayjob_and_secrets_are_flagged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect.settings import PREFECT_API_KEY, PREFECT_SERVER_DATABASE_CONNECTION_URL, temporary_settings

    with temporary_settings(
        {
            PREFECT_SERVER_DATABASE_CONNECTION_URL: "postgresql+asyncpg://u:hunter2@db/prefect",
            PREFECT_API_KEY: "pnu_secret",
        }
    ):
        config = configuration(image="x:1", env={"PREFECT_SERVER_LOGGING_LEVEL": "DEBUG"})
        kept_out = configuration(
            image="x:1", env={"PREFECT_API_KEY": None}
        )  # as the docs say: the head gets it from a Secret
    assert "PREFECT_API_KEY" not in kept_out.merged_runtime_env()["env_vars"] and kept_out.sensitive_env() == []
    env = config.merged_runtime_env()["env_vars"]
    assert "PREFECT_SERVER_DATABASE_CONNECTION_URL" not in env and env["PREFECT_SERVER_LOGGING_LEVEL"] == "DEBUG"
    assert config.sensitive_env() == ["PREFECT_API_KEY"]
    assert (
        "hunter2" not in repr(config)
        and "hunter2" not in config.rayjob_request(config.rayjob_block()).manifest()["spec"]["runtimeEnvYAML"]
    )


def test_labels_become_valid_kubernetes_labels() -> None:
    from kuberay_provider.prefect.worker_config import label_key

    config = configuration(image="x:1", labels={"team name": "ML & data", "example.com/tier": "gold"})
    labels = config.k8s_labels()
    assert labels["example.com/tier"] == "gold" and labels["prefect.io/flow-name"].startswith("nightly_scoring-")
    assert label_key("team name") == "team-name" and labels["team-name"].startswith("ML")


@dataclass
class FakeKube:
    objects: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)

    def find(self, kind: Any, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((namespace, name))


@dataclass
class FakeLifecycle:
    kube: FakeKube

    def delete_and_wait(self, namespace: str, name: str) -> None:
        self.kube.deleted.append(name)
        self.kube.objects.pop((namespace, name), None)


@dataclass
class FakeRunner:
    lifecycle: FakeLifecycle
    launched: list[str] = field(default_factory=list)

    @property
    def runner(self) -> FakeRunner:
        return self

    async def launch(self, request: Any) -> None:
        self.launched.append(request.rayjob_name)


def rayjob(request: Any, status: dict[str, str], key: str | None = None) -> dict[str, Any]:
    return {
        "metadata": {
            "name": request.rayjob_name,
            "namespace": "default",
            "labels": {LABEL_RUN_KEY: key or request.identity.key},
        },
        "status": status,
    }


def test_a_second_submission_reattaches_to_a_running_rayjob_and_replaces_one_that_ended() -> None:
    from kuberay_provider.prefect.worker import launch_or_reattach

    config = configuration(image="x:1")
    request = config.rayjob_request(config.rayjob_block())
    kube = FakeKube()
    runner = FakeRunner(FakeLifecycle(kube))
    said: list[str] = []
    asyncio.run(launch_or_reattach(runner, request, said.append))  # type: ignore[arg-type]
    assert runner.launched == [request.rayjob_name]
    kube.objects[("default", request.rayjob_name)] = rayjob(
        request, {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}
    )
    asyncio.run(launch_or_reattach(runner, request, said.append))  # type: ignore[arg-type]
    assert runner.launched == [request.rayjob_name] and "Re-attached to RayJob" in said[-1]
    kube.objects[("default", request.rayjob_name)] = rayjob(
        request, {"jobDeploymentStatus": "Failed", "jobStatus": "FAILED"}
    )
    asyncio.run(launch_or_reattach(runner, request, said.append))  # type: ignore[arg-type]
    assert kube.deleted == [request.rayjob_name] and runner.launched == [request.rayjob_name] * 2
    kube.objects[("default", request.rayjob_name)] = rayjob(
        request, {"jobDeploymentStatus": "Running"}, key="someone-else"
    )
    with pytest.raises(NameTakenError, match="not created for this flow run"):
        asyncio.run(launch_or_reattach(runner, request, said.append))  # type: ignore[arg-type]


def test_the_states_that_mean_the_flow_reported_or_is_cancelled() -> None:
    from prefect.states import AwaitingRetry, Cancelled, Cancelling, Completed, Crashed, Paused, Pending, Running

    from kuberay_provider.prefect.worker import flow_reported, is_cancelling, parse_infrastructure_pid

    assert all(flow_reported(state) for state in (Completed(), Crashed(), Paused(), AwaitingRetry(), Cancelled()))
    assert not any(flow_reported(state) for state in (Running(), Pending(), None))
    assert is_cancelling(Cancelling()) and not is_cancelling(Cancelled()) and not is_cancelling(Running())
    assert parse_infrastructure_pid("ml:flow-run-x-123") == ("ml", "flow-run-x-123")
    with pytest.raises(ValueError, match="namespace"):
        parse_infrastructure_pid("no-namespace")


def test_a_first_run_waits_longer_for_the_temporary_server_unless_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, temporary_settings

    from kuberay_provider.prefect.ephemeral import TIMEOUT_VARIABLE, allow_slow_ephemeral_startup

    monkeypatch.delenv(TIMEOUT_VARIABLE, raising=False)
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:4200/api"}):
        assert allow_slow_ephemeral_startup() is False  # a server: nothing to start
    with temporary_settings(
        updates={PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: 45}, restore_defaults={PREFECT_API_URL}
    ):
        assert allow_slow_ephemeral_startup() is False  # the user's own value


FIRST_IMPORT = """
import os, prefect.context
import kuberay_provider.prefect  # noqa: F401  (the import is what sets the timeout)
from kuberay_provider.prefect.ephemeral import allow_slow_ephemeral_startup
print(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"),
      prefect.context.GLOBAL_SETTINGS_CONTEXT.settings.server.ephemeral.startup_timeout_seconds,
      allow_slow_ephemeral_startup())
"""


def test_importing_the_prefect_adapter_raises_the_first_run_timeout(tmp_path: Path) -> None:
    """As a new user's process imports it: no Prefect settings but a fresh home (a process of its own,
    because a test session may hold a Prefect server context of its own)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    ran = subprocess.run(
        [sys.executable, "-c", FIRST_IMPORT],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert ran.stdout.split("\n")[-2] == "120 120 False"  # raised at import, and once is enough


def test_kill_infrastructure_deletes_the_rayjob_the_pid_names(monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.exceptions import InfrastructureNotFound

    from kuberay_provider.prefect import RayJob
    from kuberay_provider.prefect.worker import KubeRayWorker

    existing = {("ml", "flow-run-x-1")}
    deleted: list[tuple[str, str]] = []

    def delete_now(self: Any, namespace: str, name: str) -> bool:
        deleted.append((namespace, name))
        return (namespace, name) in existing

    monkeypatch.setattr(RayJob, "delete_now", delete_now)
    worker, config = KubeRayWorker(work_pool_name="pool"), configuration(image="x:1")
    asyncio.run(worker.kill_infrastructure("ml:flow-run-x-1", config))
    with pytest.raises(InfrastructureNotFound, match="flow-run-x-2"):
        asyncio.run(worker.kill_infrastructure("ml:flow-run-x-2", config))
    assert deleted == [("ml", "flow-run-x-1"), ("ml", "flow-run-x-2")]


def test_the_dashboard_token_is_a_masked_job_variable_that_reaches_the_rayjob_block() -> None:
    from kuberay_provider.prefect.worker import KubeRayWorker

    token = "ray-token-0123456789-s3cret"
    variables = KubeRayWorker.get_default_base_job_template()["variables"]["properties"]
    assert {"format": "password", "type": "string", "writeOnly": True} in variables["dashboard_token"]["anyOf"]
    config = configuration(image="x:1", dashboard_token=token)
    block = config.rayjob_block()
    assert block.dashboard_token is not None and block.dashboard_token.get_secret_value() == token
    assert token not in repr(config) and token not in str(config.model_dump()) and token not in repr(block)
    assert configuration(image="x:1").rayjob_block().dashboard_token is None


def test_the_flow_run_log_links_the_dashboard_where_browsers_open_it_never_the_workers_proxy_route() -> None:
    from kuberay_provider.prefect.worker import dashboard_line

    config = configuration(image="x:1", dashboard_browser_url="https://ray.example.com/{namespace}/{rayjob}")
    block = config.rayjob_block()
    request = config.rayjob_request(block)
    assert block.dashboard_browser_url == "https://ray.example.com/{namespace}/{rayjob}"
    line = dashboard_line(block, request)
    assert (
        line
        == f"Ray dashboard of RayJob default/{request.rayjob_name}: https://ray.example.com/default/{request.rayjob_name}"
    )
    assert "proxy" not in line and "/api/v1/" not in line

    unset = configuration(image="x:1")
    hint = dashboard_line(unset.rayjob_block(), unset.rayjob_request(unset.rayjob_block()))
    assert "dashboard_browser_url" in hint and "proxy" not in hint
    # A template that needs the cluster's name, unknown before KubeRay names it: no line yet, not a wrong one.
    later = configuration(image="x:1", dashboard_browser_url="https://ray.example.com/{cluster}")
    assert dashboard_line(later.rayjob_block(), later.rayjob_request(later.rayjob_block())) == ""
