"""The Prefect ``RayJob`` block without a cluster: the request it builds, its checks, its credentials."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from kuberay_provider.core.job_request import RunIdentity
from kuberay_provider.core.naming import LABEL_RUN_KEY

IDENTITY = RunIdentity("nightly", "0b6a2c7e-task-run", "f1e2d3c4-flow-run")


def kubeconfig(server: str = "https://127.0.0.1:6443", token: str = "secret-token") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "local",
        "clusters": [{"name": "local", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
        "users": [{"name": "me", "user": {"token": token}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": "me", "namespace": "team"}}],
    }


def credentials(config: dict[str, Any] | None = None) -> Any:
    from prefect_kubernetes.credentials import KubernetesClusterConfig, KubernetesCredentials

    return KubernetesCredentials(
        cluster_config=KubernetesClusterConfig(config=config or kubeconfig(), context_name="local")
    )


def block(**fields: Any) -> Any:
    from kuberay_provider.prefect import RayJob

    return RayJob(credentials=credentials(), **fields)


def test_parameters_override_the_manifest_and_the_name_derives_from_the_run() -> None:
    base = {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": "ignored", "namespace": "ml"},
        "spec": {"entrypoint": "python old.py", "shutdownAfterJobFinishes": False},
    }
    request = block(
        manifest=base,
        entrypoint="python new.py",
        runtime_env={"env_vars": {"A": "1"}},
        spec_params={"shutdown_after_job_finishes": True},
    ).request(IDENTITY, try_number=2)
    manifest = request.manifest()
    assert manifest["metadata"]["name"] == IDENTITY.rayjob_name and manifest["metadata"]["namespace"] == "ml"
    assert manifest["metadata"]["labels"][LABEL_RUN_KEY] == IDENTITY.key
    assert manifest["spec"]["entrypoint"] == "python new.py" and manifest["spec"]["shutdownAfterJobFinishes"] is True
    assert yaml.safe_load(manifest["spec"]["runtimeEnvYAML"]) == {"env_vars": {"A": "1"}}


def test_the_same_run_always_gets_the_same_rayjob_and_a_pinned_name_wins() -> None:
    job = block(entrypoint="python job.py")
    assert job.request(IDENTITY).rayjob_name == job.request(IDENTITY, try_number=3).rayjob_name
    pinned = job.request(IDENTITY, name="chosen", namespace="other").manifest()["metadata"]
    assert (pinned["name"], pinned["namespace"]) == ("chosen", "other")


def test_sdk_mode_runs_interactively_and_straight_to_an_existing_cluster_without_a_rayjob() -> None:
    interactive = block(entrypoint="python job.py", submit_via="sdk").request(IDENTITY)
    assert interactive.manifest()["spec"]["submissionMode"] == "InteractiveMode" and not interactive.runs_without_rayjob
    direct = block(entrypoint="python job.py", submit_via="sdk", cluster_selector="shared")
    assert direct.runs_without_rayjob and direct.request(IDENTITY).selected_cluster == "shared"
    assert not block(entrypoint="python job.py", cluster_selector="shared").runs_without_rayjob


def test_unknown_spec_fields_and_an_empty_job_are_rejected() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="entry_point"):
        block(spec_params={"entry_point": "python job.py"})
    with pytest.raises(ValidationError):
        block(entrypoint="python job.py", submit_via="ray-client")
    from kuberay_provider.core.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="needs a manifest"):  # permanent: no retry is spent on it
        block().request(IDENTITY)


def test_the_sync_api_client_comes_from_the_credentials_kubeconfig() -> None:
    from kuberay_provider.prefect.blocks import sync_api_client

    api_client = sync_api_client(credentials(kubeconfig(server="https://10.1.2.3:6443", token="t0k3n")))
    try:
        assert api_client.configuration.host == "https://10.1.2.3:6443"
        assert "Bearer t0k3n" in api_client.configuration.api_key.values()
        assert api_client.configuration.verify_ssl is False
    finally:
        api_client.close()


def test_the_block_round_trips_through_json_and_its_schema_references_the_credentials_block() -> None:
    from kuberay_provider.prefect import RayJob

    job = block(entrypoint="python job.py", cluster_selector={"ray.io/cluster": "shared"}, delete_on_success=True)
    again = RayJob.model_validate(job.model_dump())
    assert again.cluster_selector == {"ray.io/cluster": "shared"} and again.delete_on_success
    assert again.credentials.cluster_config.context_name == "local"
    schema = RayJob._to_block_schema(block_type_id=uuid.uuid4())
    assert "credentials" in schema.fields["block_schema_references"]
    assert RayJob.get_block_type_slug() == "ray-job"


def test_permanent_errors_spend_no_retries() -> None:
    from prefect.states import Failed

    from kuberay_provider.core.errors import ConfigurationError, ValidationError
    from kuberay_provider.core.lifecycle import RayJobTimeout
    from kuberay_provider.prefect import is_retriable

    assert not is_retriable(None, None, Failed(data=ConfigurationError("bad spec")))
    assert is_retriable(None, None, Failed(data=ValueError("raised by the user's own code")))
    assert not is_retriable(
        None, None, Failed(data=ValidationError(["spec.suspend: not a boolean"], object_name="RayJob x"))
    )
    assert is_retriable(None, None, Failed(data=RayJobTimeout("too slow", None)))


def test_the_example_flow_builds_a_self_deleting_cluster(tmp_path: Path) -> None:
    import importlib.util

    from tests.conftest import PROJECT_ROOT

    spec = importlib.util.spec_from_file_location(
        "prefect_batch_inference", PROJECT_ROOT / "dags" / "prefect_batch_inference.py"
    )
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    manifest = example.scoring_job("2026-01-15", str(tmp_path), credentials()).request(IDENTITY).manifest()
    assert manifest["spec"]["entrypoint"].endswith(f"batch_inference.py --date 2026-01-15 --data-root {tmp_path}")
    assert manifest["spec"]["shutdownAfterJobFinishes"] is True and manifest["spec"]["rayClusterSpec"]["headGroupSpec"]


def test_cleanup_on_cancel_is_on_by_default_and_finds_the_namespace() -> None:
    assert block(entrypoint="python job.py").delete_on_cancel is True
    assert block(entrypoint="python job.py").default_namespace == "default"
    assert block(manifest={"metadata": {"namespace": "ml"}}).default_namespace == "ml"
    assert block(manifest={"metadata": {"namespace": "ml"}}, namespace="team").default_namespace == "team"


@pytest.fixture
def no_api_logs() -> Any:
    """The hook logs into the run's log; without a Prefect API here, keep those lines local."""
    from prefect.settings import PREFECT_LOGGING_TO_API_ENABLED, temporary_settings

    with temporary_settings({PREFECT_LOGGING_TO_API_ENABLED: False}):
        yield


