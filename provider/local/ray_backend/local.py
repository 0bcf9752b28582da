"""LocalRayBackend: one real local Ray head shared by every RayCluster (a laptop has room for one).

Started with ``ray start --head`` bound to 127.0.0.1 on free ports, with this interpreter's bin directory
first on PATH (a job's ``python`` is whatever ``ray start`` found, and it must have ray), or attached to a
Ray the caller already runs (``dashboard_url=``). Jobs go through ``JobSubmissionClient``; Serve through the
dashboard's REST API. ``close()`` stops the head only if this backend started it, and only its processes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import aiohttp

from .base import (
    BackendError,
    ClusterEndpoints,
    ClusterRequest,
    JobAlreadyExistsError,
    JobInfo,
    JobRequest,
    JobSubmissionError,
    cluster_key,
)
from .volumes import PathMap, materialise

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class HeadPorts:
    gcs: int = field(default_factory=free_port)
    dashboard: int = field(default_factory=free_port)
    client: int = field(default_factory=free_port)
    metrics: int = field(default_factory=free_port)
    serve: int = field(default_factory=free_port)
    # Ray's fixed default (52365) collides with any other Ray head on the machine; the job agent behind
    # it then never starts and every submission answers "No available agent to submit job".
    dashboard_agent: int = field(default_factory=free_port)

    def urls(self) -> dict[str, str]:
        """Port name (as KubeRay names the head Service's ports) -> base URL."""
        return {
            "dashboard": f"http://127.0.0.1:{self.dashboard}",
            "gcs-server": f"http://127.0.0.1:{self.gcs}",
            "client": f"http://127.0.0.1:{self.client}",
            "metrics": f"http://127.0.0.1:{self.metrics}",
            "serve": f"http://127.0.0.1:{self.serve}",
        }


def ray_environment(python_bin_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{python_bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    # Ray 2.5x turns token auth on when a token file exists; this head listens on 127.0.0.1 only and is
    # reached through the local API server's service proxy, whose clients carry no Ray token.
    env["RAY_AUTH_MODE"] = "disabled"
    # Without it `ray start --node-ip-address=127.0.0.1` swaps in the machine's routable address (so the
    # agents listen there): a single-node Ray keeps to the loopback, as on macOS and Windows.
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    return env


@dataclass(frozen=True)
class ProcessTable:
    """Parent and process group of every process, read from /proc."""

    parents: dict[int, int]
    groups: dict[int, int]

    @classmethod
    def read(cls) -> ProcessTable:
        parents: dict[int, int] = {}
        groups: dict[int, int] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                pid = int(stat.parent.name)
                parents[pid], groups[pid] = int(fields[1]), int(fields[2])
            except (OSError, IndexError, ValueError):
                continue
        return cls(parents, groups)

    def descendants(self, roots: set[int]) -> set[int]:
        found = set(roots)
        changed = True
        while changed:
            children = {pid for pid, parent in self.parents.items() if parent in found} - found
            found |= children
            changed = bool(children)
        return found


def _processes_naming(marker: bytes) -> set[int]:
    pids = set()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker in cmdline.read_bytes():
                pids.add(int(cmdline.parent.name))
        except OSError:
            continue
    return pids


def processes_of_session(temp_dir: Path) -> list[int]:
    """PIDs of the Ray processes started with ``temp_dir`` (their command lines name it), the rest of
    their process groups and all their descendants (workers, agents). Another Ray on the machine is left
    alone, unlike ``ray stop``.

    The process group matters: ``ray start`` makes itself a group leader and exits, so orphans such as
    the Ray client server (whose command line does not name the temp dir) are found only through it."""
    roots = _processes_naming(str(temp_dir).encode()) - {os.getpid()}
    table = ProcessTable.read()
    ray_groups = {table.groups[pid] for pid in roots if pid in table.groups} - {os.getpgrp()}
    roots |= {pid for pid, group in table.groups.items() if group in ray_groups}
    return sorted(table.descendants(roots) - {os.getpid()})


def terminate(pids: list[int], grace_seconds: float = 10.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace_seconds
        while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
            time.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


class LocalRayBackend:
    def __init__(
        self,
        *,
        work_dir: Path | None = None,
        num_cpus: int | None = None,
        dashboard_url: str | None = None,
        python_bin_dir: Path | None = None,
        start_timeout: float = 120.0,
    ) -> None:
        self._own_work_dir = work_dir is None
        self.work_dir = Path(work_dir or tempfile.mkdtemp(prefix="krp-ray-", dir="/tmp"))
        self.num_cpus = num_cpus or os.cpu_count() or 1
        self.python_bin_dir = python_bin_dir or Path(sys.executable).parent
        self.start_timeout = start_timeout
        self._attached_url = dashboard_url.rstrip("/") if dashboard_url else None
        self._ports: HeadPorts | None = None
        self._started_here = False
        self._start_lock = asyncio.Lock()
        self._client: Any = None
        self._path_maps: dict[str, PathMap] = {}
        self._jobs_by_cluster: dict[str, set[str]] = {}

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def ray_version(self) -> str:
        import ray

        return str(ray.__version__)

    @property
    def dashboard_url(self) -> str:
        if self._attached_url:
            return self._attached_url
        return f"http://127.0.0.1:{self._ports.dashboard}" if self._ports else ""

    def _urls(self) -> dict[str, str]:
        if self._attached_url:
            return {"dashboard": self._attached_url}
        assert self._ports is not None
        return self._ports.urls()

    async def start(self) -> None:
        """Start (or attach to) the Ray head once; later calls return at once."""
        async with self._start_lock:
            if self._client is not None:
                return
            if not self._attached_url:
                await asyncio.to_thread(self._ray_start)
            try:
                await self._wait_for_dashboard()
            except BaseException:
                await self.close()
                raise
            from ray.job_submission import JobSubmissionClient

            self._client = await asyncio.to_thread(JobSubmissionClient, self.dashboard_url)

    def _ray_start(self) -> None:
        ports = HeadPorts()
        temp_dir = self.work_dir / "ray"
        temp_dir.mkdir(parents=True, exist_ok=True)
        command = [
            str(self.python_bin_dir / "ray"), "start", "--head",
            "--node-ip-address=127.0.0.1",
            f"--port={ports.gcs}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={ports.dashboard}",
            "--include-dashboard=true",
            f"--ray-client-server-port={ports.client}",
            f"--metrics-export-port={ports.metrics}",
            f"--dashboard-agent-listen-port={ports.dashboard_agent}",
            f"--num-cpus={self.num_cpus}",
            f"--temp-dir={temp_dir}",
            "--disable-usage-stats",
        ]
        result = subprocess.run(command, env=ray_environment(self.python_bin_dir), capture_output=True, text=True, timeout=self.start_timeout)
        if result.returncode != 0:
            raise BackendError(f"ray start failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
        self._ports = ports
        self._started_here = True

    async def _wait_for_dashboard(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    async with session.get(f"{self.dashboard_url}/api/version", timeout=aiohttp.ClientTimeout(total=5)) as resp:
                        if resp.status == 200:
                            return
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    raise BackendError(f"the Ray dashboard at {self.dashboard_url} did not come up")
                await asyncio.sleep(0.5)

    async def close(self) -> None:
        self._client = None
        if self._started_here:
            # Not `ray stop`: that stops every Ray of the machine, other sessions' included.
            await asyncio.to_thread(terminate, processes_of_session(self.work_dir / "ray"))
            self._started_here = False
        if self._own_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    # -- clusters ------------------------------------------------------------------------------
    async def ensure_cluster(self, request: ClusterRequest) -> ClusterEndpoints:
        await self.start()
        root = self.work_dir / "clusters" / request.namespace / request.name
        self._path_maps[request.key] = await asyncio.to_thread(materialise, request.config_map_mounts, root)
        warnings: tuple[str, ...] = ()
        if request.ray_version and request.ray_version != self.ray_version:
            warnings = (f"rayVersion {request.ray_version} differs from the local Ray {self.ray_version}; running on the local Ray",)
        return ClusterEndpoints(urls=self._urls(), pod_ip="127.0.0.1", warnings=warnings)

    async def delete_cluster(self, namespace: str, name: str) -> None:
        key = cluster_key(namespace, name)
        self._path_maps.pop(key, None)
        for job_id in self._jobs_by_cluster.pop(key, set()):
            if self._client is not None:
                await self.stop_job(namespace, name, job_id)

    # -- jobs ----------------------------------------------------------------------------------
    def _require_client(self) -> Any:
        if self._client is None:
            raise BackendError("the local Ray is not started")
        return self._client

    async def submit_job(self, namespace: str, cluster: str, request: JobRequest) -> None:
        await self.start()
        client = self._require_client()
        paths = self._path_maps.get(cluster_key(namespace, cluster), PathMap())
        try:
            await asyncio.to_thread(
                client.submit_job,
                entrypoint=paths.rewrite(request.entrypoint),
                submission_id=request.job_id,
                runtime_env=paths.rewrite_runtime_env(request.runtime_env),
                metadata=dict(request.metadata) if request.metadata else None,
                entrypoint_num_cpus=request.num_cpus,
                entrypoint_num_gpus=request.num_gpus,
                entrypoint_resources=dict(request.resources) if request.resources else None,
            )
        except Exception as exc:  # the SDK raises plain RuntimeError with the HTTP answer in it
            text = str(exc)
            if "already exists" in text or "different submission_id" in text:
                raise JobAlreadyExistsError(text) from exc
            raise JobSubmissionError(text) from exc
        self._jobs_by_cluster.setdefault(cluster_key(namespace, cluster), set()).add(request.job_id)

    async def job_info(self, namespace: str, cluster: str, job_id: str) -> JobInfo | None:
        client = self._require_client()
        try:
            details = await asyncio.to_thread(client.get_job_info, job_id)
        except Exception as exc:
            if "404" in str(exc) or "does not exist" in str(exc):
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
        client = self._require_client()
        try:
            return bool(await asyncio.to_thread(client.stop_job, job_id))
        except Exception as exc:
            if "404" in str(exc) or "does not exist" in str(exc):
                return False
            raise BackendError(str(exc)) from exc

    async def job_logs(self, namespace: str, cluster: str, job_id: str) -> str:
        client = self._require_client()
        try:
            return str(await asyncio.to_thread(client.get_job_logs, job_id))
        except Exception as exc:
            raise BackendError(str(exc)) from exc

    # -- serve ---------------------------------------------------------------------------------
    async def deploy_serve(self, namespace: str, cluster: str, config: Mapping[str, Any]) -> None:
        """PUT /api/serve/applications/, with Serve's HTTP proxy bound to this backend's serve port."""
        await self.start()
        body = dict(config)
        if self._ports is not None:
            body["http_options"] = {**(body.get("http_options") or {}), "host": "127.0.0.1", "port": self._ports.serve}
        paths = self._path_maps.get(cluster_key(namespace, cluster), PathMap())
        body["applications"] = [
            {**app, "runtime_env": paths.rewrite_runtime_env(app.get("runtime_env"))} if app.get("runtime_env") else app
            for app in body.get("applications") or []
        ]
        async with aiohttp.ClientSession() as session:
            async with session.put(f"{self.dashboard_url}/api/serve/applications/", json=body) as resp:
                if resp.status >= 300:
                    raise BackendError(f"Serve config refused ({resp.status}): {(await resp.text())[:2000]}")

    async def serve_status(self, namespace: str, cluster: str) -> Mapping[str, Any]:
        await self.start()
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{self.dashboard_url}/api/serve/applications/") as resp:
                if resp.status >= 300:
                    raise BackendError(f"Serve status unavailable ({resp.status})")
                data = await resp.json()
        return data.get("applications") or {}
