"""FakeRayBackend: an in-memory, instant RayBackend whose Ray jobs follow scripts on an injectable clock.

For state-machine tests: no process, no sleep. A job's life is PENDING for ``pending_seconds``, RUNNING
for ``running_seconds``, then ``final_status`` (or RUNNING forever when that is None), measured on the
clock given at construction, so a test moves a job along by advancing its fake clock.

``jobs_api=True`` also serves Ray's Jobs REST API per cluster (``fake_dashboard.FakeDashboard``): the Ray
Jobs SDK can submit, and a ``python -m <module>`` job of an uploaded package really runs (a shipped
function); such a job ends when both its script's time and its process are over, as the process did.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .base import (
    BackendError,
    BackendNotice,
    ClusterEndpoints,
    ClusterRequest,
    JobAlreadyExistsError,
    JobInfo,
    JobRequest,
    JobSubmissionError,
    cluster_key,
)
from .runtime_env import PackagePolicy, adapt_runtime_env

if TYPE_CHECKING:
    from .fake_dashboard import FakeDashboard

FAKE_PORTS = {"dashboard": 18265, "client": 20001, "gcs-server": 16379, "metrics": 18080, "serve": 18000}


@dataclass(frozen=True)
class JobScript:
    """How a fake Ray job behaves once submitted."""

    final_status: str | None = "SUCCEEDED"
    pending_seconds: float = 0.0
    running_seconds: float = 1.0
    message: str = ""
    reject_submission: str | None = None  # raise JobSubmissionError(this) at submit
    logs: str = ""


@dataclass(frozen=True)
class ServeScript:
    """How a fake Serve application behaves once a config deploying it (or changing it) is PUT: DEPLOYING
    for ``deploying_seconds``, then ``final_status`` (RUNNING, DEPLOY_FAILED or UNHEALTHY)."""

    final_status: str = "RUNNING"
    deploying_seconds: float = 0.0
    message: str = ""


@dataclass
class FakeServeApp:
    config: Mapping[str, Any]  # the application's entry in the Serve config
    deployed_at: float  # when this config of the application was PUT


# A Serve deployment's status for its application's (DEPLOYING excepted).
_DEPLOYMENT_STATUS = {"RUNNING": "HEALTHY", "DEPLOYING": "UPDATING"}


@dataclass
class FakeRun:
    """The process behind a job the fake dashboard really runs (``python -m`` of an uploaded package)."""

    output: str = ""
    exit_code: int | None = None  # None: still running
    ended_at: float | None = None
    process: asyncio.subprocess.Process | None = None

    def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
        if self.exit_code is None:
            self.exit_code = -9


@dataclass
class FakeJob:
    cluster: str
    request: JobRequest
    script: JobScript
    submitted_at: float
    stopped_at: float | None = None
    run: FakeRun | None = None


@dataclass
class FakeRayBackend:
    """A RayBackend double. ``now`` returns epoch seconds; ``calls`` records every call for assertions."""

    now: Callable[[], float] = time.time
    version: str = "2.60.0"
    default_script: JobScript = field(default_factory=JobScript)
    scripts_by_job_id: dict[str, JobScript] = field(default_factory=dict)
    scripts_by_entrypoint: list[tuple[str, JobScript]] = field(default_factory=list)
    job_info_error: str | None = None  # make job_info raise BackendError (dashboard unreachable)
    clusters: dict[str, ClusterRequest] = field(default_factory=dict)
    jobs: dict[str, FakeJob] = field(default_factory=dict)
    serve_configs: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    serve_apps: dict[str, dict[str, FakeServeApp]] = field(default_factory=dict)  # cluster key -> app name -> app
    default_serve_script: ServeScript = field(default_factory=ServeScript)
    serve_scripts: dict[str, ServeScript] = field(default_factory=dict)  # by application name
    serve_deploy_error: str | None = None  # make deploy_serve raise BackendError (the PUT refused)
    calls: list[tuple[str, ...]] = field(default_factory=list)
    closed: bool = False
    # PackagePolicy.INSTALL keeps runtime_envs as submitted; the local backend's default skips satisfied ones.
    package_policy: PackagePolicy = PackagePolicy.INSTALL
    jobs_api: bool = False  # serve the Jobs REST API per cluster (FakeDashboard): SDK submissions work
    dashboard: FakeDashboard | None = None

    @property
    def ray_version(self) -> str:
        return self.version

    def script_entrypoint(self, substring: str, script: JobScript) -> None:
        """Jobs whose entrypoint contains ``substring`` follow ``script`` (latest registration wins)."""
        self.scripts_by_entrypoint.insert(0, (substring, script))

    def _script_for(self, request: JobRequest) -> JobScript:
        if request.job_id in self.scripts_by_job_id:
            return self.scripts_by_job_id[request.job_id]
        for substring, script in self.scripts_by_entrypoint:
            if substring in request.entrypoint:
                return script
        return self.default_script

    async def ensure_cluster(self, request: ClusterRequest) -> ClusterEndpoints:
        self.calls.append(("ensure_cluster", request.key))
        self.clusters[request.key] = request
        warnings: tuple[str, ...] = ()
        if request.ray_version and request.ray_version != self.version:
            warnings = (f"rayVersion {request.ray_version} differs from the local Ray {self.version}",)
        urls = {name: f"http://127.0.0.1:{port}" for name, port in FAKE_PORTS.items()}
        if self.jobs_api:
            if self.dashboard is None:
                from .fake_dashboard import FakeDashboard

                self.dashboard = FakeDashboard(self)
            await self.dashboard.start()
            urls["dashboard"] = self.dashboard.url(request.namespace, request.name)
        return ClusterEndpoints(urls=urls, warnings=warnings)

    async def delete_cluster(self, namespace: str, name: str) -> None:
        key = cluster_key(namespace, name)
        self.calls.append(("delete_cluster", key))
        self.clusters.pop(key, None)
        self.serve_configs.pop(key, None)
        self.serve_apps.pop(key, None)  # Serve goes with its cluster
        if self.dashboard is not None:
            self.dashboard.forget(namespace, name)
        for job_id, job in self.jobs.items():
            if job.cluster == key:
                await self.stop_job(namespace, name, job_id)

    async def submit_job(self, namespace: str, cluster: str, request: JobRequest) -> tuple[BackendNotice, ...]:
        self.calls.append(("submit_job", cluster_key(namespace, cluster), request.job_id))
        if self._job_on(namespace, cluster, request.job_id) is not None:
            raise JobAlreadyExistsError(
                f"Job with submission_id {request.job_id} already exists. Please use a different submission_id."
            )
        script = self._script_for(request)
        if script.reject_submission is not None:
            raise JobSubmissionError(script.reject_submission)
        adapted = adapt_runtime_env(request.runtime_env, self.package_policy)
        request = replace(request, runtime_env=adapted.runtime_env)
        self.jobs[request.job_id] = FakeJob(cluster_key(namespace, cluster), request, script, self.now())
        return adapted.notices

    def _status_of(self, job: FakeJob) -> tuple[str, int, int]:
        """(status, start_ms, end_ms) at the current fake time."""
        script, t0 = job.script, job.submitted_at
        started = t0 + script.pending_seconds
        finished = started + script.running_seconds
        final_status = script.final_status
        if job.run is not None:  # a real process: it decides the end, not before the script's time is up
            final_status = None if job.run.exit_code is None else ("SUCCEEDED" if job.run.exit_code == 0 else "FAILED")
            finished = max(finished, job.run.ended_at or finished)
        now = self.now()
        start_ms = int(started * 1000) if now >= started else 0
        if job.stopped_at is not None and (final_status is None or job.stopped_at < finished):
            return "STOPPED", start_ms, int(job.stopped_at * 1000)
        if now < started:
            return "PENDING", 0, 0
        if final_status is None or now < finished:
            return "RUNNING", start_ms, 0
        return final_status, start_ms, int(finished * 1000)

    @staticmethod
    def _message_of(job: FakeJob, status: str) -> str:
        if status == "STOPPED":
            return "Job was intentionally stopped."
        if job.run is not None and status == "FAILED":
            return f"Job entrypoint command failed with exit code {job.run.exit_code}"
        return job.script.message

    def _job_on(self, namespace: str, cluster: str, job_id: str) -> FakeJob | None:
        """Each RayCluster has a Ray of its own: a job id submitted to another cluster (an earlier attempt's,
        which a retry with spec.jobId reuses) is unknown here. ``jobs`` keeps the latest job of each id."""
        job = self.jobs.get(job_id)
        return job if job is not None and job.cluster == cluster_key(namespace, cluster) else None

    async def job_info(self, namespace: str, cluster: str, job_id: str) -> JobInfo | None:
        self.calls.append(("job_info", cluster_key(namespace, cluster), job_id))
        if self.job_info_error is not None:
            raise BackendError(self.job_info_error)
        job = self._job_on(namespace, cluster, job_id)
        if job is None:
            return None
        status, start_ms, end_ms = self._status_of(job)
        message = self._message_of(job, status)
        return JobInfo(
            job_id, status, message, start_ms, end_ms, job.request.entrypoint, dict(job.request.metadata or {})
        )

    async def stop_job(self, namespace: str, cluster: str, job_id: str) -> bool:
        self.calls.append(("stop_job", cluster_key(namespace, cluster), job_id))
        job = self._job_on(namespace, cluster, job_id)
        if job is None or job.stopped_at is not None:
            return False
        if self._status_of(job)[0] in ("SUCCEEDED", "FAILED"):
            return False
        job.stopped_at = self.now()
        if job.run is not None:
            job.run.kill()
        return True

    async def job_logs(self, namespace: str, cluster: str, job_id: str) -> str:
        job = self._job_on(namespace, cluster, job_id)
        if job is None:
            return ""
        return job.script.logs + (job.run.output if job.run is not None else "")

    async def deploy_serve(self, namespace: str, cluster: str, config: Mapping[str, Any]) -> tuple[BackendNotice, ...]:
        """Like Serve's PUT: an application whose config changed starts DEPLOYING again; one left out goes."""
        key = cluster_key(namespace, cluster)
        self.calls.append(("deploy_serve", key))
        if self.serve_deploy_error is not None:
            raise BackendError(self.serve_deploy_error)
        self.serve_configs[key] = config
        before = self.serve_apps.get(key, {})
        apps: dict[str, FakeServeApp] = {}
        for app in config.get("applications") or []:
            name = app.get("name", "default")
            kept = before.get(name)
            apps[name] = kept if kept is not None and kept.config == app else FakeServeApp(app, self.now())
        self.serve_apps[key] = apps
        return ()

    async def serve_status(self, namespace: str, cluster: str) -> Mapping[str, Any]:
        """GET /api/serve/applications/: each application where its script has it at the fake time."""
        statuses: dict[str, Any] = {}
        for name, app in self.serve_apps.get(cluster_key(namespace, cluster), {}).items():
            script = self.serve_scripts.get(name, self.default_serve_script)
            deploying = self.now() - app.deployed_at < script.deploying_seconds
            status = "DEPLOYING" if deploying else script.final_status
            deployment = _DEPLOYMENT_STATUS.get(status, "UNHEALTHY")
            statuses[name] = {
                "status": status,
                "message": "" if deploying else script.message,
                "deployments": {
                    d["name"]: {"status": deployment, "message": ""}
                    for d in app.config.get("deployments", [])
                    if "name" in d
                },
            }
        return statuses

    async def close(self) -> None:
        for job in self.jobs.values():
            if job.run is not None:
                job.run.kill()
        if self.dashboard is not None:
            await self.dashboard.close()
        self.closed = True
