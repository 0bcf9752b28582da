"""A minimal Volcano for the local control plane: what Volcano's ``ray`` job plugin gives a Ray workload
that has no RayCluster at all. A development and test stand-in only.

A Volcano Job (batch.volcano.sh/v1alpha1) whose ``spec.plugins`` names ``ray`` gets, as the plugin's
``OnJobAdd`` makes it, a Service ``<job>-head-svc`` with the ports ``gcs`` 6379, ``dashboard`` 8265 and
``client-server`` 10001, owned by the Job; here it is routed to the local Ray, so the Ray Jobs API is
reachable through the API server's service proxy as on a real cluster. The Job is marked Running; its
Pods, gang scheduling and queues are not simulated.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Mapping
from typing import Any

from .controller.api import SERVICES, ApiError, ClusterAPI, Resource
from .controller.services import with_endpoints_annotation
from .ray_backend.base import ClusterRequest, RayBackend

log = logging.getLogger(__name__)
GROUP, VERSION = "batch.volcano.sh", "v1alpha1"
VOLCANO_JOBS = Resource("Job", f"{GROUP}/{VERSION}", "jobs")
RAY_PLUGIN = "ray"
HEAD_PORTS = (("gcs", 6379), ("dashboard", 8265), ("client-server", 10001))  # the plugin's defaults
WATCH_RETRY_SECONDS = 1.0

VOLCANO_JOB_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"jobs.{GROUP}"},
    "spec": {
        "group": GROUP,
        "names": {
            "kind": "Job",
            "listKind": "JobList",
            "plural": "jobs",
            "singular": "job",
            "shortNames": ["vcjob", "vj"],
        },
        "scope": "Namespaced",
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Status", "type": "string", "jsonPath": ".status.state.phase"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "apiVersion": {"type": "string"},
                            "kind": {"type": "string"},
                            "metadata": {"type": "object"},
                            "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                        },
                    }
                },
            }
        ],
    },
}


def volcano_crds() -> list[dict[str, Any]]:
    return [copy.deepcopy(VOLCANO_JOB_CRD)]


def head_service_name(job_name: str) -> str:
    return f"{job_name}-head-svc"


def uses_ray_plugin(job: Mapping[str, Any]) -> bool:
    return RAY_PLUGIN in ((job.get("spec") or {}).get("plugins") or {})


def head_service(job: Mapping[str, Any], backend_urls: Mapping[str, str]) -> dict[str, Any]:
    """The Service the ray plugin creates for the head task, routed to the local Ray."""
    meta = job["metadata"]
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": head_service_name(meta["name"]),
            "namespace": meta["namespace"],
            "ownerReferences": [
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "Job",
                    "name": meta["name"],
                    "uid": meta.get("uid", ""),
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "selector": {
                "volcano.sh/job-name": meta["name"],
                "volcano.sh/job-namespace": meta["namespace"],
                "volcano.sh/task-spec": "head",
            },
            "ports": [{"name": name, "port": port, "targetPort": name, "protocol": "TCP"} for name, port in HEAD_PORTS],
        },
    }
    return with_endpoints_annotation(service, backend_urls)


class VolcanoRayPlugin:
    def __init__(self, api: ClusterAPI, backend: RayBackend) -> None:
        self._api, self._backend = api, backend

    async def job_added(self, job: dict[str, Any]) -> None:
        meta = job["metadata"]
        if not uses_ray_plugin(job) or meta.get("deletionTimestamp"):
            return
        if await self._api.get(SERVICES, meta["namespace"], head_service_name(meta["name"])) is None:
            endpoints = await self._backend.ensure_cluster(ClusterRequest(meta["namespace"], meta["name"]))
            try:
                await self._api.create(SERVICES, meta["namespace"], head_service(job, endpoints.urls))
                log.info(
                    "volcano: Service %s/%s for the ray plugin of Job %s",
                    meta["namespace"],
                    head_service_name(meta["name"]),
                    meta["name"],
                )
            except ApiError as exc:
                if exc.status != 409:
                    raise
        if ((job.get("status") or {}).get("state") or {}).get("phase") != "Running":
            try:
                await self._api.replace_status(
                    VOLCANO_JOBS, {**job, "status": {**(job.get("status") or {}), "state": {"phase": "Running"}}}
                )
            except ApiError as exc:  # changed meanwhile: its next event comes back here
                log.debug("volcano: status of Job %s not written: %s", meta["name"], exc)

    async def job_deleted(self, job: Mapping[str, Any]) -> None:
        meta = job["metadata"]
        if uses_ray_plugin(job):
            await self._api.delete(SERVICES, meta["namespace"], head_service_name(meta["name"]))  # OnJobDelete
            await self._backend.delete_cluster(meta["namespace"], meta["name"])


async def run_volcano(api: ClusterAPI, backend: RayBackend, stop: asyncio.Event) -> None:
    """Serve the ray plugin for Volcano Jobs until ``stop`` is set."""
    plugin = VolcanoRayPlugin(api, backend)

    async def watch_forever() -> None:
        while True:
            try:
                async for event in api.watch(VOLCANO_JOBS):
                    if event.type == "DELETED":
                        await plugin.job_deleted(event.object)
                    else:
                        await plugin.job_added(event.object)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("volcano: watch of jobs failed: %s", exc)
            await asyncio.sleep(WATCH_RETRY_SECONDS)

    task = asyncio.create_task(watch_forever())
    try:
        await stop.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
