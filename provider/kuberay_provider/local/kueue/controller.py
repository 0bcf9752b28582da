"""The Kueue stand-in's loop: on every change to a queue or a queued object, admit what fits.

Admission is what Kueue's job reconciler does once a Workload has quota: it unsuspends the job
(``spec.suspend: false``) and records a ``Started`` event on it. KubeRay takes it from there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from kuberay_provider.core.schedulers import KUEUE_QUEUE_LABEL

from ..controller.actions import EventSpec
from ..controller.api import RAYCLUSTERS, RAYJOBS, ApiError, ClusterAPI, ConflictError, Resource
from ..controller.clock import SystemClock
from ..controller.events import EventRecorder
from .admission import AdmissionPlan, QueueCounts, QueueView, Workload, plan_admissions
from .crds import GROUP, VERSION

log = logging.getLogger(__name__)
CLUSTERQUEUES = Resource("ClusterQueue", f"{GROUP}/{VERSION}", "clusterqueues", namespaced=False)
LOCALQUEUES = Resource("LocalQueue", f"{GROUP}/{VERSION}", "localqueues")
COMPONENT = "kueue-admission"
RESYNC_SECONDS = 10.0
WATCH_RETRY_SECONDS = 1.0
_WORKLOAD_RESOURCES = {"RayJob": RAYJOBS, "RayCluster": RAYCLUSTERS}


def _queued(obj: Mapping[str, Any]) -> bool:
    return bool(((obj.get("metadata") or {}).get("labels") or {}).get(KUEUE_QUEUE_LABEL))


async def _watch_forever(api: ClusterAPI, resource: Resource, wake: asyncio.Event) -> None:
    """Wake the admission loop for queue changes and for objects queued on Kueue (nothing else)."""
    while True:
        try:
            async for event in api.watch(resource):
                if resource in (CLUSTERQUEUES, LOCALQUEUES) or _queued(event.object):
                    wake.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("kueue: watch of %s failed: %s", resource.plural, exc)
        await asyncio.sleep(WATCH_RETRY_SECONDS)


class KueueAdmission:
    def __init__(self, api: ClusterAPI) -> None:
        self._api = api
        self._events = EventRecorder(api, SystemClock())

    async def admit_once(self) -> AdmissionPlan:
        cluster_queues = await self._api.list(CLUSTERQUEUES)
        local_queues = await self._api.list(LOCALQUEUES)
        if not cluster_queues and not local_queues:
            return AdmissionPlan()  # no Kueue set up: whatever is queued waits for a queue to appear
        objects = await self._api.list(RAYJOBS) + await self._api.list(RAYCLUSTERS)
        workloads = [w for w in map(Workload.from_object, objects) if w is not None]
        queues = QueueView.from_objects(cluster_queues, local_queues)
        plan = plan_admissions(queues, workloads)
        for workload in plan.admit:
            await self._admit(workload, queues.local_queues[(workload.namespace, workload.local_queue)])
        for obj in cluster_queues:
            await self._write_counts(CLUSTERQUEUES, obj, plan.cluster_queues.get(obj["metadata"]["name"]))
        for obj in local_queues:
            key = (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
            await self._write_counts(LOCALQUEUES, obj, plan.local_queues.get(key))
        return plan

    async def _admit(self, workload: Workload, cluster_queue: str) -> None:
        resource = _WORKLOAD_RESOURCES[workload.kind]
        current = await self._api.get(resource, workload.namespace, workload.name)
        if current is None or (current.get("spec") or {}).get("suspend") is not True:
            return
        current["spec"]["suspend"] = False
        try:
            admitted = await self._api.replace(resource, current)
        except ConflictError:
            return  # changed meanwhile: the next round sees the new version
        log.info(
            "kueue: admitted %s %s/%s (%s CPU) by ClusterQueue %s",
            workload.kind,
            workload.namespace,
            workload.name,
            workload.cpu,
            cluster_queue,
        )
        await self._events.record(
            admitted, EventSpec("Normal", "Started", "Admit", f"Admitted by clusterQueue {cluster_queue}"), COMPONENT
        )

    async def _write_counts(self, resource: Resource, obj: dict[str, Any], counts: QueueCounts | None) -> None:
        """The queue's pending / admitted counts (and a ClusterQueue's CPU in use) into its status."""
        found = counts or QueueCounts()
        wanted: dict[str, Any] = {"pendingWorkloads": found.pending, "admittedWorkloads": found.admitted}
        if resource is CLUSTERQUEUES:
            wanted["flavorsUsage"] = [{"name": "default", "resources": [{"name": "cpu", "total": str(found.cpu_used)}]}]
        status = obj.get("status") or {}
        if all(status.get(k) == v for k, v in wanted.items()):
            return
        try:
            await self._api.replace_status(resource, {**obj, "status": {**status, **wanted}})
        except ApiError as exc:  # stale or gone: the next round writes it again
            log.debug("kueue: status of %s not written: %s", obj["metadata"]["name"], exc)


async def run_kueue(api: ClusterAPI, stop: asyncio.Event, *, resync_seconds: float = RESYNC_SECONDS) -> None:
    """Admit queued RayJobs and RayClusters until ``stop`` is set."""
    wake = asyncio.Event()
    admission = KueueAdmission(api)
    watchers = [
        asyncio.create_task(_watch_forever(api, r, wake)) for r in (RAYJOBS, RAYCLUSTERS, CLUSTERQUEUES, LOCALQUEUES)
    ]
    try:
        while not stop.is_set():
            wake.clear()
            try:
                await admission.admit_once()
            except Exception:
                log.exception("kueue: admission round failed")
            waiters = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stop.wait())]
            await asyncio.wait(waiters, timeout=resync_seconds, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
    finally:
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
