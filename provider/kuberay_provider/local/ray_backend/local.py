"""LocalRayBackend: one real local Ray head shared by every RayCluster (a laptop has room for one).

Started with ``ray start --head`` bound to 127.0.0.1 on free ports, with this interpreter's bin directory
first on PATH (a job's ``python`` is whatever ``ray start`` found, and it must have ray), or attached to a
Ray the caller already runs (``dashboard_url=``). A RayCluster whose rayStartParams declare GPUs or custom
resources gets a head of its own advertising them (see LocalRayBackend). Jobs go through
``JobSubmissionClient``; Serve through the dashboard's REST API. Runtime envs' package lists follow the
backend's PackagePolicy (runtime_env.py). ``close()`` stops the heads this backend started, and only
their processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
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
from .runtime_env import DEFAULT_PACKAGE_POLICY, PackagePolicy, adapt_runtime_env
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


def terminate(pids: list[int], grace_seconds: float = 2.0, kill_wait_seconds: float = 10.0) -> None:
    """SIGTERM, then SIGKILL what is left after ``grace_seconds``. The grace is short on purpose: the
    GCS server and raylet of a head being torn down whole ignore SIGTERM for 10 s or more, and nothing
    of the session is kept anyway."""
    for sig, wait_seconds in ((signal.SIGTERM, grace_seconds), (signal.SIGKILL, kill_wait_seconds)):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
            time.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


NO_AGENT_YET = "No available agent"  # a just-started head: its job agent registers a few seconds later
AGENT_WAIT_SECONDS = 60.0


def _last_line(text: str) -> str:
    """The error itself: the last line of a traceback."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][-500:] if lines else "no output"


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


class RayHead:
    """One ``ray start --head`` on 127.0.0.1 with free ports and its own temp dir, owned by this process:
    ``stop()`` ends its processes only (never ``ray stop``, which would end every Ray of the machine)."""

    def __init__(
        self,
        temp_dir: Path,
        python_bin_dir: Path,
        resources: RayResources,
        start_timeout: float,
        *,
        remove_temp_dir: bool = False,
    ) -> None:
        self.temp_dir = temp_dir
        self.remove_temp_dir = remove_temp_dir
        self.python_bin_dir = python_bin_dir
        self.resources = resources
        self.start_timeout = start_timeout
        self.ports = HeadPorts()

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.dashboard}"

    def command(self) -> list[str]:
        ports = self.ports
        command = [
            str(self.python_bin_dir / "ray"),
            "start",
            "--head",
            "--node-ip-address=127.0.0.1",
            f"--port={ports.gcs}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={ports.dashboard}",
            "--include-dashboard=true",
            f"--ray-client-server-port={ports.client}",
            f"--metrics-export-port={ports.metrics}",
            f"--dashboard-agent-listen-port={ports.dashboard_agent}",
            f"--num-cpus={_format_number(self.resources.num_cpus)}",
            f"--temp-dir={self.temp_dir}",
            "--disable-usage-stats",
        ]
        if self.resources.num_gpus:
            command.append(f"--num-gpus={_format_number(self.resources.num_gpus)}")
        if self.resources.custom:
            command.append(f"--resources={json.dumps(dict(self.resources.custom))}")
        return command

    def start(self) -> None:
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            self.command(),
            env=ray_environment(self.python_bin_dir),
            capture_output=True,
            text=True,
            timeout=self.start_timeout,
        )
        if result.returncode != 0:
            self.stop()
            log.warning("ray start failed (%s):\n%s", result.returncode, result.stderr[-4000:])
            raise BackendError(f"ray start failed ({result.returncode}): {_last_line(result.stderr)}")

    def stop(self) -> None:
        terminate(processes_of_session(self.temp_dir))
        if self.remove_temp_dir:
            shutil.rmtree(self.temp_dir, ignore_errors=True)


async def wait_for_dashboard(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(f"{url}/api/version", timeout=aiohttp.ClientTimeout(total=5)) as resp:
                    if resp.status == 200:
                        return
            except (TimeoutError, aiohttp.ClientError):
                pass
            if time.monotonic() > deadline:
                raise BackendError(f"the Ray dashboard at {url} did not come up")
            await asyncio.sleep(0.5)


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
        head, notices = None, ()
        if request.dedicated_resources is not None:
            head = await self._ensure_dedicated_head(request.key, request.dedicated_resources)
            notices = (
                BackendNotice(
                    "Normal",
                    "LocalDedicatedRay",
                    "Local control plane: rayStartParams declare GPUs "
                    f"or custom resources, so this cluster runs on a Ray of its own with "
                    f"{_describe_resources(request.dedicated_resources)} (logical resources)",
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
        applications, notices = [], []
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


def _describe_resources(resources: RayResources) -> str:
    parts = [f"CPU {_format_number(resources.num_cpus)}", f"GPU {_format_number(resources.num_gpus)}"]
    parts += [f"{name} {_format_number(amount)}" for name, amount in sorted(resources.custom.items())]
    return ", ".join(parts)
