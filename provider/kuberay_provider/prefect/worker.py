"""The ``kuberay`` worker: each flow run of a deployment runs as one KubeRay RayJob.

```bash
prefect work-pool create --type kuberay my-pool
prefect worker start --pool my-pool
```

The RayJob's entrypoint is the flow run's command (``prefect flow-run execute``), so the flow's process is
the Ray job's driver: ``ray.init()`` in the flow joins the RayJob's cluster, and prefect-ray's
``RayTaskRunner(address="auto")`` spreads the flow's tasks over it. The worker follows the RayJob to its end
and sends the Ray job's log (the flow process's output, the output of its Ray tasks) into the flow run's log;
a RayJob that ends before the flow run reported a final state marks the run Crashed; a flow run cancelled
while it runs has its RayJob deleted (which stops the Ray job and takes its cluster). The RayJob's name
derives from the flow run's id, so submitting a flow run again re-attaches to the RayJob still running it
(or replaces one that ended) instead of creating a second one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from prefect.client.schemas.objects import State, StateType
from prefect.exceptions import Abort, InfrastructureNotFound, ObjectNotFound
from prefect.settings import get_current_settings
from prefect.states import Cancelled, Crashed
from prefect.utilities.engine import propose_state
from prefect.workers.base import BaseWorker, BaseWorkerResult

from kuberay_provider.core.async_runner import AsyncRayJobRunner
from kuberay_provider.core.dashboard_links import DashboardTarget
from kuberay_provider.core.errors import ConfigurationError, KubeRayProviderError, NameTakenError
from kuberay_provider.core.job_outcome import RayJobFailed
from kuberay_provider.core.job_request import RayJobRequest
from kuberay_provider.core.naming import LABEL_RUN_KEY
from kuberay_provider.core.resources import RAYJOB
from kuberay_provider.core.status import RayJobState
from kuberay_provider.prefect.blocks import RayJob
from kuberay_provider.prefect.events import RayJobEvents, flow_run_resource, with_events
from kuberay_provider.prefect.worker_config import KubeRayWorkerJobConfiguration, KubeRayWorkerVariables

if TYPE_CHECKING:
    import anyio.abc
    from prefect.client.schemas.objects import FlowRun

    from kuberay_provider.core.lifecycle import Launch

# After a flow run turns Cancelling, how long its own runner (inside the RayJob) may take to stop the flow
# and run its on_cancellation hooks before the worker deletes the RayJob under it.
CANCEL_GRACE_SECONDS = 30.0
ANSI_COLOURS = re.compile(r"\x1b\[[0-9;]*m")  # Ray colours its task prefixes; the Prefect UI shows the codes raw
Say = Callable[[str], None]
# Instead of a link, when the pool has no browser URL: the worker's route (the API server's proxy) opens in no browser.
NO_LINK_HINT = (
    "No link to the Ray dashboard: set the work pool's job variable dashboard_browser_url to where browsers open "
    "your dashboards (an Ingress...), e.g. https://ray.example.com/{namespace}/{cluster}"
)


class KubeRayWorkerResult(BaseWorkerResult):
    """How the flow run's RayJob ended for the worker; ``identifier`` is ``<namespace>:<rayjob name>``."""


def dashboard_line(block: RayJob, request: RayJobRequest) -> str:
    """What the flow run's log says of the Ray dashboard: a link people can open (the pool's browser URL),
    never the worker's own route through the API server, which opens in no browser; without a browser URL,
    how to get one. "" while the link needs what is not known yet (the RayJob's cluster name)."""
    if link := block.browser_link(DashboardTarget.of_request(request)):
        return f"Ray dashboard of RayJob {request.resolved_namespace}/{request.rayjob_name}: {link}"
    return "" if block.dashboard_browser_url else NO_LINK_HINT


def infrastructure_pid(request: RayJobRequest) -> str:
    return f"{request.resolved_namespace}:{request.rayjob_name}"


def parse_infrastructure_pid(pid: str) -> tuple[str, str]:
    namespace, _, name = pid.partition(":")
    if not namespace or not name:
        raise ValueError(f"infrastructure pid {pid!r} is not '<namespace>:<rayjob name>' (a kuberay worker's)")
    return namespace, name


def is_cancelling(state: State | None) -> bool:
    """Cancelling, or Cancelling as Prefect 2 wrote it (a Cancelled type named Cancelling)."""
    return state is not None and (
        state.type == StateType.CANCELLING or (state.is_cancelled() and state.name == "Cancelling")
    )


def flow_reported(state: State | None) -> bool:
    """The flow run's process said how it ended: a final state, or a pause / reschedule that ends the
    process on purpose (the run comes back to a worker later)."""
    return state is not None and (state.is_final() or state.is_paused() or state.is_scheduled())


