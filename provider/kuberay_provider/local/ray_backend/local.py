"""LocalRayBackend: one real local Ray head shared by every RayCluster (a laptop has room for one).

Started with ``ray start --head`` bound to 127.0.0.1 on free ports, with this interpreter's bin directory
first on PATH (a job's ``python`` is whatever ``ray start`` found, and it must have ray), or attached to a
Ray the caller already runs (``dashboard_url=``). A RayCluster whose rayStartParams declare GPUs or custom
resources gets a head of its own advertising them (see LocalRayBackend). Jobs go through
``JobSubmissionClient``; Serve through the dashboard's REST API. Runtime envs' package lists follow the
backend's PackagePolicy (runtime_env.py). ``close()`` stops the heads this backend started, and only
their processes (the head: ray_head.py; finding and ending its processes: processes.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp

from kuberay_provider.core.jobs_api_errors import is_not_found, status_keeping_client_class

from .base import (
    BackendError,
    BackendNotice,
    ClusterEndpoints,
    ClusterRequest,
    JobAlreadyExistsError,
    JobInfo,
    JobRequest,
    JobSubmissionError,
    RayResources,
    cluster_key,
)
from .ray_head import RayHead, describe_resources, free_port, wait_for_dashboard
from .runtime_env import DEFAULT_PACKAGE_POLICY, PackagePolicy, adapt_runtime_env
from .volumes import PathMap, materialise

log = logging.getLogger(__name__)


NO_AGENT_YET = "No available agent"  # a just-started head: its job agent registers a few seconds later
AGENT_WAIT_SECONDS = 60.0


class LocalRayBackend:
    """RayClusters on local Rays: one shared head (started here, or attached to with ``dashboard_url``)
    serves every cluster, except a cluster whose rayStartParams declare GPUs or custom resources: that one
    gets a head of its own advertising exactly what it declares (logical resources; no GPU is needed), so
    jobs asking for them are scheduled as on the real cluster."""

    def __init__(
        self,
        *,
        work_dir: Path | None = None,
        num_cpus: int | None = None,
        dashboard_url: str | None = None,
        python_bin_dir: Path | None = None,
        start_timeout: float = 120.0,
        package_policy: PackagePolicy = DEFAULT_PACKAGE_POLICY,
    ) -> None:
        self._own_work_dir = work_dir is None
        self.work_dir = Path(work_dir or tempfile.mkdtemp(prefix="krp-ray-", dir="/tmp"))
        self.num_cpus = num_cpus or os.cpu_count() or 1
        self.python_bin_dir = python_bin_dir or Path(sys.executable).parent
        self.start_timeout = start_timeout
        self.package_policy = package_policy
        self._attached_url = dashboard_url.rstrip("/") if dashboard_url else None
        # On a Ray attached to, this backend picks Serve's HTTP port (set when it first deploys Serve there).
        self._attached_serve_port = free_port() if dashboard_url else None
        self._shared_head: RayHead | None = None
        self._dedicated_heads: dict[str, RayHead] = {}
        self._start_lock = asyncio.Lock()
        self._cluster_locks: dict[str, asyncio.Lock] = {}
        self._clients: dict[str, Any] = {}  # dashboard URL -> JobSubmissionClient
        self._path_maps: dict[str, PathMap] = {}
        self._jobs_by_cluster: dict[str, set[str]] = {}
        # Which cluster each job id the controller submitted belongs to. On a real cluster each RayCluster
        # has a Ray of its own, so a retry's new cluster does not know the last attempt's job id (spec.jobId
        # is reused); the shared head here must answer as if it did not either.
        self._job_owner: dict[str, str] = {}

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def ray_version(self) -> str:
        import ray

        return str(ray.__version__)

    @property
    def dashboard_url(self) -> str:
        """The shared Ray's dashboard ("" before start)."""
        if self._attached_url:
            return self._attached_url
        return self._shared_head.dashboard_url if self._shared_head else ""

    async def start(self) -> None:
        """Start (or attach to) the shared Ray head once; later calls return at once."""
        async with self._start_lock:
            if self.dashboard_url in self._clients:
                return
            if not self._attached_url:
                head = RayHead(
                    self.work_dir / "ray", self.python_bin_dir, RayResources(num_cpus=self.num_cpus), self.start_timeout
                )
                await asyncio.to_thread(head.start)
                self._shared_head = head
            try:
                await self._connect(self.dashboard_url)
            except BaseException:
                await self.close()
                raise

    async def _connect(self, url: str) -> Any:
        await wait_for_dashboard(url, self.start_timeout)
        # Its errors keep the HTTP status: a missing job is a 404, whatever the answer's text says.
        self._clients[url] = await asyncio.to_thread(status_keeping_client_class(), url)
        return self._clients[url]

    async def close(self) -> None:
        self._clients.clear()
        heads = list(self._dedicated_heads.values()) + ([self._shared_head] if self._shared_head else [])
        self._dedicated_heads.clear()
        self._shared_head = None
        for head in heads:
            await asyncio.to_thread(head.stop)
        if self._own_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    # -- clusters ------------------------------------------------------------------------------
    def _head_of(self, namespace: str, cluster: str) -> RayHead | None:
        """The Ray serving a cluster: its dedicated head, else None for the shared one."""
        return self._dedicated_heads.get(cluster_key(namespace, cluster))

    def _dashboard_of(self, namespace: str, cluster: str) -> str:
        head = self._head_of(namespace, cluster)
        return head.dashboard_url if head else self.dashboard_url

    def _urls_of(self, head: RayHead | None) -> dict[str, str]:
        if head is not None:
            return head.ports.urls()
        if self._attached_url:
            return {"dashboard": self._attached_url, "serve": f"http://127.0.0.1:{self._attached_serve_port}"}
        assert self._shared_head is not None
        return self._shared_head.ports.urls()

    async def ensure_cluster(self, request: ClusterRequest) -> ClusterEndpoints:
        await self.start()
        root = self.work_dir / "clusters" / request.namespace / request.name
        self._path_maps[request.key] = await asyncio.to_thread(materialise, request.config_map_mounts, root)
        head = None
        notices: tuple[BackendNotice, ...] = ()
        if request.dedicated_resources is not None:
            head = await self._ensure_dedicated_head(request.key, request.dedicated_resources)
            notices = (
                BackendNotice(
                    "Normal",
                    "LocalDedicatedRay",
                    "Local control plane: rayStartParams declare GPUs "
                    f"or custom resources, so this cluster runs on a Ray of its own with "
                    f"{describe_resources(request.dedicated_resources)} (logical resources)",
                ),
            )
        warnings: tuple[str, ...] = ()
        if request.ray_version and request.ray_version != self.ray_version:
            warnings = (
                f"rayVersion {request.ray_version} differs from the local Ray {self.ray_version}; running on the local Ray",
            )
        return ClusterEndpoints(urls=self._urls_of(head), pod_ip="127.0.0.1", warnings=warnings, notices=notices)

    async def _ensure_dedicated_head(self, key: str, resources: RayResources) -> RayHead:
        async with self._cluster_locks.setdefault(key, asyncio.Lock()):
            head = self._dedicated_heads.get(key)
            if head is not None and head.resources == resources:
                return head
            if head is not None:  # the declared resources changed: a new head, as new pods would be
                await asyncio.to_thread(head.stop)
            # A short path of its own: Ray's socket paths under it must stay within AF_UNIX's 107 bytes.
            temp_dir = Path(tempfile.mkdtemp(prefix="krp-head-", dir="/tmp"))
            head = RayHead(temp_dir, self.python_bin_dir, resources, self.start_timeout, remove_temp_dir=True)
            await asyncio.to_thread(head.start)
            self._dedicated_heads[key] = head
            try:
                await self._connect(head.dashboard_url)
            except BaseException:
                await self._stop_dedicated_head(key)
                raise
            return head

    async def _stop_dedicated_head(self, key: str) -> None:
        head = self._dedicated_heads.pop(key, None)
        if head is not None:
            self._clients.pop(head.dashboard_url, None)
            await asyncio.to_thread(head.stop)

    async def delete_cluster(self, namespace: str, name: str) -> None:
        key = cluster_key(namespace, name)
        self._path_maps.pop(key, None)
        if key in self._dedicated_heads:
            self._jobs_by_cluster.pop(key, None)
            await self._stop_dedicated_head(key)  # its jobs end with it
            return
        for job_id in self._jobs_by_cluster.pop(key, set()):
            if self._clients:
                await self.stop_job(namespace, name, job_id)

    # -- jobs ----------------------------------------------------------------------------------
    def _client_of(self, namespace: str, cluster: str) -> Any:
        client = self._clients.get(self._dashboard_of(namespace, cluster))
        if client is None:
            raise BackendError("the local Ray is not started")
        return client

    async def submit_job(self, namespace: str, cluster: str, request: JobRequest) -> tuple[BackendNotice, ...]:
        await self.start()
        client = self._client_of(namespace, cluster)
        paths = self._path_maps.get(cluster_key(namespace, cluster), PathMap())
        adapted = adapt_runtime_env(paths.rewrite_runtime_env(request.runtime_env), self.package_policy)
        submission = {
            "entrypoint": paths.rewrite(request.entrypoint),
            "submission_id": request.job_id,
            "runtime_env": adapted.runtime_env,
            "metadata": dict(request.metadata) if request.metadata else None,
            "entrypoint_num_cpus": request.num_cpus,
            "entrypoint_num_gpus": request.num_gpus,
            "entrypoint_resources": dict(request.resources) if request.resources else None,
        }
        owner = self._job_owner.get(request.job_id)
        if owner is not None and owner != cluster_key(namespace, cluster):
            await self._forget_job(client, request.job_id)
        await self._submit_when_agent_ready(client, submission)
        self._jobs_by_cluster.setdefault(cluster_key(namespace, cluster), set()).add(request.job_id)
        self._job_owner[request.job_id] = cluster_key(namespace, cluster)
        return adapted.notices

    def _elsewhere(self, namespace: str, cluster: str, job_id: str) -> bool:
        """The job id was submitted to another cluster: this cluster's Ray would not know it."""
        owner = self._job_owner.get(job_id)
        return owner is not None and owner != cluster_key(namespace, cluster)

    @staticmethod
    async def _forget_job(client: Any, job_id: str) -> None:
        """Free a job id an earlier cluster used (stopped, then deleted from the shared Ray), so a retry on a
        new cluster can submit it again, as on a real new cluster."""
        with contextlib.suppress(Exception):
            await asyncio.to_thread(client.stop_job, job_id)
        for _ in range(20):
            try:
                await asyncio.to_thread(client.delete_job, job_id)
                return
            except Exception as exc:
                if is_not_found(exc):
                    return
            await asyncio.sleep(0.5)

    async def _submit_when_agent_ready(self, client: Any, submission: Mapping[str, Any]) -> None:
        deadline = time.monotonic() + AGENT_WAIT_SECONDS
        while True:
            try:
                await asyncio.to_thread(client.submit_job, **submission)
                return
            except Exception as exc:  # the SDK raises plain RuntimeError with the HTTP answer in it
                text = str(exc)
                if "already exists" in text or "different submission_id" in text:
                    raise JobAlreadyExistsError(text) from exc
                if NO_AGENT_YET not in text or time.monotonic() > deadline:
                    raise JobSubmissionError(text) from exc
            await asyncio.sleep(1.0)

    async def job_info(self, namespace: str, cluster: str, job_id: str) -> JobInfo | None:
        if self._elsewhere(namespace, cluster, job_id):
            return None
        client = self._client_of(namespace, cluster)
        try:
            details = await asyncio.to_thread(client.get_job_info, job_id)
        except Exception as exc:
            if is_not_found(exc):
                return None
            raise BackendError(str(exc)) from exc
        return JobInfo(
            job_id=job_id,
            status=str(getattr(details.status, "value", details.status)),
            message=details.message or "",
            start_time_ms=int(details.start_time or 0),
            end_time_ms=int(details.end_time or 0),
            entrypoint=details.entrypoint or "",
            metadata=dict(details.metadata or {}),
        )

    async def stop_job(self, namespace: str, cluster: str, job_id: str) -> bool:
        if self._elsewhere(namespace, cluster, job_id):
            return False
        client = self._client_of(namespace, cluster)
        try:
            return bool(await asyncio.to_thread(client.stop_job, job_id))
        except Exception as exc:
            if is_not_found(exc):
                return False
            raise BackendError(str(exc)) from exc

    async def job_logs(self, namespace: str, cluster: str, job_id: str) -> str:
        client = self._client_of(namespace, cluster)
        try:
            return str(await asyncio.to_thread(client.get_job_logs, job_id))
        except Exception as exc:
            raise BackendError(str(exc)) from exc

    # -- serve ---------------------------------------------------------------------------------
    async def deploy_serve(self, namespace: str, cluster: str, config: Mapping[str, Any]) -> tuple[BackendNotice, ...]:
        """PUT /api/serve/applications/, with Serve's HTTP proxy bound to the cluster head's serve port."""
        await self.start()
        body = dict(config)
        head = self._head_of(namespace, cluster) or self._shared_head
        serve_port = head.ports.serve if head is not None else self._attached_serve_port
        if serve_port is not None:
            body["http_options"] = {**(body.get("http_options") or {}), "host": "127.0.0.1", "port": serve_port}
        paths = self._path_maps.get(cluster_key(namespace, cluster), PathMap())
        applications: list[Any] = []
        notices: list[BackendNotice] = []
        for app in body.get("applications") or []:
            if app.get("runtime_env"):
                adapted = adapt_runtime_env(paths.rewrite_runtime_env(app["runtime_env"]), self.package_policy)
                app = {**app, "runtime_env": adapted.runtime_env or {}}
                notices += adapted.notices
            applications.append(app)
        body["applications"] = applications
        async with (
            aiohttp.ClientSession() as session,
            session.put(f"{self._dashboard_of(namespace, cluster)}/api/serve/applications/", json=body) as resp,
        ):
            if resp.status >= 300:
                raise BackendError(f"Serve config refused ({resp.status}): {(await resp.text())[:2000]}")
        return tuple(notices)

    async def serve_status(self, namespace: str, cluster: str) -> Mapping[str, Any]:
        await self.start()
        url = f"{self._dashboard_of(namespace, cluster)}/api/serve/applications/"
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            if resp.status >= 300:
                raise BackendError(f"Serve status unavailable ({resp.status})")
            data = await resp.json()
        return data.get("applications") or {}
