"""The ``kuberay`` work pool's job template: what a deployment may set (``KubeRayWorkerVariables``) and what
the worker makes of it for one flow run (``KubeRayWorkerJobConfiguration``).

The configuration becomes a ``RayJob`` block, so a flow run's RayJob is validated, cleaned up, queued on
Kueue and followed exactly as the tasks' RayJobs are. Its entrypoint is the flow run's command (Prefect's
``prefect flow-run execute``), its runtime env carries the flow run's environment (``PREFECT_API_URL``,
``PREFECT__FLOW_RUN_ID``...), and its name derives from the flow run's id alone, so submitting the same
flow run again finds the same RayJob.
"""

from __future__ import annotations

import copy
import re
from typing import TYPE_CHECKING, Any

from prefect.workers.base import BaseJobConfiguration, BaseVariables
from prefect_kubernetes.credentials import KubernetesClusterConfig, KubernetesCredentials
from pydantic import Field, PrivateAttr, SecretStr

from kuberay_provider.core.cleanup import CLEANUP_FIELDS
from kuberay_provider.core.errors import ConfigurationError
from kuberay_provider.core.job_request import RayJobRequest, RunIdentity
from kuberay_provider.core.naming import label_value
from kuberay_provider.core.spec import simple_cluster_spec
from kuberay_provider.prefect.blocks import RayJob

if TYPE_CHECKING:
    from uuid import UUID

    from prefect.client.schemas.objects import Flow as APIFlow
    from prefect.client.schemas.objects import FlowRun, WorkPool
    from prefect.client.schemas.responses import DeploymentResponse

# The RayJob's owner label. Not the flow's name: run_rayjob's hooks delete every RayJob labelled with the
# flow's name and the flow run's id, and must never take the RayJob their own flow runs in.
OWNER = "flow-run"
DEFAULT_CLEANUP = "delete_cluster_after:60"  # the cluster goes a minute after the flow's process ends
# Settings a flow run inherits that are secrets: they end up in the RayJob's runtime env, readable by
# whoever can read RayJobs, and shown by the Ray dashboard.
SENSITIVE_ENV = ("PREFECT_API_KEY", "PREFECT_API_AUTH_STRING")
SERVER_SETTINGS_PREFIX = "PREFECT_SERVER_"
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def default_rayjob_manifest() -> dict[str, Any]:
    """The base RayJob a work pool starts from; edit it in the work pool's base job template to set any
    other RayJob field (``entrypointNumCpus``, ``submitterPodTemplate``, ``activeDeadlineSeconds``...)."""
    return {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"labels": {}, "annotations": {}}, "spec": {}}


def label_key(key: str) -> str:
    """``key`` as a Kubernetes label key: kept when valid, else its name part cleaned (Prefect's own keys
    such as ``prefect.io/flow-run-id`` are valid)."""
    prefix, _, name = key.rpartition("/")
    if _LABEL_NAME.match(name) and (not prefix or _LABEL_PREFIX.match(prefix)):
        return key
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-_.")[:63].rstrip("-_.") or "label"
    prefix = re.sub(r"[^a-z0-9.-]+", "-", prefix.lower()).strip("-.")[:253]
    return f"{prefix}/{cleaned}" if prefix else cleaned


def with_image(cluster_spec: dict[str, Any], image: str) -> dict[str, Any]:
    """``cluster_spec`` with ``image`` in the Ray container (the first) of the head and of every worker group."""
    spec = copy.deepcopy(cluster_spec)
    for group in [spec.get("headGroupSpec") or {}, *(spec.get("workerGroupSpecs") or [])]:
        containers = ((group.get("template") or {}).get("spec") or {}).get("containers") or []
        if containers:
            containers[0]["image"] = image
    return spec


