"""The ``RayJob`` block: one Ray job on KubeRay, and the Kubernetes credentials to run it with.

Credentials are prefect-kubernetes' own ``KubernetesCredentials`` block. Its ``get_client`` gives a
kubernetes_asyncio client, which the async watch uses as it is; the core's one-shot steps take an
official (sync) ``kubernetes`` ApiClient, loaded from the same kubeconfig the same way (the credentials'
``cluster_config``, else in-cluster, else the default kubeconfig).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from prefect._internal.compatibility.async_dispatch import async_dispatch
from prefect.blocks.abstract import JobBlock
from prefect_kubernetes.credentials import KubernetesCredentials
from pydantic import Field, SecretStr, field_validator

from kuberay_provider.core.async_runner import AsyncRayJobRunner
from kuberay_provider.core.dashboard import DashboardAccess
from kuberay_provider.core.dashboard_links import DashboardTarget, browser_link
from kuberay_provider.core.errors import ConfigurationError
from kuberay_provider.core.job_request import RAYJOB_KEYWORDS, RayJobRequest, RunIdentity, SubmitVia
from kuberay_provider.core.job_runner import RayJobRunner
from kuberay_provider.core.kube.async_client import AsyncRayObjectsClient
from kuberay_provider.core.kube.sync_client import RayObjectsClient
from kuberay_provider.core.lifecycle import RayJobLifecycle
from kuberay_provider.core.validation import SchemaRegistry, installed_schemas
from kuberay_provider.prefect.identity import block_fingerprint

if TYPE_CHECKING:
    from kuberay_provider.prefect.job_run import RayJobRun

RAY_LOGO_URL = "https://docs.ray.io/en/latest/_static/ray_logo.png"  # the blocks' logo in the Prefect UI
# KubeRay's quick starts in Ray's docs: the blocks' documentation link in the Prefect UI.
RAY_DOCS_URL = "https://docs.ray.io/en/latest/cluster/kubernetes/getting-started/"


def refuse_unknown_spec_fields(value: dict[str, Any], known: Any, kind: str) -> dict[str, Any]:
    """A block's ``spec_params`` validator: a typo never becomes a silently missing field."""
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise ValueError(f"unknown {kind} spec parameter(s) {', '.join(unknown)}")
    return value


@contextlib.contextmanager
def kube_objects(
    credentials: KubernetesCredentials, *, validate_schema: bool
) -> Iterator[tuple[RayObjectsClient, SchemaRegistry | None]]:
    """The core's client on ``credentials`` and, if asked, the CRD schemas read from that cluster; the
    API client closes when the caller is done."""
    api_client = sync_api_client(credentials)
    try:
        yield RayObjectsClient(api_client), installed_schemas(api_client) if validate_schema else None
    finally:
        api_client.close()


def sync_api_client(credentials: KubernetesCredentials) -> Any:
    """An official ``kubernetes.client.ApiClient`` for ``credentials``, with a private Configuration
    (never the process-wide default, which clients of other clusters share)."""
    from kubernetes import client, config

    configuration = client.Configuration()
    if credentials.cluster_config is not None:
        config.load_kube_config_from_dict(
            config_dict=credentials.cluster_config.config,
            context=credentials.cluster_config.context_name,
            client_configuration=configuration,
        )
    else:
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            config.load_kube_config(client_configuration=configuration)
    return client.ApiClient(configuration)


async def load_async_credentials(credentials: KubernetesCredentials, configuration: Any) -> None:
    """Load ``credentials`` into a kubernetes_asyncio Configuration as prefect-kubernetes' ``get_client`` does.
    Run again after a 401: kubernetes_asyncio keeps the token it loaded, and an exec plugin (EKS, GKE) then
    hands out a fresh one."""
    from kubernetes_asyncio import config

    if credentials.cluster_config is not None:
        await config.load_kube_config_from_dict(
            config_dict=credentials.cluster_config.config,
            context=credentials.cluster_config.context_name,
            client_configuration=configuration,
        )
        return
    # kubernetes_asyncio ships py.typed but leaves this one unannotated: typed here, as what it is.
    load_incluster_config: Callable[..., None] = config.load_incluster_config
    try:
        load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        await config.load_kube_config(client_configuration=configuration)


