"""FakeDashboard: Ray's Jobs REST API in front of a FakeRayBackend, so what submits through the Ray Jobs
SDK (InteractiveMode, a job straight to a cluster's head, a shipped Python function) runs on the fast double.

One HTTP server per backend on 127.0.0.1; the dashboard of each RayCluster is a path under it
(``/clusters/<namespace>/<name>``), so job ids and uploaded packages stay per cluster as on KubeRay. The
packages the SDK uploads (``PUT /api/packages/...``) are kept in memory. A job whose entrypoint is
``python -m <module>`` of an uploaded ``py_modules`` package is really run: a process of this
interpreter with the package on its ``PYTHONPATH``, whose output is the job's log and whose exit code
decides how it ends (what a shipped function needs to hand its result back). Any other entrypoint
follows the backend's scripts.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .base import JobAlreadyExistsError, JobRequest, JobSubmissionError, cluster_key

if TYPE_CHECKING:
    from .fake import FakeRayBackend, FakeRun

_MODULE_ENTRYPOINT = re.compile(r"^python3?\s+-m\s+([A-Za-z_][A-Za-z0-9_]*)$")
_PREFIX = "/clusters/{namespace}/{name}"
TAIL_POLL_SECONDS = 0.05


class FakeDashboard:
    """Serves every cluster's Jobs API of one FakeRayBackend; ``start`` is idempotent."""

    def __init__(self, backend: FakeRayBackend) -> None:
        self.backend = backend
        self.packages: dict[str, dict[str, bytes]] = {}  # cluster key -> package URI -> zip
        self._runner: web.AppRunner | None = None
        self._base = ""
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        if self._runner is not None:
            return
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_get(_PREFIX + "/api/version", self._version)
        app.router.add_route("GET", _PREFIX + "/api/packages/{protocol}/{package}", self._package_exists)
        app.router.add_put(_PREFIX + "/api/packages/{protocol}/{package}", self._upload)
        app.router.add_post(_PREFIX + "/api/jobs/", self._submit)
        app.router.add_get(_PREFIX + "/api/jobs/{job_id}", self._info)
        app.router.add_get(_PREFIX + "/api/jobs/{job_id}/logs", self._logs)
        app.router.add_get(_PREFIX + "/api/jobs/{job_id}/logs/tail", self._tail)
        app.router.add_post(_PREFIX + "/api/jobs/{job_id}/stop", self._stop)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner, self._base = runner, f"http://127.0.0.1:{runner.addresses[0][1]}"

    def url(self, namespace: str, name: str) -> str:
        return f"{self._base}/clusters/{namespace}/{name}"

    def forget(self, namespace: str, name: str) -> None:
        """The cluster is gone, and the packages uploaded to it with it."""
        self.packages.pop(cluster_key(namespace, name), None)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- handlers -----------------------------------------------------------------------------------

    @staticmethod
    def _cluster(request: web.Request) -> tuple[str, str]:
        return request.match_info["namespace"], request.match_info["name"]

    def _known(self, request: web.Request) -> bool:
        return cluster_key(*self._cluster(request)) in self.backend.clusters

    async def _version(self, request: web.Request) -> web.Response:
        if not self._known(request):
            return web.Response(status=503, text="no Ray cluster here")
        return web.json_response(
            {"version": "4", "ray_version": self.backend.version, "ray_commit": "fake", "session_name": "fake"}
        )

    async def _package_exists(self, request: web.Request) -> web.Response:
        uri = f"{request.match_info['protocol']}://{request.match_info['package']}"
        found = uri in self.packages.get(cluster_key(*self._cluster(request)), {})
        return web.Response(status=200 if found else 404, text="" if found else f"package {uri} not found")

    async def _upload(self, request: web.Request) -> web.Response:
        uri = f"{request.match_info['protocol']}://{request.match_info['package']}"
        self.packages.setdefault(cluster_key(*self._cluster(request)), {})[uri] = await request.read()
        return web.Response(text="")

    async def _submit(self, request: web.Request) -> web.Response:
        namespace, name = self._cluster(request)
        body = await request.json()
        job_id = str(body.get("submission_id") or body.get("job_id") or f"raysubmit_{os.urandom(6).hex()}")
        job = JobRequest(
            job_id=job_id,
            entrypoint=str(body.get("entrypoint") or ""),
            runtime_env=body.get("runtime_env"),
            num_cpus=body.get("entrypoint_num_cpus"),
            num_gpus=body.get("entrypoint_num_gpus"),
            resources=body.get("entrypoint_resources"),
            metadata=body.get("metadata"),
        )
        try:
            await self.backend.submit_job(namespace, name, job)
        except (JobAlreadyExistsError, JobSubmissionError) as refused:
            return web.Response(status=400, text=str(refused))
        self._run_module(namespace, name, job)
        return web.json_response({"job_id": job_id, "submission_id": job_id})

    async def _info(self, request: web.Request) -> web.Response:
        namespace, name = self._cluster(request)
        info = await self.backend.job_info(namespace, name, request.match_info["job_id"])
        if info is None:
            return web.Response(status=404, text=f"Job {request.match_info['job_id']} does not exist")
        job = self.backend.jobs[info.job_id]
        return web.json_response(
            {
                "type": "SUBMISSION",
                "job_id": None,
                "submission_id": info.job_id,
                "status": info.status,
                "entrypoint": info.entrypoint,
                "message": info.message,
                "start_time": info.start_time_ms or None,
                "end_time": info.end_time_ms or None,
                "metadata": dict(info.metadata),
                "runtime_env": job.request.runtime_env or {},
                "driver_exit_code": job.run.exit_code if job.run is not None else None,
            }
        )

    async def _logs(self, request: web.Request) -> web.Response:
        namespace, name = self._cluster(request)
        job_id = request.match_info["job_id"]
        if await self.backend.job_info(namespace, name, job_id) is None:
            return web.Response(status=404, text=f"Job {job_id} does not exist")
        return web.json_response({"logs": await self.backend.job_logs(namespace, name, job_id)})

    async def _tail(self, request: web.Request) -> web.StreamResponse:
        """The log as it grows, until the job has ended and all of it was sent."""
        namespace, name = self._cluster(request)
        job_id = request.match_info["job_id"]
        socket = web.WebSocketResponse(heartbeat=None)
        await socket.prepare(request)
        sent = 0
        try:
            while not socket.closed:
                info = await self.backend.job_info(namespace, name, job_id)
                text = await self.backend.job_logs(namespace, name, job_id)
                if len(text) > sent:
                    await socket.send_str(text[sent:])
                    sent = len(text)
                if info is None or info.is_terminal:
                    break
                await asyncio.sleep(TAIL_POLL_SECONDS)
            await socket.close()
        except ConnectionError:
            pass  # the reader went away (a killed try): nothing to tell it
        return socket

    async def _stop(self, request: web.Request) -> web.Response:
        namespace, name = self._cluster(request)
        return web.json_response(
            {"stopped": await self.backend.stop_job(namespace, name, request.match_info["job_id"])}
        )

    # --- running an uploaded module -------------------------------------------------------------------

    def _run_module(self, namespace: str, name: str, job: JobRequest) -> None:
        """Start ``python -m <module>`` when the entrypoint is that and an uploaded package provides it."""
        match = _MODULE_ENTRYPOINT.match(job.entrypoint.strip())
        uploaded = self.packages.get(cluster_key(namespace, name), {})
        uris = [
            uri for uri in ((job.runtime_env or {}).get("py_modules") or []) if isinstance(uri, str) and uri in uploaded
        ]
        if match is None or not uris:
            return
        folder = tempfile.mkdtemp(prefix="fake-ray-job-")
        for uri in uris:
            with zipfile.ZipFile(io.BytesIO(uploaded[uri])) as package:
                package.extractall(folder)
        if not os.path.isdir(os.path.join(folder, match.group(1))):
            shutil.rmtree(folder, ignore_errors=True)
            return
        from .fake import FakeRun

        run = FakeRun()
        self.backend.jobs[job.job_id].run = run
        task = asyncio.get_running_loop().create_task(self._execute(run, folder, match.group(1), job.runtime_env or {}))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _execute(self, run: FakeRun, folder: str, module: str, runtime_env: Mapping[str, Any]) -> None:
        env = {**os.environ, **{str(k): str(v) for k, v in (runtime_env.get("env_vars") or {}).items()}}
        env["PYTHONPATH"] = os.pathsep.join(part for part in (folder, os.environ.get("PYTHONPATH", "")) if part)
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                module,
                cwd=folder,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            run.process = process
            output, _ = await process.communicate()
            run.output, run.exit_code = output.decode("utf-8", errors="replace"), process.returncode
        except asyncio.CancelledError:
            run.kill()
            raise
        finally:
            run.ended_at = self.backend.now()
            shutil.rmtree(folder, ignore_errors=True)