class KubeRayWorkerJobConfiguration(BaseJobConfiguration):
    """One flow run's RayJob, as the work pool's template and the deployment's job variables made it."""

    namespace: str = Field(default="default")
    rayjob_manifest: dict[str, Any] = Field(json_schema_extra=dict(template=default_rayjob_manifest()))
    image: str | None = Field(default=None)
    ray_cluster_spec: dict[str, Any] | None = Field(default=None)
    cluster_selector: str | None = Field(default=None)
    runtime_env: dict[str, Any] | None = Field(default=None)
    annotations: dict[str, str] = Field(default_factory=dict)
    cleanup: str | None = Field(default=DEFAULT_CLEANUP)
    queue_name: str | None = Field(default=None)
    admission_timeout: float | None = Field(default=None)
    cluster_config: KubernetesClusterConfig | None = Field(default=None, repr=False)
    stream_output: bool = Field(default=True)
    dashboard_url_template: str | None = Field(default=None)
    dashboard_token: SecretStr | None = Field(default=None, repr=False)  # masked in any dump as well
    dashboard_browser_url: str | None = Field(default=None)

    _flow_run_id: str = PrivateAttr(default="")
    _flow_name: str = PrivateAttr(default="flow")
    _run_count: int = PrivateAttr(default=0)

    def prepare_for_flow_run(
        self,
        flow_run: FlowRun,
        deployment: DeploymentResponse | None = None,
        flow: APIFlow | None = None,
        work_pool: WorkPool | None = None,
        worker_name: str | None = None,
        worker_id: UUID | None = None,
    ) -> None:
        explicit = set(self.env)
        super().prepare_for_flow_run(flow_run, deployment, flow, work_pool, worker_name, worker_id=worker_id)
        # The worker's own server settings (a database URL with its password...) are nothing a flow run
        # needs, and its env lands in the RayJob's spec: only what the job variable env names explicitly.
        self.env = {
            key: value
            for key, value in self.env.items()
            if not key.startswith(SERVER_SETTINGS_PREFIX) or key in explicit
        }
        self._flow_run_id = str(flow_run.id)
        self._flow_name = flow.name if flow is not None else (flow_run.name or "flow")
        self._run_count = flow_run.run_count or 0

    # --- what the RayJob is ---------------------------------------------------------------------------

    def identity(self) -> RunIdentity:
        """The flow run's RayJob identity: its name and labels derive from the flow run's id."""
        if not self._flow_run_id:
            raise RuntimeError("prepare_for_flow_run must run before the configuration names a RayJob")
        return RunIdentity(OWNER, self._flow_name, self._flow_run_id)

    def credentials(self) -> KubernetesCredentials:
        """``cluster_config`` (a KubernetesClusterConfig block), else in-cluster, else the default kubeconfig."""
        return KubernetesCredentials(cluster_config=self.cluster_config)

    def cluster_spec(self) -> dict[str, Any] | None:
        """The RayJob's own cluster: ``ray_cluster_spec`` (else the manifest's, else one head of ``image``)
        with ``image`` in its Ray containers; None on an existing cluster."""
        manifest_spec = self.rayjob_manifest.get("spec") or {}
        if self.cluster_selector:
            if self.ray_cluster_spec:
                raise ConfigurationError(
                    "give the work pool's ray_cluster_spec or cluster_selector, not both: "
                    "a RayJob runs on its own cluster or on an existing one"
                )
            return None
        base = self.ray_cluster_spec or manifest_spec.get("rayClusterSpec")
        if base is None:
            if manifest_spec.get("clusterSelector"):
                return None
            if not self.image:
                raise ConfigurationError(
                    "the flow run's RayJob needs a cluster: set the job variable image (a Ray image with Prefect "
                    "and the flow's dependencies, e.g. built FROM rayproject/ray), ray_cluster_spec, or "
                    "cluster_selector (an existing RayCluster) on the work pool or the deployment"
                )
            return simple_cluster_spec(image=self.image)
        return with_image(base, self.image) if self.image else copy.deepcopy(base)

    def effective_cleanup(self) -> str | None:
        """``cleanup`` for the RayJob's own cluster; None on an existing cluster (KubeRay refuses cleanup
        fields beside clusterSelector) or when the manifest template sets those fields itself."""
        spec = self.rayjob_manifest.get("spec") or {}
        if self.cluster_selector or spec.get("clusterSelector") or not self.cleanup:
            return None
        if any(spec.get(field) is not None for field in CLEANUP_FIELDS):
            return None
        return self.cleanup

    def flow_run_env(self) -> dict[str, str]:
        """The environment the flow run's process needs (Prefect's settings, the flow run's id, ``env``)."""
        return {key: str(value) for key, value in self.env.items() if value is not None}

    def sensitive_env(self) -> list[str]:
        return [key for key in SENSITIVE_ENV if self.flow_run_env().get(key)]

    def merged_runtime_env(self) -> dict[str, Any]:
        """``runtime_env`` with the flow run's environment on top of its ``env_vars``."""
        runtime_env = copy.deepcopy(self.runtime_env or {})
        runtime_env["env_vars"] = {**(runtime_env.get("env_vars") or {}), **self.flow_run_env()}
        return runtime_env

    def k8s_labels(self) -> dict[str, str]:
        """Prefect's labels (flow run, flow, deployment, work pool) and the template's, as valid label pairs."""
        merged = {**((self.rayjob_manifest.get("metadata") or {}).get("labels") or {}), **self.labels}
        return {label_key(str(key)): label_value(str(value)) for key, value in merged.items()}

    def rayjob_block(self) -> RayJob:
        """The flow run's RayJob as a (never saved) ``RayJob`` block."""
        if not self.command:
            raise ConfigurationError("the work pool's command is empty: leave it unset for Prefect's default")
        return RayJob(
            manifest=copy.deepcopy(self.rayjob_manifest),
            entrypoint=self.command,
            runtime_env=self.merged_runtime_env(),
            ray_cluster_spec=self.cluster_spec(),
            cluster_selector=self.cluster_selector or None,
            namespace=self.namespace,
            labels=self.k8s_labels(),
            annotations={**((self.rayjob_manifest.get("metadata") or {}).get("annotations") or {}), **self.annotations},
            credentials=self.credentials(),
            queue_name=self.queue_name or None,
            admission_timeout=self.admission_timeout,
            cleanup=self.effective_cleanup(),
            stream_logs=self.stream_output,
            dashboard_url_template=self.dashboard_url_template or None,
            dashboard_token=self.dashboard_token
            if self.dashboard_token and self.dashboard_token.get_secret_value()
            else None,
            dashboard_browser_url=self.dashboard_browser_url or None,
        )

    def rayjob_request(self, block: RayJob) -> RayJobRequest:
        """The core's request: named after the flow run; the try number counts the flow run's runs."""
        return block.request(self.identity(), try_number=self._run_count + 1)


