"""Ray Jobs API access: submit, status, logs, tail and stop, through ``JobSubmissionClient``.

The dashboard is reached either directly (a URL) or through the Kubernetes API server's service proxy
(``/api/v1/namespaces/{ns}/services/{head-svc}:dashboard/proxy``) with the API client's own credentials
and TLS settings, so no port-forward or ingress is needed.

Every network read is bounded: the REST calls carry a connect and a read timeout (Ray's client sets
none), and the log tail is our own websocket with a heartbeat (Ray's ``tail_job_logs`` has no timeout at
all, so a half-open connection would block it forever).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
import threading
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import tenacity

from kuberay_provider.core.dashboard_secrets import REFUSAL, refusal_hint, strip_secrets
from kuberay_provider.core.errors import KubeRayProviderError
from kuberay_provider.core.jobs_api_errors import JobsApiError, KeepsStatusCode, is_not_found
from kuberay_provider.core.kube.proxy import HeaderSource, ProxyConnection
from kuberay_provider.core.status import JobStatus

if TYPE_CHECKING:
    # Importing Ray costs about a second: only code that talks to a dashboard pays it (not a triggerer
    # that merely watches RayJobs, whose event loop an import would block).
    from ray.job_submission import JobDetails, JobSubmissionClient

log = logging.getLogger(__name__)

# (connect, read) seconds of every REST call; the read timeout is per socket read, not for a whole
# (possibly large) log download.
REQUEST_TIMEOUT = (10.0, 60.0)
# The log tail's websocket: a ping this often, and the connection is dead when no pong comes back within
# half of it. Ray's server answers pings itself (aiohttp's autoping), so a quiet job is not a dead socket.
TAIL_HEARTBEAT_SECONDS = 30.0
TAIL_CONNECT_SECONDS = 30.0
# Where no websocket gets through, the log is polled: Ray's Jobs API has no range request for logs, so
# every poll downloads the whole log. Poll again after POLL_FIRST_SECONDS, doubling up to POLL_MAX_SECONDS
# while nothing new arrives, and hand what is new on in pieces of POLL_PIECE_CHARS, so the only copy of
# the log held is the one download, for the length of one poll.
POLL_FIRST_SECONDS = 1.0
POLL_MAX_SECONDS = 10.0
POLL_PIECE_CHARS = 64 * 1024
# Waiting for a job's end by its status: the first look after STATUS_POLL_FIRST_SECONDS, then doubling up
# to STATUS_POLL_MAX_SECONDS while the status stays the same; reads that fail are retried for
# STATUS_OUTAGE_SECONDS before the wait gives up.
STATUS_POLL_FIRST_SECONDS = 0.5
STATUS_POLL_MAX_SECONDS = 5.0
STATUS_OUTAGE_SECONDS = 120.0


class RayJobsError(KubeRayProviderError):
    """The Ray Jobs API refused a request or could not be reached."""


class RayJobNotFound(RayJobsError):
    pass


class DashboardEndpoint(ProxyConnection):
    """Where a Ray dashboard is and how to authenticate to it (``repr`` never shows a secret)."""

    @classmethod
    def direct(
        cls, url: str, *, headers: Mapping[str, str] | None = None, verify: bool | str = True
    ) -> DashboardEndpoint:
        return cls(url=url.rstrip("/"), headers=dict(headers or {}), verify=verify)

    @classmethod
    def through(cls, connection: ProxyConnection, *, headers: Mapping[str, str] | None = None) -> DashboardEndpoint:
        """The dashboard behind the Kubernetes API server's service proxy, with the API client's credentials
        (read per request: ``RayObjectsClient.proxy_connection``) and the dashboard's own ``headers`` (Ray's token)."""
        return cls(
            url=connection.url.rstrip("/"),
            headers={**connection.headers, **(headers or {})},
            verify=connection.verify,
            cert=connection.cert,
            credentials=connection.credentials,
        )


@functools.cache
def _client_cert_client_class() -> type[JobSubmissionClient]:
    """JobSubmissionClient that also presents a client certificate (kubeconfigs with mutual TLS)."""
    import ray.exceptions
    from ray.job_submission import JobSubmissionClient

    # KeepsStatusCode: 404 read from the status
    class ClientCertJobSubmissionClient(KeepsStatusCode, JobSubmissionClient):
        def __init__(
            self,
            *args: Any,
            client_cert: str | tuple[str, str] | None = None,
            credentials: HeaderSource | None = None,
            **kwargs: Any,
        ) -> None:
            self._client_cert, self._credentials = client_cert, credentials
            super().__init__(*args, **kwargs)
            current: Any = self._ssl_context  # Ray's stubs say SSLContext; verify=False makes it False
            if client_cert and current is not False:
                context = current or ssl.create_default_context()
                certfile, keyfile = client_cert if isinstance(client_cert, tuple) else (client_cert, None)
                context.load_cert_chain(certfile, keyfile)
                self._ssl_context = context

        def _do_request(self, method: str, endpoint: str, **kwargs: Any) -> Any:
            if self._client_cert:
                kwargs.setdefault("cert", self._client_cert)
            kwargs.setdefault("timeout", REQUEST_TIMEOUT)  # Ray passes none: a silent server would block forever
            if self._credentials is not None:  # Ray sends the headers it was built with, whose API server token
                self._headers.update(self._credentials())  # expires while a job runs: the current one, every time
            try:
                return super()._do_request(method, endpoint, **kwargs)
            except getattr(ray.exceptions, "AuthenticationError", ()) as refused:  # Ray >= 2.52, for any 401 / 403:
                # "Authentication required: <body>" + advice on Ray's token auth; as any other answer
                text = str(refused)
                raise JobsApiError(
                    401 if text.startswith("Authentication required") else 403,
                    text.split(": ", 1)[-1].split("\n\n", 1)[0],
                ) from None

    return ClientCertJobSubmissionClient


ClientFactory = Callable[[DashboardEndpoint], "JobSubmissionClient"]


def _default_client(endpoint: DashboardEndpoint) -> JobSubmissionClient:
    try:
        return _client_cert_client_class()(
            endpoint.url,
            headers=endpoint.request_headers(),
            verify=endpoint.verify,
            client_cert=endpoint.cert,
            credentials=endpoint.credentials,
        )
    except (OSError, RuntimeError) as exc:  # OSError: requests' HTTPError from the version check, refused connections
        reason = strip_secrets(str(exc), endpoint) + refusal_hint(str(exc), endpoint, "GET")
        raise RayJobsError(f"cannot reach the Ray dashboard at {endpoint.url}: {reason}") from exc


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
    def from_details(cls, job_id: str, details: JobDetails) -> RayJobInfo:
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
        self._client: JobSubmissionClient | None = None

    @property
    def client(self) -> JobSubmissionClient:
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
        except Exception as exc:
            log.info("could not read the Ray version at %s: %s", self.endpoint.url, self._clean(exc, "GET"))
            return ""

    def find(self, job_id: str) -> RayJobInfo | None:
        try:
            return RayJobInfo.from_details(job_id, self.client.get_job_info(job_id))
        except (RuntimeError, OSError) as exc:  # OSError: requests' connection errors and timeouts
            if is_not_found(exc):
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
        except (RuntimeError, OSError) as exc:
            if is_not_found(exc):
                raise RayJobNotFound(f"Ray job {job_id} does not exist on {self.endpoint.url}") from exc
            raise RayJobsError(f"reading logs of Ray job {job_id} failed: {self._clean(exc, 'GET')}") from exc

    def stop(self, job_id: str) -> bool:
        """Ask Ray to stop the job; False when it had already finished or does not exist."""
        try:
            return bool(self.client.stop_job(job_id))
        except RuntimeError as exc:
            if is_not_found(exc):
                return False
            raise RayJobsError(f"stopping Ray job {job_id} failed: {self._clean(exc, 'POST')}") from exc

    def wait_until_ended(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        on_status: Callable[[RayJobInfo], None] | None = None,
        wake: threading.Event | None = None,
    ) -> RayJobInfo | None:
        """Follow the job's status until it ends: its final info, or None when ``timeout`` passed first.

        Polls, backing off while the status stays the same; ``wake`` (set when the log tail ends, a hint
        the job did) makes it look at once. A read that fails is retried for ``STATUS_OUTAGE_SECONDS``.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        delay, last = STATUS_POLL_FIRST_SECONDS, None
        while True:
            info = self._read_status(job_id)
            if info.status != last:
                last, delay = info.status, STATUS_POLL_FIRST_SECONDS
                if on_status is not None:
                    on_status(info)
            if info.status.is_terminal:
                return info
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            pause = delay if remaining is None else min(delay, remaining)
            if wake is not None:
                wake.wait(pause)
                wake.clear()
            else:
                time.sleep(pause)
            delay = min(delay * 2, STATUS_POLL_MAX_SECONDS)

    def _read_status(self, job_id: str) -> RayJobInfo:
        """``info``, retried for ``STATUS_OUTAGE_SECONDS`` (a restarting dashboard, a dropped connection);
        a refusal (401 / 403) is not retried: waiting does not fix credentials."""
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_delay(STATUS_OUTAGE_SECONDS),
            wait=tenacity.wait_exponential_jitter(
                multiplier=STATUS_POLL_FIRST_SECONDS, max=STATUS_POLL_MAX_SECONDS * 2
            ),
            retry=tenacity.retry_if_exception(
                lambda exc: isinstance(exc, RayJobsError) and not REFUSAL.search(str(exc))
            ),
            before_sleep=lambda attempt: log.info(
                "reading Ray job %s failed (%s); retrying", job_id, attempt.outcome and attempt.outcome.exception()
            ),
        )
        try:
            return retrying(self.info, job_id)
        except tenacity.RetryError as gave_up:
            last = gave_up.last_attempt.exception()
            if isinstance(last, RayJobNotFound):
                raise RayJobsError(
                    f"Ray job {job_id} vanished from {self.endpoint.url} while it ran and did not come back within "
                    f"{STATUS_OUTAGE_SECONDS:.0f} s: the Ray head was probably restarted and lost its jobs. Re-run the "
                    "task to submit the job again"
                ) from last
            raise RayJobsError(
                f"lost the Ray dashboard at {self.endpoint.url} for over {STATUS_OUTAGE_SECONDS:.0f} s while following "
                f"Ray job {job_id}: {last}. The job may still be running: check it with `ray job status {job_id}`; "
                "re-running the task re-attaches to it (same submission id)"
            ) from last

    async def tail(self, job_id: str, *, start: int = 0) -> AsyncGenerator[str, None]:
        """Follow the job's log from character ``start`` (what an earlier tail already delivered) until
        the job ends; raises ``RayJobsError`` when the stream breaks first (the caller resumes it).

        Ray streams logs over a websocket, always from the log's beginning (so a resumed tail skips what it
        had); where a proxy between us and the dashboard cannot carry one, poll instead.
        """
        import aiohttp  # here, not at the top: most users of this module never tail

        timeout = aiohttp.ClientTimeout(total=None, connect=TAIL_CONNECT_SECONDS, sock_read=TAIL_CONNECT_SECONDS)
        # The current credentials (maybe an exec plugin run).
        headers = await asyncio.to_thread(self.endpoint.request_headers)
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
            try:
                # No size limit: Ray's agent sends what one readline() returned as one message, so a long line
                # without a newline arrives whole, and a limit would fail it the same way on every resume.
                ws = await session.ws_connect(
                    f"{self.endpoint.url}/api/jobs/{job_id}/logs/tail",
                    ssl=self.endpoint.aiohttp_ssl(),
                    heartbeat=TAIL_HEARTBEAT_SECONDS,
                    max_msg_size=0,
                )
            except Exception as exc:
                log.debug(
                    "log stream for %s unavailable (%s); polling instead",
                    job_id,
                    strip_secrets(str(exc), self.endpoint),
                )
                ws = None
            if ws is None:
                async for chunk in self._poll_log(job_id, start):
                    yield chunk
                return
            async with ws:
                skip = start
                async for message in ws:
                    if message.type == aiohttp.WSMsgType.TEXT:
                        chunk, skip = message.data[skip:], max(0, skip - len(message.data))
                        if chunk:
                            yield chunk
                    elif message.type == aiohttp.WSMsgType.ERROR:
                        raise RayJobsError(f"the log stream of Ray job {job_id} broke: {ws.exception()}")
                if ws.close_code != aiohttp.WSCloseCode.OK:  # e.g. 1006: the connection dropped, or no pong came
                    raise RayJobsError(
                        f"the log stream of Ray job {job_id} closed early (code {ws.close_code}: {ws.exception()})"
                    )

    async def _poll_log(self, job_id: str, sent: int) -> AsyncGenerator[str, None]:
        delay = POLL_FIRST_SECONDS
        while True:
            info = await asyncio.to_thread(self.info, job_id)
            text = await asyncio.to_thread(self.logs, job_id)
            grew = len(text) > sent
            for piece in range(sent, len(text), POLL_PIECE_CHARS):
                yield text[piece : piece + POLL_PIECE_CHARS]
            sent = max(sent, len(text))
            del text
            if info.status.is_terminal:
                return
            delay = POLL_FIRST_SECONDS if grew else min(delay * 2, POLL_MAX_SECONDS)
            await asyncio.sleep(delay)

    def _clean(self, exc: BaseException, method: str) -> str:
        return strip_secrets(str(exc), self.endpoint) + refusal_hint(str(exc), self.endpoint, method)