def hook_call(monkeypatch: pytest.MonkeyPatch, hook: Any, parameters: dict[str, Any]) -> list[tuple[str, str]]:
    """Run a ``delete_rayjobs_hook`` as a runner would (no run context), recording ``delete_run_now``."""
    from types import SimpleNamespace

    from prefect.client.schemas.objects import FlowRun

    from kuberay_provider.prefect import RayJob

    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(
        RayJob, "delete_run_now", lambda self, owner, run_id, namespace=None: calls.append((owner, run_id)) or ["x"]
    )
    flow_run = FlowRun(flow_id=uuid.uuid4(), name="lucky-run", parameters=parameters)
    hook(SimpleNamespace(name="run-rayjob"), flow_run, SimpleNamespace(name="Cancelling"))
    return [(owner, run_id) for owner, run_id in calls if run_id == str(flow_run.id)]


def test_the_cleanup_hook_rebuilds_the_block_from_the_stored_parameters(
    monkeypatch: pytest.MonkeyPatch, no_api_logs: None
) -> None:
    from fastapi.encoders import jsonable_encoder

    from kuberay_provider.prefect import delete_rayjobs_hook

    stored = {"rayjob": jsonable_encoder(block(entrypoint="python job.py"))}
    assert len(hook_call(monkeypatch, delete_rayjobs_hook(), stored)) == 1
    assert hook_call(monkeypatch, delete_rayjobs_hook(), {}) == []  # no block: nothing to do
    opted_out = {"rayjob": jsonable_encoder(block(entrypoint="python job.py", delete_on_cancel=False))}
    assert hook_call(monkeypatch, delete_rayjobs_hook(), opted_out) == []
    assert len(hook_call(monkeypatch, delete_rayjobs_hook(block(entrypoint="python job.py")), {})) == 1  # a given block