class KubeRayWorkerVariables(BaseVariables):
    """What a kuberay work pool lets a deployment set (its job variables); the defaults are the pool's."""

    namespace: str = Field(default="default", description="The Kubernetes namespace of the flow runs' RayJobs.")
    image: str | None = Field(
        default=None,
        description="The image of the RayJob's Ray head and workers: Ray, Prefect and the flow's dependencies "
        "(and its code, unless the deployment pulls it). Overrides the images of ray_cluster_spec.",
        examples=["my-registry/flows-on-ray:2.60.0"],
    )
    ray_cluster_spec: dict[str, Any] | None = Field(
        default=None,
        description="The RayJob's own cluster (spec.rayClusterSpec, in KubeRay's terms). Default: one Ray head of "
        "`image`, no workers.",
    )
    cluster_selector: str | None = Field(
        default=None, description="Run the flow on this existing RayCluster (its name) instead of an own cluster."
    )
    runtime_env: dict[str, Any] | None = Field(
        default=None,
        description="The Ray runtime environment of the flow's process (pip, working_dir, env_vars...); the flow "
        "run's environment (env, PREFECT_API_URL...) is added to env_vars.",
    )
    annotations: dict[str, str] = Field(default_factory=dict, description="Annotations of the RayJob.")
    cleanup: str | None = Field(
        default=DEFAULT_CLEANUP,
        description="What KubeRay does with the RayJob's own cluster once the flow's process ends: keep, "
        "delete_cluster, delete_cluster_after:<s>, delete_workers_then_cluster:<s>:<s>. Ignored with "
        "cluster_selector.",
    )
    queue_name: str | None = Field(
        default=None, description="A Kueue LocalQueue: the RayJob is created suspended and Kueue admits it."
    )
    admission_timeout: float | None = Field(
        default=None,
        description="Seconds the RayJob may wait for Kueue's admission; then it is deleted and the flow run crashes.",
    )
    cluster_config: KubernetesClusterConfig | None = Field(
        default=None,
        description="The Kubernetes cluster to create RayJobs in (a KubernetesClusterConfig block). Default: "
        "in-cluster, else the worker's kubeconfig.",
    )
    stream_output: bool = Field(
        default=True, description="Send the Ray job's log (the flow's process output) into the flow run's log."
    )
    dashboard_url_template: str | None = Field(
        default=None,
        description="Reach the Ray dashboard directly, e.g. http://{service}.{namespace}.svc:8265; default: "
        "through the Kubernetes API server's service proxy.",
    )
    dashboard_token: SecretStr | None = Field(
        default=None,
        description="The Ray auth token of the flow runs' clusters when Ray's token authentication is on: sent as "
        "X-Ray-Authorization: Bearer <token> when the worker reads the job's status and log. Better a reference "
        "to a Secret block, {{ prefect.blocks.secret.<name> }}, than the token itself.",
    )
    dashboard_browser_url: str | None = Field(
        default=None,
        description="Where people open the Ray dashboards (an Ingress...), with {namespace} {cluster} {rayjob} "
        "{job_id}: the flow run's log then links the job's dashboard. Without it the log names no link, since "
        "the worker's own route (through the API server) opens in no browser.",
        examples=["https://ray.example.com/{namespace}/{cluster}"],
    )
