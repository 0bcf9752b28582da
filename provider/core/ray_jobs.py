"""Ray Jobs API access: submit, status, logs, tail and stop, through ``JobSubmissionClient``.

The dashboard is reached either directly (a URL) or through the Kubernetes API server's service proxy
(``/api/v1/namespaces/{ns}/services/{head-svc}:dashboard/proxy``) with the API client's own credentials
and TLS settings, so no port-forward or ingress is needed.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Mapping

from kuberay_provider.core.errors import KubeRayProviderError
from kuberay_provider.core.kube.api_requests import Target
from kuberay_provider.core.kube.errors import missing_permission
from kuberay_provider.core.kube.proxy import ProxyConnection
from kuberay_provider.core.status import JobStatus

if TYPE_CHECKING:
    # Importing Ray costs about a second: only code that talks to a dashboard pays it (not a triggerer
    # that merely watches RayJobs, whose event loop an import would block).
    from ray.job_submission import JobDetails, JobSubmissionClient

log = logging.getLogger(__name__)

_SECRET_HEADERS = {"authorization", "cookie", "x-api-key", "proxy-authorization"}  # stripped from error text
# Ray words an HTTP refusal "Request failed with status code 403: ..." (requests: "403 Client Error: ...").
_REFUSAL = re.compile(r"status code (401|403)\b|\b(401|403) Client Error")
_PROXY_NAMESPACE = re.compile(r"/api/v1/namespaces/([^/]+)/services/[^/]+/proxy")


class RayJobsError(KubeRayProviderError):
    """The Ray Jobs API refused a request or could not be reached."""


class RayJobNotFound(RayJobsError):
    pass


class DashboardEndpoint(ProxyConnection):
    """Where a Ray dashboard is and how to authenticate to it (``repr`` never shows a secret)."""

    @classmethod
    def direct(cls, url: str, *, headers: Mapping[str, str] | None = None, verify: bool | str = True) -> "DashboardEndpoint":
        return cls(url=url.rstrip("/"), headers=dict(headers or {}), verify=verify)

    @classmethod
    def through(cls, connection: ProxyConnection) -> "DashboardEndpoint":
        """The dashboard behind the Kubernetes API server's service proxy, with the API client's
        credentials (see ``RayObjectsClient.proxy_connection``)."""
        return cls(url=connection.url.rstrip("/"), headers=dict(connection.headers), verify=connection.verify, cert=connection.cert)


@functools.cache
def _client_cert_client_class() -> type["JobSubmissionClient"]:
    """JobSubmissionClient that also presents a client certificate (kubeconfigs with mutual TLS)."""
    from ray.job_submission import JobSubmissionClient

    class ClientCertJobSubmissionClient(JobSubmissionClient):
        def __init__(self, *args: Any, client_cert: str | tuple[str, str] | None = None, **kwargs: Any) -> None:
            self._client_cert = client_cert
            super().__init__(*args, **kwargs)
            if client_cert and self._ssl_context is not False:
                context = self._ssl_context or ssl.create_default_context()
                certfile, keyfile = client_cert if isinstance(client_cert, tuple) else (client_cert, None)
                context.load_cert_chain(certfile, keyfile)
                self._ssl_context = context

        def _do_request(self, method: str, endpoint: str, **kwargs: Any):  # type: ignore[no-untyped-def]
            if self._client_cert:
                kwargs.setdefault("cert", self._client_cert)
            return super()._do_request(method, endpoint, **kwargs)

    return ClientCertJobSubmissionClient


ClientFactory = Callable[[DashboardEndpoint], "JobSubmissionClient"]


def _default_client(endpoint: DashboardEndpoint) -> "JobSubmissionClient":
    try:
        return _client_cert_client_class()(
            endpoint.url, headers=dict(endpoint.headers), verify=endpoint.verify, client_cert=endpoint.cert
        )
    except (OSError, RuntimeError) as exc:  # OSError: requests' HTTPError from the version check, refused connections
        reason = _strip_secrets(str(exc), endpoint) + _refusal_hint(str(exc), endpoint, "GET")
        raise RayJobsError(f"cannot reach the Ray dashboard at {endpoint.url}: {reason}") from exc


def _refusal_hint(text: str, endpoint: DashboardEndpoint, method: str) -> str:
    """What a 401/403 means here. Through the service proxy the API server refuses, so name the RBAC rule."""
    found = _REFUSAL.search(text)
    if found is None:
        return ""
    code = found.group(1) or found.group(2)
    proxied = _PROXY_NAMESPACE.search(endpoint.url)
    if code == "401":
        who = "the Kubernetes API server" if proxied else "the Ray dashboard"
        return f" ({who} rejected the credentials: the token is missing, invalid or expired)"
    if proxied is None:
        return " (the Ray dashboard refused these credentials; check the headers of the dashboard connection)"
    namespace = proxied.group(1)
    rule = missing_permission(Target("get" if method == "GET" else "create", "services/proxy", namespace))
    return (f" (the API server refused the service proxy in namespace '{namespace}': {rule}; the Ray Jobs API "
            f"through it needs get for status and logs and create to submit and stop)")


def _strip_secrets(text: str, endpoint: DashboardEndpoint) -> str:
    for key, value in endpoint.headers.items():
        if key.lower() in _SECRET_HEADERS and value:
            text = text.replace(value, "<redacted>")
            # A bearer header's token alone may also appear.
            text = text.replace(value.split(" ", 1)[-1], "<redacted>")
    return text


@dataclass(frozen=True)
class RayJobInfo:
    """What the provider reports of a Ray job."""

    job_id: str
    status: JobStatus
    message: str = ""
    start_time_ms: int | None = None
    end_time_ms: int | None = None
    error_type: str | None = None
    driver_exit_code: int | None = None

    @classmethod
    def from_details(cls, job_id: str, details: "JobDetails") -> "RayJobInfo":
        return cls(
            job_id=job_id,
            status=JobStatus(str(details.status.value if hasattr(details.status, "value") else details.status)),
            message=details.message or "",
            start_time_ms=details.start_time,
            end_time_ms=details.end_time,
            error_type=getattr(details, "error_type", None),
            driver_exit_code=getattr(details, "driver_exit_code", None),
        )


class RayJobsClient:
    """The Ray Jobs operations the adapters need, with idempotent submission.

    ``submit`` under a fixed submission id is safe to call again after a crash: a job that already
    exists under that id is re-attached to, never started twice.
    """

    def __init__(self, endpoint: DashboardEndpoint, *, client_factory: ClientFactory = _default_client) -> None:
        self.endpoint = endpoint
        self._client_factory = client_factory
        self._client: "JobSubmissionClient | None" = None

    @property
    def client(self) -> "JobSubmissionClient":
        # Connecting costs a version round trip; do it once, on first use.
        if self._client is None:
            self._client = self._client_factory(self.endpoint)
        return self._client

    def submit(
        self,
        *,
        submission_id: str,
        entrypoint: str,
        runtime_env: Mapping[str, Any] | None = None,
        metadata: Mapping[str, str] | None = None,
        entrypoint_num_cpus: float | None = None,
        entrypoint_num_gpus: float | None = None,
        entrypoint_memory: int | None = None,
        entrypoint_resources: Mapping[str, float] | None = None,
    ) -> bool:
        """Submit; True if this call started the job, False if it already existed (re-attached)."""
        if self.find(submission_id) is not None:
            log.info("Ray job %s already exists; re-attaching instead of submitting again", submission_id)
            return False
        try:
            self.client.submit_job(
                entrypoint=entrypoint,
                submission_id=submission_id,
                runtime_env=dict(runtime_env) if runtime_env else None,
                metadata=dict(metadata) if metadata else None,
                entrypoint_num_cpus=entrypoint_num_cpus,
                entrypoint_num_gpus=entrypoint_num_gpus,
                entrypoint_memory=entrypoint_memory,
                entrypoint_resources=dict(entrypoint_resources) if entrypoint_resources else None,
            )
        except RuntimeError as exc:
            # A concurrent or earlier attempt won the race: the job exists, so attach to it.
            if "already exists" in str(exc):
                return False
            raise RayJobsError(f"submitting Ray job {submission_id} failed: {self._clean(exc, 'POST')}") from exc
        return True

    def ray_version(self) -> str:
        """The cluster's Ray version, from the dashboard's /api/version ("" when it does not say)."""
        try:
            response = self.client._do_request("GET", "/api/version")
            return str(response.json().get("ray_version") or "") if response.status_code == 200 else ""
        except Exception as exc:  # noqa: BLE001 - a version is advice; the submission will say what is wrong
            log.info("could not read the Ray version at %s: %s", self.endpoint.url, self._clean(exc, "GET"))
            return ""

    def find(self, job_id: str) -> RayJobInfo | None:
        try:
            return RayJobInfo.from_details(job_id, self.client.get_job_info(job_id))
        except RuntimeError as exc:
            if _is_not_found(exc):
                return None
            raise RayJobsError(f"reading Ray job {job_id} failed: {self._clean(exc, 'GET')}") from exc

    def info(self, job_id: str) -> RayJobInfo:
        found = self.find(job_id)
        if found is None:
            raise RayJobNotFound(f"Ray job {job_id} does not exist on {self.endpoint.url}")
        return found

    def status(self, job_id: str) -> JobStatus:
        return self.info(job_id).status

    def logs(self, job_id: str) -> str:
        try:
            return self.client.get_job_logs(job_id)
        except RuntimeError as exc:
            if _is_not_found(exc):
                raise RayJobNotFound(f"Ray job {job_id} does not exist on {self.endpoint.url}") from exc
            raise RayJobsError(f"reading logs of Ray job {job_id} failed: {self._clean(exc, 'GET')}") from exc

    def stop(self, job_id: str) -> bool:
        """Ask Ray to stop the job; False when it had already finished or does not exist."""
        try:
            return bool(self.client.stop_job(job_id))
        except RuntimeError as exc:
            if _is_not_found(exc):
                return False
            raise RayJobsError(f"stopping Ray job {job_id} failed: {self._clean(exc, 'POST')}") from exc

    async def tail(self, job_id: str, *, poll_interval: float = 1.0) -> AsyncIterator[str]:
        """Follow the job's log until it ends.

        Ray streams logs over a WebSocket; where a proxy between us and the dashboard cannot carry one,
        fall back to polling the whole log and yielding what is new, so the task log still fills.
        """
        sent = 0
        try:
            # Connecting is a blocking version check: keep it off the caller's event loop (a triggerer's).
            client = await asyncio.to_thread(lambda: self.client)
            async for chunk in client.tail_job_logs(job_id):
                sent += len(chunk)
                yield chunk
            return
        except Exception as exc:  # noqa: BLE001 - any stream failure falls back to polling
            log.debug("log stream for %s unavailable (%s); polling instead", job_id, type(exc).__name__)
        while True:
            info = await asyncio.to_thread(self.info, job_id)
            text = await asyncio.to_thread(self.logs, job_id)
            if len(text) > sent:
                yield text[sent:]
                sent = len(text)
            if info.status.is_terminal:
                return
            await asyncio.sleep(poll_interval)

    def _clean(self, exc: BaseException, method: str) -> str:
        return _strip_secrets(str(exc), self.endpoint) + _refusal_hint(str(exc), self.endpoint, method)


def _is_not_found(exc: BaseException) -> bool:
    text = str(exc)
    return "404" in text or "does not exist" in text or "not found" in text.lower()
