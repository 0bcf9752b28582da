"""RayService from Prefect: the ``RayService`` block and tasks to deploy (create or update, then wait
until the new spec is served, an upgrade included), wait, and delete."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from prefect import get_run_logger
from prefect.blocks.core import Block
from prefect.cache_policies import NO_CACHE
from prefect_kubernetes.credentials import KubernetesCredentials
from pydantic import Field, field_validator

from kuberay_provider.core.services import (
    RAYSERVICE_KEYWORDS,
    RayServiceLifecycle,
    RayServiceState,
    rayservice_manifest,
)
from kuberay_provider.prefect.blocks import RAY_DOCS_URL, RAY_LOGO_URL, kube_objects, refuse_unknown_spec_fields
from kuberay_provider.prefect.dispatch import sync_and_async
from kuberay_provider.prefect.tasks import is_retriable


class RayService(Block):
    """A KubeRay RayService (``ray.io/v1``): a base ``manifest`` and/or ``serve_config`` (a dict, written
    as serveConfigV2), ``ray_cluster_config`` and other spec fields in snake_case in ``spec_params``."""

    _block_type_name = "Ray Service"
    _logo_url = RAY_LOGO_URL  # type: ignore[assignment]  # Prefect types it HttpUrl; its own blocks set a str
    _documentation_url = RAY_DOCS_URL + "rayservice-quick-start.html"  # type: ignore[assignment]  # Prefect types it HttpUrl; its own blocks set a str
    _code_example = """
    from prefect import flow

    from kuberay_provider.prefect import RayService, deploy_rayservice

    service = RayService.load("BLOCK_NAME")


    @flow
    def release() -> dict:
        return deploy_rayservice(service)  # waits until KubeRay serves the new spec
    """
    _description = "A Ray Serve application on Kubernetes through KubeRay's RayService."

    manifest: dict[str, Any] | None = Field(default=None, description="A base RayService manifest (ray.io/v1).")
    name: str | None = Field(default=None, description="The RayService's name (default: the manifest's).")
    namespace: str | None = Field(default=None, description="Default: the manifest's, else 'default'.")
    serve_config: dict[str, Any] | None = Field(default=None, description="The Serve config (serveConfigV2) as a dict.")
    ray_cluster_config: dict[str, Any] | None = Field(default=None, description="The RayCluster spec it runs on.")
    spec_params: dict[str, Any] = Field(default_factory=dict, description="Other RayService spec fields in snake_case.")
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    credentials: KubernetesCredentials = Field(  # repr=False: a block in a message or log never shows the kubeconfig
        default_factory=KubernetesCredentials, description="Kubernetes credentials (prefect-kubernetes).", repr=False
    )
    ready_timeout: float | None = Field(default=900, description="Seconds to wait until the new spec is served.")
    queue_name: str | None = Field(
        default=None,
        description="A Kueue LocalQueue: created suspended, labelled kueue.x-k8s.io/queue-name; Kueue admits it.",
    )
    volcano_queue: str | None = Field(
        default=None,
        description="A Volcano Queue: sets ray.io/scheduler-name=volcano and volcano.sh/queue-name.",
    )
    validate_schema: bool = Field(
        default=True, description="Also check the RayService against the CRD schema on the cluster."
    )

    @field_validator("spec_params")
    @classmethod
    def _known_spec_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        return refuse_unknown_spec_fields(value, RAYSERVICE_KEYWORDS, "RayService")

    def to_manifest(self) -> dict[str, Any]:
        params = {**self.spec_params, "serve_config": self.serve_config, "ray_cluster_config": self.ray_cluster_config}
        return rayservice_manifest(
            self.name,
            self.namespace,
            rayservice=self.manifest,
            labels=self.labels or None,
            annotations=self.annotations or None,
            queue_name=self.queue_name or None,
            volcano_queue=self.volcano_queue or None,
            **{k: v for k, v in params.items() if v is not None},
        )

    @contextlib.contextmanager
    def lifecycle(self, *, validate_schema: bool = False) -> Iterator[RayServiceLifecycle]:
        with kube_objects(self.credentials, validate_schema=validate_schema) as (kube, schemas):
            yield RayServiceLifecycle(kube, schemas=schemas)


def _log_state(state: RayServiceState) -> None:
    get_run_logger().info("%s", state.describe())


@sync_and_async(name="deploy_rayservice", cache_policy=NO_CACHE, retry_condition_fn=is_retriable)
def deploy_rayservice(service: RayService, wait: bool = True) -> dict[str, Any]:
    """Create the RayService or update its spec, and wait until KubeRay serves it: the new generation's
    applications running as read after the change (a Serve config change is redeployed in place; a cluster
    config change is an upgrade, waited for until traffic moved). A failed application, a spec KubeRay
    refused or an initializing timeout raises RayServiceFailed at once, saying what to do.
    Returns namespace, name, ready, upgrading, active/pending cluster, applications, pending_applications,
    serve_endpoint, serve_service and ``change`` (created, updated, unchanged)."""
    manifest = service.to_manifest()
    namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    with service.lifecycle(validate_schema=service.validate_schema) as services:
        services.validate(manifest)
        _, change = services.apply(manifest)
        get_run_logger().info("RayService %s/%s %s", namespace, name, change)
        state = (
            services.wait_ready(namespace, name, timeout=service.ready_timeout, on_change=_log_state)
            if wait
            else services.state(namespace, name)
        )
    assert state is not None
    return {**state.to_dict(), "change": change}


@sync_and_async(name="wait_for_rayservice", cache_policy=NO_CACHE)
def wait_for_rayservice(service: RayService) -> dict[str, Any]:
    """Wait until the RayService serves its latest spec (its applications running, Ready, no upgrade in
    progress); fails as ``deploy_rayservice`` does."""
    manifest = service.to_manifest()
    with service.lifecycle() as services:
        state = services.wait_ready(
            manifest["metadata"]["namespace"],
            manifest["metadata"]["name"],
            timeout=service.ready_timeout,
            on_change=_log_state,
        )
    return state.to_dict()


@sync_and_async(name="delete_rayservice", cache_policy=NO_CACHE)
def delete_rayservice(service: RayService) -> bool:
    """Delete the RayService (its clusters and Services go with it) and wait until it is gone (KubeRay's
    finalizer holds it until its clusters are deleted); False if it was already gone."""
    manifest = service.to_manifest()
    namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    with service.lifecycle() as services:
        deleted = services.delete(namespace, name)
    get_run_logger().info("RayService %s/%s %s", namespace, name, "deleted" if deleted else "was already gone")
    return deleted
