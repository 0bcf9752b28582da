"""RayCluster from Prefect: the ``RayCluster`` block and tasks to create (and wait until ready), scale and
delete one. The per-flow-run pattern deletes the cluster in a ``finally`` (and, if the flow run is
cancelled or crashes, in ``delete_rayclusters_hook``)::

    @flow(on_cancellation=[delete_rayclusters_hook(block)], on_crashed=[delete_rayclusters_hook(block)])
    def nightly():
        cluster = create_raycluster(block)
        try:
            run_rayjob(RayJob(entrypoint="python job.py", cluster_selector=cluster["name"], ...))
        finally:
            delete_raycluster(block, cluster["name"])

The cluster's name derives from the call (``prefect.identity``), so a retried create, or a retried flow
run, re-attaches to it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

from prefect import get_run_logger
from prefect.blocks.core import Block
from prefect.cache_policies import NO_CACHE
from prefect.logging.loggers import flow_run_logger
from prefect_kubernetes.credentials import KubernetesCredentials
from pydantic import Field, field_validator

from kuberay_provider.core.clusters import RayClusterLifecycle, RayClusterRequest, RayClusterState
from kuberay_provider.core.errors import ConfigurationError
from kuberay_provider.core.spec import RAYCLUSTER_SPEC_FIELDS
from kuberay_provider.prefect.blocks import RAY_DOCS_URL, RAY_LOGO_URL, kube_objects, refuse_unknown_spec_fields
from kuberay_provider.prefect.dispatch import sync_and_async
from kuberay_provider.prefect.identity import block_fingerprint, current_call
from kuberay_provider.prefect.tasks import is_retriable


class RayCluster(Block):
    """A KubeRay RayCluster (``ray.io/v1``): a base ``manifest``, a whole ``spec`` and/or spec fields in
    snake_case in ``spec_params`` (``worker_group_specs``, ``ray_version``...), later ones winning."""

    _block_type_name = "Ray Cluster"
    _logo_url = RAY_LOGO_URL  # type: ignore[assignment]  # Prefect types it HttpUrl; its own blocks set a str
    _documentation_url = RAY_DOCS_URL + "raycluster-quick-start.html"  # type: ignore[assignment]  # Prefect types it HttpUrl; its own blocks set a str
    _code_example = """
    from prefect import flow

    from kuberay_provider.prefect import RayCluster, RayJob, create_raycluster, delete_raycluster, run_rayjob

    cluster = RayCluster.load("BLOCK_NAME")


    @flow
    def train(entrypoint: str) -> dict:
        created = create_raycluster(cluster)  # waits until ready
        try:
            job = RayJob(entrypoint=entrypoint, cluster_selector=created["name"], credentials=cluster.credentials)
            return run_rayjob(job)
        finally:
            delete_raycluster(cluster, created["name"])
    """
    _description = "A Ray cluster on Kubernetes through KubeRay's RayCluster, e.g. one per flow run."
    # How to reach and wait, not which cluster: left out of the call's identity, so a retry may change them.
    RUN_SETTINGS: ClassVar[frozenset[str]] = frozenset(
        {"credentials", "ready_timeout", "admission_timeout", "validate_schema"}
    )

    manifest: dict[str, Any] | None = Field(default=None, description="A base RayCluster manifest (ray.io/v1).")
    spec: dict[str, Any] | None = Field(default=None, description="The whole RayCluster spec.")
    spec_params: dict[str, Any] = Field(default_factory=dict, description="RayCluster spec fields in snake_case.")
    name: str | None = Field(default=None, description="The cluster's name; default derived from the run.")
    namespace: str | None = Field(default=None, description="Default: the manifest's, else 'default'.")
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    credentials: KubernetesCredentials = Field(  # repr=False: a block in a message or log never shows the kubeconfig
        default_factory=KubernetesCredentials, description="Kubernetes credentials (prefect-kubernetes).", repr=False
    )
    ready_timeout: float | None = Field(default=600, description="Seconds to wait until the cluster is ready.")
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
        description="Seconds it may stay queued on Kueue before the task fails (it is then deleted).",
    )
    validate_schema: bool = Field(
        default=True, description="Also check the RayCluster against the CRD schema on the cluster."
    )

    @field_validator("spec_params")
    @classmethod
    def _known_spec_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        return refuse_unknown_spec_fields(value, RAYCLUSTER_SPEC_FIELDS, "RayCluster")

    def request(self) -> RayClusterRequest:
        if self.manifest is None and self.spec is None and not self.spec_params:
            raise ConfigurationError("a RayCluster block needs a manifest, a spec or spec_params")
        identity = current_call(block_fingerprint(self, self.RUN_SETTINGS)).identity
        return RayClusterRequest(
            identity,
            raycluster=self.manifest,
            spec=self.spec,
            spec_params=self.spec_params,
            name=self.name,
            namespace=self.namespace,
            labels=self.labels,
            annotations=self.annotations,
            queue_name=self.queue_name or None,
            volcano_queue=self.volcano_queue or None,
        )

    @property
    def default_namespace(self) -> str:
        return self.namespace or ((self.manifest or {}).get("metadata") or {}).get("namespace") or "default"

    @contextlib.contextmanager
    def lifecycle(self, *, validate_schema: bool = False) -> Iterator[RayClusterLifecycle]:
        with kube_objects(self.credentials, validate_schema=validate_schema) as (kube, schemas):
            yield RayClusterLifecycle(kube, schemas=schemas)


def _log_state(state: RayClusterState) -> None:
    get_run_logger().info("%s", state.describe())


@sync_and_async(name="create_raycluster", cache_policy=NO_CACHE, retry_condition_fn=is_retriable)
def create_raycluster(cluster: RayCluster, wait_until_ready: bool = True) -> dict[str, Any]:
    """Create the RayCluster (or re-attach to the one a previous try made) and wait until it is ready;
    returns namespace, name, state, head_pod_ready, ready/desired workers, head_service, created. A
    cluster that does not become ready is deleted before the task fails."""
    manifest = cluster.request().manifest()
    namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    with cluster.lifecycle(validate_schema=cluster.validate_schema) as clusters:
        clusters.validate(manifest)
        _, created = clusters.create_or_attach(manifest)
        get_run_logger().info("%s RayCluster %s/%s", "Created" if created else "Re-attached to", namespace, name)
        state = clusters.state(namespace, name)
        if wait_until_ready:
            try:
                state = clusters.wait_ready(
                    namespace,
                    name,
                    timeout=cluster.ready_timeout,
                    admission_timeout=cluster.admission_timeout,
                    on_change=_log_state,
                )
            except Exception:
                get_run_logger().warning("RayCluster %s/%s did not become ready: deleting it", namespace, name)
                clusters.delete(namespace, name, wait=False)
                raise
    return {**(state.to_dict() if state else {"namespace": namespace, "name": name}), "created": created}


@sync_and_async(name="scale_raycluster", cache_policy=NO_CACHE)
def scale_raycluster(
    cluster: RayCluster, name: str, group: str, replicas: int, wait: bool = True, namespace: str | None = None
) -> dict[str, Any]:
    """Set worker group ``group`` to ``replicas`` (refused outside its min/max) and wait for the workers."""
    namespace = namespace or cluster.default_namespace
    with cluster.lifecycle() as clusters:
        clusters.scale(namespace, name, group, replicas)
        state = (
            clusters.wait_workers(namespace, name, timeout=cluster.ready_timeout, on_change=_log_state)
            if wait
            else clusters.state(namespace, name)
        )
    return state.to_dict() if state else {}


@sync_and_async(name="delete_raycluster", cache_policy=NO_CACHE)
def delete_raycluster(cluster: RayCluster, name: str, wait: bool = True, namespace: str | None = None) -> bool:
    """Delete the RayCluster and wait until it is gone; False if it was already gone."""
    namespace = namespace or cluster.default_namespace
    with cluster.lifecycle() as clusters:
        deleted = clusters.delete(namespace, name, wait=wait)
    get_run_logger().info("RayCluster %s/%s %s", namespace, name, "deleted" if deleted else "was already gone")
    return deleted


def delete_rayclusters_hook(cluster: RayCluster) -> Callable[..., None]:
    """A flow hook for ``on_cancellation`` / ``on_crashed``: delete every RayCluster the flow run created
    (found by the run's labels), when the ``finally`` of the flow never ran."""

    def delete_rayclusters(flow: Any, flow_run: Any, state: Any) -> None:
        log = flow_run_logger(flow_run, flow)
        try:
            with cluster.lifecycle() as clusters:
                deleted = clusters.delete_run(cluster.default_namespace, flow.name, str(flow_run.id))
        except Exception as error:
            log.warning("could not delete the RayClusters of flow run %s (%s): %s", flow_run.id, state.name, error)
            return
        log.warning(
            "flow run %s is %s: deleted its RayClusters %s",
            flow_run.id,
            state.name,
            ", ".join(deleted) or "(none left)",
        )

    return delete_rayclusters