async def launch_or_reattach(runner: AsyncRayJobRunner, request: RayJobRequest, say: Say) -> Launch | None:
    """Create the flow run's RayJob; re-attach to the one an earlier submission of this flow run left
    running (None); replace one that ended (a retried or resumed flow run runs again)."""
    lifecycle = runner.runner.lifecycle
    namespace, name = request.resolved_namespace, request.rayjob_name
    existing = await asyncio.to_thread(lifecycle.kube.find, RAYJOB, namespace, name)
    if existing is not None:
        found_key = ((existing.get("metadata") or {}).get("labels") or {}).get(LABEL_RUN_KEY)
        if found_key != request.identity.key:
            raise NameTakenError(
                f"RayJob {namespace}/{name} exists but was not created for this flow run "
                f"(label {LABEL_RUN_KEY}={found_key!r}); delete it or use another namespace"
            )
        state = RayJobState.from_object(existing)
        if not state.is_terminal:
            say(
                f"Re-attached to RayJob {namespace}/{name}: an earlier submission of this flow run created it and it still runs"
            )
            return None
        await asyncio.to_thread(lifecycle.delete_and_wait, namespace, name)
        say(
            f"Deleted RayJob {namespace}/{name} of an earlier submission of this flow run ({state.describe()}) to run it anew"
        )
    return await runner.launch(request)