def test_the_cleanup_hook_never_raises(monkeypatch: pytest.MonkeyPatch, no_api_logs: None) -> None:
    from types import SimpleNamespace

    from prefect.client.schemas.objects import FlowRun

    from kuberay_provider.prefect import RayJob, delete_rayjobs_hook

    def unreachable(self: Any, owner: str, run_id: str, namespace: str | None = None) -> list[str]:
        raise ConnectionError("the API server is gone")

    monkeypatch.setattr(RayJob, "delete_run_now", unreachable)
    flow_run = FlowRun(flow_id=uuid.uuid4(), name="r")
    delete_rayjobs_hook(block(entrypoint="python job.py"))(
        SimpleNamespace(name="f"), flow_run, SimpleNamespace(name="Crashed")
    )


def test_run_rayjob_cleans_up_when_cancelled_or_crashed() -> None:
    from kuberay_provider.prefect import run_rayjob

    assert (
        len(run_rayjob.on_cancellation_hooks) == 1 and run_rayjob.on_crashed_hooks == run_rayjob.on_cancellation_hooks
    )


def test_the_cleanup_choice_becomes_kuberays_fields_as_in_airflow() -> None:
    spec = block(entrypoint="python job.py", cleanup="delete_cluster_after:60").request(IDENTITY).manifest()["spec"]
    assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] == 60
    with pytest.raises(Exception, match="cleanup"):
        block(entrypoint="python job.py", cleanup="sometimes").request(IDENTITY)


def test_the_browser_url_links_the_jobs_page_and_is_checked_when_the_block_is_made() -> None:
    from pydantic import ValidationError

    from kuberay_provider.core.dashboard_links import DashboardTarget

    job = block(entrypoint="python job.py", dashboard_browser_url="https://ray.example.com/{namespace}/{cluster}")
    target = DashboardTarget("team", "scoring-raycluster-x", "scoring", "scoring-job-1")
    assert job.browser_link(target) == "https://ray.example.com/team/scoring-raycluster-x/#/jobs/scoring-job-1"
    assert job.browser_link(DashboardTarget("team", rayjob="scoring")) is None  # no cluster name yet: no link
    assert block(entrypoint="python job.py").browser_link(target) is None
    # How a person views the dashboard, not which job: a retry may change it and re-attaches.
    assert job.job_fingerprint() == block(entrypoint="python job.py").job_fingerprint()
    with pytest.raises(ValidationError, match=r"may use only \{namespace\}"):
        block(entrypoint="python job.py", dashboard_browser_url="https://ray.example.com/{service}")
    with pytest.raises(ValidationError, match="whole URL"):
        block(entrypoint="python job.py", dashboard_browser_url="ray.example.com/{namespace}")


def test_the_artifacts_link_the_browser_url_never_the_api_servers_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from kuberay_provider.core.job_outcome import RayJobOutcome
    from kuberay_provider.prefect import tasks

    published: dict[str, list[str]] = {"link": [], "markdown": []}

    async def link_artifact(link: str, **_: Any) -> None:
        published["link"].append(link)

    async def markdown_artifact(markdown: str, **_: Any) -> None:
        published["markdown"].append(markdown)

    monkeypatch.setattr(tasks, "acreate_link_artifact", link_artifact)
    monkeypatch.setattr(tasks, "acreate_markdown_artifact", markdown_artifact)
    proxy = "https://127.0.0.1:6443/api/v1/namespaces/team/services/scoring-head-svc:dashboard/proxy"
    outcome = RayJobOutcome(
        "team", "scoring", "scoring-job-1", "scoring-rc", "Complete", "SUCCEEDED", True, dashboard_url=proxy
    )
    asyncio.run(tasks.publish_summary(block(entrypoint="python job.py"), outcome))
    assert published["link"] == [] and proxy not in published["markdown"][0]
    assert "set `dashboard_browser_url` on the RayJob block" in published["markdown"][0]
    browsable = block(entrypoint="python job.py", dashboard_browser_url="https://ray.example.com/{namespace}/{cluster}")
    asyncio.run(tasks.publish_summary(browsable, outcome))
    assert published["link"] == ["https://ray.example.com/team/scoring-rc/#/jobs/scoring-job-1"]
    assert published["link"][0] in published["markdown"][1] and proxy not in published["markdown"][1]