@contextlib.asynccontextmanager
async def async_objects_client(credentials: KubernetesCredentials) -> AsyncIterator[AsyncRayObjectsClient]:
    """The core's async client on prefect-kubernetes' own kubernetes_asyncio client, reloading the
    credentials when a request gets 401 (a long wait outlives an exec plugin's token)."""
    async with credentials.get_client("custom_objects") as custom_objects:
        configuration = custom_objects.api_client.configuration
        yield AsyncRayObjectsClient(
            custom_objects.api_client, reauthenticate=lambda: load_async_credentials(credentials, configuration)
        )


class RayJob(JobBlock[dict[str, Any]]):
    """A Ray job run as a KubeRay RayJob (``ray.io/v1``), or on an existing RayCluster.

    The RayJob is a base ``manifest`` and/or parameters (``entrypoint``, ``runtime_env``,
    ``ray_cluster_spec``, and any other RayJob spec field in snake_case in ``spec_params``), the
    parameters overriding the manifest field by field. ``cluster_selector`` runs on an existing RayCluster;
    ``submit_via="sdk"`` submits the entrypoint through the Ray Jobs SDK (InteractiveMode, or straight to
    the selected cluster's head). The RayJob's name derives from the flow run, the task and the job
    (``prefect.identity``), so a retried task or flow run re-attaches to the RayJob its first try created.
    """

    _block_type_name = "Ray Job"
    _logo_url = RAY_LOGO_URL  # type: ignore[assignment]  # Prefect types it HttpUrl; its own blocks set a str
    _documentation_url = RAY_DOCS_URL + "rayjob-quick-start.html"  # type: ignore[assignment]  # Prefect types it HttpUrl; its own blocks set a str
    _code_example = """
    from kuberay_provider.prefect import RayJob, run_rayjob

    job = RayJob.load("BLOCK_NAME")
    outcome = run_rayjob(job)  # create, wait (the Ray log in the run log), clean up; or the tasks one by one
    """
    _description = (
        "A Ray job on Kubernetes through KubeRay's RayJob (create, SDK submission, or an existing RayCluster)."
    )
    # How to reach, wait and log, not which job: left out of the job's fingerprint, so a retry may change them.
    RUN_SETTINGS: ClassVar[frozenset[str]] = frozenset(
        {
            "credentials",
            "timeout",
            "admission_timeout",
            "delete_on_success",
            "delete_on_failure",
            "delete_on_cancel",
            "stream_logs",
            "log_tail_lines",
            "validate_schema",
            "dashboard_url_template",
            "dashboard_token",
            "dashboard_browser_url",
        }
    )

    manifest: dict[str, Any] | None = Field(default=None, description="A base RayJob manifest (ray.io/v1).")
    entrypoint: str | None = Field(default=None, description="The command that runs the Ray job.")
    runtime_env: dict[str, Any] | None = Field(default=None, description="The job's Ray runtime environment.")
    ray_cluster_spec: dict[str, Any] | None = Field(
        default=None, description="The RayJob's own cluster (spec.rayClusterSpec)."
    )
    cluster_selector: str | dict[str, str] | None = Field(
        default=None, description="Run on an existing RayCluster: its name, or {'ray.io/cluster': name}."
    )
    submit_via: Literal["kuberay", "sdk"] = Field(
        default="kuberay", description="kuberay: KubeRay submits; sdk: this block submits through the Ray Jobs SDK."
    )
    spec_params: dict[str, Any] = Field(
        default_factory=dict, description="Any other RayJob spec field in snake_case, e.g. shutdown_after_job_finishes."
    )
    name: str | None = Field(default=None, description="The RayJob's name; default derived from the run.")
    namespace: str | None = Field(default=None, description="Default: the manifest's, else 'default'.")
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    credentials: KubernetesCredentials = Field(  # repr=False: a block in a message or log never shows the kubeconfig
        default_factory=KubernetesCredentials, description="Kubernetes credentials (prefect-kubernetes).", repr=False
    )
    timeout: float | None = Field(
        default=None, description="Seconds to wait for the job; None waits as long as it runs."
    )
    queue_name: str | None = Field(
        default=None,
        description="A Kueue LocalQueue: created suspended, labelled kueue.x-k8s.io/queue-name; Kueue admits it.",
    )
    volcano_queue: str | None = Field(
        default=None,
        description="A Volcano Queue: sets ray.io/scheduler-name=volcano and volcano.sh/queue-name.",
    )
    admission_timeout: float | None = Field(
        default=None,
        description="Seconds it may stay queued on Kueue before the task fails (the RayJob is then deleted).",
    )
    volcano_job: str | None = Field(
        default=None,
        description="Run on the Ray head of this Volcano Job (its ray plugin's <job>-head-svc): no RayJob.",
    )
    head_service: str | None = Field(
        default=None,
        description="Run on the Ray head behind this Service (no RayCluster describes it): no RayJob.",
    )
    cleanup: str | None = Field(
        default=None,
        description="What KubeRay does with the cluster once the job ends: keep, delete_cluster, "
        "delete_cluster_after:<s>, delete_workers_then_cluster:<s>:<s> (written into KubeRay's fields).",
    )
    delete_on_success: bool = Field(default=False, description="Delete the RayJob (and its cluster) once it succeeded.")
    delete_on_failure: bool = Field(default=False, description="Delete the RayJob (and its cluster) once it failed.")
    delete_on_cancel: bool = Field(
        default=True,
        description="Delete the RayJob (stopping its job and cluster) when the task waiting on it is cancelled, "
        "or run_rayjob's flow run is cancelled or crashes.",
    )
    stream_logs: bool = Field(default=True, description="Stream the Ray job's log into the run's log while it runs.")
    log_tail_lines: int = Field(default=50, description="Lines of the Ray job's log in a failure's message.")
    validate_schema: bool = Field(
        default=True, description="Also check the RayJob against the CRD schema on the cluster."
    )
    dashboard_url_template: str | None = Field(
        default=None,
        description="Reach the Ray dashboard directly, e.g. http://{service}.{namespace}.svc:8265; "
        "default: through the Kubernetes API server's service proxy.",
    )
    dashboard_token: SecretStr | None = Field(
        default=None,
        description="The cluster's Ray auth token when Ray's token authentication is on; sent as "
        "X-Ray-Authorization: Bearer <token> with every Ray Jobs API request.",
    )
    dashboard_browser_url: str | None = Field(
        default=None,
        description="Where a browser opens the Ray dashboard (an Ingress...), e.g. "
        "https://ray.example.com/{namespace}/{cluster}; placeholders {namespace} {cluster} {rayjob} {job_id}. "
        "The run's link artifact goes to the job's page there; unset, no link is published.",
    )

    @field_validator("spec_params")
    @classmethod
    def _known_spec_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        return refuse_unknown_spec_fields(value, RAYJOB_KEYWORDS, "RayJob")

    @field_validator("dashboard_browser_url")
    @classmethod
    def _known_placeholders(cls, value: str | None) -> str | None:
        if value:
            # A ValueError names the placeholders it may use, or asks for a whole URL.
            browser_link(value, DashboardTarget("namespace", "cluster", "rayjob", "job-id"))
        return value or None

    def browser_link(self, target: DashboardTarget) -> str | None:
        """The link a person opens to ``target`` (``dashboard_browser_url``); None when unset or not known yet."""
        return browser_link(self.dashboard_browser_url, target) if self.dashboard_browser_url else None

    # --- what to run --------------------------------------------------------------------------------------

    @property
    def runs_without_rayjob(self) -> bool:
        """SDK submission straight to an existing cluster: nothing is created in Kubernetes."""
        return bool(self.volcano_job or self.head_service) or (
            self.submit_via == SubmitVia.SDK.value and bool(self.cluster_selector)
        )

    def job_fingerprint(self) -> str:
        """A digest of the job this block runs (not its ``RUN_SETTINGS``): part of a call's identity."""
        return block_fingerprint(self, self.RUN_SETTINGS)

    def all_spec_params(self) -> dict[str, Any]:
        named = {
            "entrypoint": self.entrypoint,
            "runtime_env": self.runtime_env,
            "ray_cluster_spec": self.ray_cluster_spec,
        }
        return {**self.spec_params, **{key: value for key, value in named.items() if value is not None}}

    def request(
        self,
        identity: RunIdentity,
        *,
        try_number: int | None = None,
        name: str | None = None,
        namespace: str | None = None,
    ) -> RayJobRequest:
        """The core's request for one run; ``name`` / ``namespace`` pin an already created RayJob."""
        if self.manifest is None and not self.all_spec_params():
            raise ConfigurationError("a RayJob block needs a manifest and/or spec parameters such as entrypoint")
        return RayJobRequest(
            identity=identity,
            namespace=namespace or self.namespace or None,
            name=name or self.name or None,
            rayjob=self.manifest,
            spec_params=self.all_spec_params(),
            cluster_selector=self.cluster_selector,
            submit_via=self.submit_via,
            labels=self.labels,
            annotations=self.annotations,
            try_number=try_number,
            cleanup=self.cleanup,
            queue_name=self.queue_name or None,
            admission_timeout=self.admission_timeout,
            volcano_queue=self.volcano_queue or None,
            volcano_job=self.volcano_job or None,
            head_service=self.head_service or None,
        )

    @property
    def default_namespace(self) -> str:
        """Where this block's RayJobs live: ``namespace``, else the manifest's, else ``default``."""
        return self.namespace or ((self.manifest or {}).get("metadata") or {}).get("namespace") or "default"

    # --- how to reach it ----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def lifecycle(self) -> Iterator[RayJobLifecycle]:
        """A bare core lifecycle on these credentials (no schema read): for deleting, e.g. while cancelled."""
        api_client = sync_api_client(self.credentials)
        try:
            yield RayJobLifecycle(RayObjectsClient(api_client))
        finally:
            api_client.close()

    def delete_now(self, namespace: str, name: str) -> bool:
        """Delete one RayJob, synchronously (no event loop needed). False if it was already gone."""
        with self.lifecycle() as lifecycle:
            return lifecycle.delete(namespace, name)

    def delete_run_now(self, owner: str, run_id: str, namespace: str | None = None) -> list[str]:
        """Delete every RayJob one flow run created (labels: ``owner`` = flow name, run id = flow run id)."""
        with self.lifecycle() as lifecycle:
            return lifecycle.delete_run(namespace or self.default_namespace, owner, run_id)

    @contextlib.contextmanager
    def runner(self, log_line: Callable[[str], None], status_line: Callable[[str], None]) -> Iterator[RayJobRunner]:
        """The core's runner on these credentials; the API client closes when the block is done with it."""
        api_client = sync_api_client(self.credentials)
        try:
            schemas = installed_schemas(api_client) if self.validate_schema else None
            dashboard = DashboardAccess(
                url_template=self.dashboard_url_template or None,
                verify=bool(api_client.configuration.verify_ssl),
                token=self.dashboard_token.get_secret_value() if self.dashboard_token else None,
            )
            lifecycle = RayJobLifecycle(RayObjectsClient(api_client), schemas=schemas, dashboard=dashboard)
            yield RayJobRunner(
                lifecycle,
                log_line=log_line,
                status_line=status_line,
                stream_logs=self.stream_logs,
                log_tail_lines=self.log_tail_lines,
            )
        finally:
            api_client.close()

    @contextlib.asynccontextmanager
    async def async_runner(
        self, log_line: Callable[[str], None], status_line: Callable[[str], None]
    ) -> AsyncIterator[AsyncRayJobRunner]:
        """``runner`` plus an async watch on prefect-kubernetes' own kubernetes_asyncio client."""
        async with async_objects_client(self.credentials) as kube:
            with self.runner(log_line, status_line) as runner:
                yield AsyncRayJobRunner(runner, kube)

    async def atrigger(self) -> RayJobRun:
        """Start the RayJob (``create_rayjob``) and return its run: ``wait_for_completion``, ``fetch_result``."""
        from kuberay_provider.prefect.job_run import RayJobRun

        return await RayJobRun.astart(self)

    @async_dispatch(atrigger)
    def trigger(self) -> RayJobRun:  # type: ignore[override]  # sync or async by the caller, as Prefect's own blocks
        """Start the RayJob (``create_rayjob``) and return its run: ``wait_for_completion``, ``fetch_result``."""
        from kuberay_provider.prefect.job_run import RayJobRun

        return RayJobRun.start(self)