class KubeRayWorker(BaseWorker[KubeRayWorkerJobConfiguration, KubeRayWorkerVariables, KubeRayWorkerResult]):
    """Runs each flow run as a KubeRay RayJob whose entrypoint runs the flow (the flow is the Ray driver)."""

    type: str = "kuberay"
    job_configuration = KubeRayWorkerJobConfiguration
    job_configuration_variables = KubeRayWorkerVariables
    _description = (
        "Run each flow run as a KubeRay RayJob: the flow's process is the Ray driver of the RayJob's "
        "cluster (its own, or an existing RayCluster). Requires KubeRay on a Kubernetes cluster."
    )
    _display_name = "KubeRay"
    _documentation_url = "https://docs.ray.io/en/latest/cluster/kubernetes/getting-started/rayjob-quick-start.html"
    _logo_url = "https://docs.ray.io/en/latest/_static/ray_logo.png"

    async def run(
        self,
        flow_run: FlowRun,
        configuration: KubeRayWorkerJobConfiguration,
        task_status: anyio.abc.TaskStatus[Any] | None = None,
    ) -> KubeRayWorkerResult:
        """Create (or re-attach to) the flow run's RayJob, report it started, and follow it to its end."""
        logger = self.get_flow_run_logger(flow_run)
        block = configuration.rayjob_block()
        request = configuration.rayjob_request(block)
        pid = infrastructure_pid(request)
        for key in configuration.sensitive_env():
            logger.warning(
                "%s is in RayJob %s's runtime env: whoever can read RayJobs in namespace %s, or open its "
                'Ray dashboard, can read it. To keep it out, set the job variable env to {"%s": null} and '
                "give the Ray head the value from a Kubernetes Secret (see the Prefect page of the docs)",
                key,
                pid.replace(":", "/"),
                request.resolved_namespace,
                key,
            )
        async with block.async_runner(
            lambda line: logger.info("[ray] %s", ANSI_COLOURS.sub("", line)), logger.info
        ) as plain_runner:
            events = RayJobEvents(related=[flow_run_resource(flow_run)])  # no run context here names it
            runner = with_events(plain_runner, events)
            launch = await launch_or_reattach(runner, request, logger.info)
            if launch is not None and launch.created:
                events.created(launch.manifest)
            if line := dashboard_line(block, request):
                logger.info("%s", line)
            if task_status is not None:
                task_status.started(pid)
            return await self._follow(flow_run, runner, request, logger)

    async def _follow(
        self, flow_run: FlowRun, runner: AsyncRayJobRunner, request: RayJobRequest, logger: logging.LoggerAdapter[Any]
    ) -> KubeRayWorkerResult:
        pid = infrastructure_pid(request)
        following = asyncio.ensure_future(runner.follow(request))
        try:
            if await self._cancelled_first(flow_run, following):
                # The flow's own runner stops the flow and runs its hooks; the RayJob then ends on its own.
                await asyncio.wait({following}, timeout=CANCEL_GRACE_SECONDS)
                return await self._delete_cancelled(flow_run, runner, request, logger)
            failure = ending_failure(following)
        finally:
            # The worker is shutting down (or the RayJob was deleted): stop following, never the flow run.
            if not following.done():
                following.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await following
        state = await self._state_of(flow_run)
        if (
            is_cancelling(state)
            or (state is not None and state.is_cancelled())
            or await self._cancelled_meanwhile(flow_run)
        ):
            return await self._delete_cancelled(flow_run, runner, request, logger)
        if flow_reported(state):
            if failure:
                logger.info(
                    "RayJob %s ended without success after the flow run reported %s",
                    pid.replace(":", "/"),
                    state.name if state else "?",
                )
            return KubeRayWorkerResult(identifier=pid, status_code=0)
        ended = (
            failure
            or "the Ray job succeeded, but the flow run's process never reported a state (is `command` Prefect's engine?)"
        )
        await self._crash(
            flow_run, f"RayJob {pid.replace(':', '/')} ended before the flow run reported a final state: {ended}"
        )
        return KubeRayWorkerResult(identifier=pid, status_code=1)

    async def _cancelled_first(self, flow_run: FlowRun, following: asyncio.Future[Any]) -> bool:
        """Wait for the RayJob's end, checking the flow run's state every PREFECT_WORKER_QUERY_SECONDS;
        True once the flow run is cancelling (or cancelled) first."""
        interval = max(float(get_current_settings().worker.query_seconds), 1.0)
        while True:
            done, _ = await asyncio.wait({following}, timeout=interval)
            if done:
                return False
            state = await self._state_of(flow_run)
            if is_cancelling(state) or (state is not None and state.is_cancelled()):
                return True

    async def _state_of(self, flow_run: FlowRun) -> State | None:
        try:
            return (await self.client.read_flow_run(flow_run.id)).state
        except ObjectNotFound:
            return None
        except Exception as error:
            self._logger.debug("could not read flow run %s: %s", flow_run.id, error)
            return None

    async def _cancelled_meanwhile(self, flow_run: FlowRun) -> bool:
        """The flow run turned Cancelling since this submission (its own runner may have stopped it before
        the worker looked)."""
        try:
            states = sorted(await self.client.read_flow_run_states(flow_run.id), key=lambda state: state.timestamp)
        except Exception as error:
            self._logger.debug("could not read the states of flow run %s: %s", flow_run.id, error)
            return False
        submitted = max((index for index, state in enumerate(states) if state.type == StateType.PENDING), default=-1)
        return any(is_cancelling(state) for state in states[submitted + 1 :])

    async def _delete_cancelled(
        self, flow_run: FlowRun, runner: AsyncRayJobRunner, request: RayJobRequest, logger: logging.LoggerAdapter[Any]
    ) -> KubeRayWorkerResult:
        """The flow run was cancelled: delete its RayJob (KubeRay stops the Ray job, the cluster goes with
        it) and, if its own runner could not say so first, mark it Cancelled."""
        namespace, name = request.resolved_namespace, request.rayjob_name
        deleted = await runner.delete(namespace, name)
        logger.info(
            "%s RayJob %s/%s: the flow run was cancelled", "Deleted" if deleted else "Already gone:", namespace, name
        )
        try:
            current = await self.client.read_flow_run(flow_run.id)
        except ObjectNotFound:
            return KubeRayWorkerResult(identifier=infrastructure_pid(request), status_code=0)
        if is_cancelling(current.state):
            await self._mark_flow_run_as_cancelled(
                current, state_updates={"message": f"Cancelled: the worker deleted RayJob {namespace}/{name}"}
            )
        elif current.state is not None and current.state.is_crashed():
            # ray.init() replaces the SIGTERM handler Prefect stops a cancelled flow with by one raising
            # SystemExit, which the engine reports as a crash: the run was cancelled all the same.
            await self.client.set_flow_run_state(
                flow_run.id,
                Cancelled(
                    message=f"Cancelled; the flow's process reported a crash while being stopped: {current.state.message}"
                ),
                force=True,
            )
        return KubeRayWorkerResult(identifier=infrastructure_pid(request), status_code=0)

    async def _crash(self, flow_run: FlowRun, message: str) -> None:
        logger = self.get_flow_run_logger(flow_run)
        try:
            state = await propose_state(self.client, Crashed(message=message), flow_run_id=flow_run.id)
        except Abort:
            return  # the flow run reached a final state meanwhile
        if state.is_crashed():
            logger.error("Marked flow run %s crashed: %s", flow_run.id, message)

    async def kill_infrastructure(
        self, infrastructure_pid: str, configuration: KubeRayWorkerJobConfiguration, grace_seconds: int = 30
    ) -> None:
        """Delete the flow run's RayJob (``<namespace>:<name>``); KubeRay stops its Ray job and cluster."""
        namespace, name = parse_infrastructure_pid(infrastructure_pid)
        block = RayJob(credentials=configuration.credentials())
        if not await asyncio.to_thread(block.delete_now, namespace, name):
            raise InfrastructureNotFound(f"RayJob {namespace}/{name} does not exist (already deleted?)")
        self._logger.info("Deleted RayJob %s/%s", namespace, name)


def ending_failure(following: asyncio.Future[Any]) -> str:
    """ "" when the RayJob's Ray job succeeded, else why it did not; errors of reaching the cluster propagate
    (the worker then lost the flow run's infrastructure, and the flow run reports its own state)."""
    error = following.exception()
    if error is None:
        return ""
    if isinstance(error, RayJobFailed):
        return str(error)
    if isinstance(error, KubeRayProviderError) and not isinstance(error, ConfigurationError):
        return str(error)  # e.g. the RayJob was deleted under the worker, or Kueue never admitted it
    raise error
