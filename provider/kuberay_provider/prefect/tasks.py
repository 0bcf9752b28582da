"""Prefect tasks, one per step of a RayJob: create, submit (SDK mode), wait, delete; each called the natural
way from sync and async flows (``prefect.dispatch``).

Each task names the RayJob after its call (``prefect.identity``: the flow run, the task, the job and
the call's number), so a retried task or a retried flow run re-attaches to the RayJob its first try
created, still running or succeeded; a later try replaces one that failed. The Ray job's log goes to the
run logger.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import acreate_link_artifact, acreate_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext

from kuberay_provider.core.dashboard_links import DashboardTarget

# PERMANENT_ERRORS: core's one list, the same Airflow's operators use; re-exported here.
from kuberay_provider.core.errors import PERMANENT_ERRORS as PERMANENT_ERRORS
from kuberay_provider.core.errors import ConfigurationError, is_permanent
from kuberay_provider.core.job_outcome import RayJobFailed, RayJobOutcome
from kuberay_provider.core.job_request import RayJobRequest
from kuberay_provider.prefect.blocks import RayJob
from kuberay_provider.prefect.dispatch import sync_and_async
from kuberay_provider.prefect.events import RayJobEvents, with_events
from kuberay_provider.prefect.identity import current_call, fingerprint


def is_retriable(task: Any, task_run: Any, state: Any) -> bool:
    """A ``retry_condition_fn``: retry a failed Ray job, a lost connection or an error of user code, never
    what ``core.errors.is_permanent`` says no retry can fix (an invalid RayJob, a name another run holds)."""
    try:
        state.result()
    except Exception as error:
        return not is_permanent(error)
    return True


def call_request(rayjob: RayJob) -> RayJobRequest:
    """The request of the running call: its RayJob named after the call, its try number."""
    call = current_call(rayjob.job_fingerprint())
    return rayjob.request(call.identity, try_number=call.try_number)


def created_request(rayjob: RayJob, created: Mapping[str, str]) -> RayJobRequest:
    """The request of a RayJob another task created (its name and namespace pinned)."""
    call = current_call(fingerprint(rayjob.job_fingerprint(), created["namespace"], created["name"]))
    return rayjob.request(
        call.identity, try_number=call.try_number, name=created["name"], namespace=created["namespace"]
    )


def delete_when_interrupted(
    rayjob: RayJob, created: Mapping[str, str], exc: BaseException, logger: logging.Logger | logging.LoggerAdapter[Any]
) -> None:
    """The task is being cancelled (``asyncio.CancelledError``, a termination signal, ^C) while the RayJob
    runs: delete it (KubeRay stops the Ray job; owner references take the cluster), if the block says so.

    Synchronous on purpose: a cancelled task must not await, and one DELETE is quick.
    """
    if isinstance(exc, (Exception, GeneratorExit)) or not rayjob.delete_on_cancel:
        return
    try:
        deleted = rayjob.delete_now(created["namespace"], created["name"])
    except Exception as error:
        logger.warning(
            "could not delete RayJob %s/%s after cancellation: %s", created["namespace"], created["name"], error
        )
        return
    logger.warning(
        "%s RayJob %s/%s: the task was cancelled (%s)",
        "Deleted" if deleted else "Already gone:",
        created["namespace"],
        created["name"],
        type(exc).__name__,
    )


class RunLog:
    """Where a task's lines go: the Ray job's log and the RayJob's status, both into the run logger."""

    def __init__(self) -> None:
        self.logger: logging.Logger | logging.LoggerAdapter[Any] = get_run_logger()

    def ray(self, line: str) -> None:
        self.logger.info("[ray] %s", line)

    def status(self, line: str) -> None:
        self.logger.info("%s", line)


# Instead of a link, when the block has no browser URL: the API server's proxy URL opens in no browser.
NO_LINK_HINT = (
    "No link to the Ray dashboard: set `dashboard_browser_url` on the RayJob block to where browsers open "
    "your dashboards (an Ingress...), e.g. `https://ray.example.com/{namespace}/{cluster}`."
)


async def publish_dashboard_link(rayjob: RayJob, target: DashboardTarget) -> str | None:
    """A link artifact to the job's page of the Ray dashboard, from the block's ``dashboard_browser_url``;
    None (nothing published) when unset or while a placeholder it uses is not known yet."""
    link = rayjob.browser_link(target)
    if link:
        name = target.rayjob or target.cluster
        await acreate_link_artifact(
            link=link, link_text="Ray dashboard", key=f"{name}-dashboard", description=f"The Ray dashboard of {name}"
        )
    return link


async def publish_summary(rayjob: RayJob, outcome: RayJobOutcome, log_tail: str = "") -> None:
    """The outcome as a markdown artifact; the dashboard row is the browser link (never the proxy URL)."""
    fields = {key: value for key, value in outcome.to_dict().items() if key != "dashboard_url"}
    rows = "\n".join(f"| {key} | {value} |" for key, value in fields.items() if value not in ("", None))
    link = await publish_dashboard_link(rayjob, DashboardTarget.of_outcome(outcome))
    if link:
        rows += f"\n| Ray dashboard | [{link}]({link}) |"
    verdict = "succeeded" if outcome.succeeded else "failed"
    markdown = f"# Ray job {outcome.job_id or '-'} {verdict}\n\n| field | value |\n|---|---|\n{rows}\n"
    if not rayjob.dashboard_browser_url:
        markdown += f"\n{NO_LINK_HINT}\n"
    if log_tail:
        markdown += f"\n## Last lines of the Ray job's log\n\n```\n{log_tail}\n```\n"
    key = f"{outcome.rayjob_name or outcome.cluster_name}-summary"
    await acreate_markdown_artifact(markdown=markdown, key=key, description="The outcome of a Ray job on KubeRay")


@sync_and_async(name="create_rayjob", cache_policy=NO_CACHE, retry_condition_fn=is_retriable)
async def create_rayjob(rayjob: RayJob) -> dict[str, str]:
    """Validate, then create the RayJob (or re-attach to the one a previous try created).

    Returns ``{"namespace", "name", "dashboard_url"}``: what the other tasks take as ``created``.
    """
    request = call_request(rayjob)
    if request.runs_without_rayjob:
        raise ConfigurationError(
            "submit_via='sdk' with cluster_selector creates no RayJob: use wait_for_rayjob (or run_rayjob)"
        )
    run_log, events = RunLog(), RayJobEvents()
    async with rayjob.async_runner(run_log.ray, run_log.status) as runner:
        launch = await runner.launch(request)
        dashboard_url = runner.runner.dashboard_url_of(request)
    if launch.created:
        events.created(launch.manifest)
    events.observe(launch.manifest)  # e.g. queued on Kueue: created suspended
    await publish_dashboard_link(rayjob, DashboardTarget.of_request(request))
    return {"namespace": request.resolved_namespace, "name": request.rayjob_name, "dashboard_url": dashboard_url}


@sync_and_async(name="submit_rayjob", cache_policy=NO_CACHE, retry_condition_fn=is_retriable)
async def submit_rayjob(rayjob: RayJob, created: Mapping[str, str]) -> str:
    """SDK mode: once the RayJob's cluster waits for a submission (InteractiveMode), submit the entrypoint
    through the Ray Jobs SDK under its deterministic submission id. Returns the Ray job id."""
    request = created_request(rayjob, created)
    if not request.submits_itself:
        raise ConfigurationError("submit_rayjob needs a RayJob block with submit_via='sdk'")
    run_log = RunLog()
    try:
        async with rayjob.async_runner(run_log.ray, run_log.status) as runner:
            await with_events(runner, RayJobEvents()).submit(request, rayjob.timeout)
    except BaseException as exc:
        delete_when_interrupted(rayjob, created, exc, run_log.logger)
        raise
    return request.submission_id


@sync_and_async(name="wait_for_rayjob", cache_policy=NO_CACHE, retry_condition_fn=is_retriable)
async def wait_for_rayjob(rayjob: RayJob, created: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Wait for the RayJob ``created`` names, streaming the Ray job's log into the run log; returns the
    outcome, or raises ``RayJobFailed`` (KubeRay's reason, the log's last lines).

    Without ``created``, a block with ``submit_via="sdk"`` and ``cluster_selector`` submits straight to
    that cluster's head (idempotently) and follows the job there: no RayJob at all.
    """
    if created is None:
        request = call_request(rayjob)
        if not request.runs_without_rayjob:
            raise ConfigurationError("wait_for_rayjob needs created= (what create_rayjob returned)")
    else:
        request = created_request(rayjob, created)
    run_log = RunLog()
    try:
        async with rayjob.async_runner(run_log.ray, run_log.status) as runner:
            outcome = (
                await runner.run(request, rayjob.timeout)
                if created is None
                else await with_events(runner, RayJobEvents()).follow(request, rayjob.timeout)
            )
    except RayJobFailed as failed:
        await publish_summary(rayjob, failed.outcome, failed.log_tail)
        raise
    except BaseException as exc:
        if created is not None:
            delete_when_interrupted(rayjob, created, exc, run_log.logger)
        raise
    await publish_summary(rayjob, outcome)
    run_log.status(f"Ray job {outcome.job_id} succeeded")
    return outcome.to_dict()


@sync_and_async(name="delete_rayjob", cache_policy=NO_CACHE)
async def delete_rayjob(rayjob: RayJob, created: Mapping[str, str]) -> bool:
    """Delete the RayJob (KubeRay stops its job and removes its cluster). False if it was already gone."""
    run_log = RunLog()
    async with rayjob.async_runner(run_log.ray, run_log.status) as runner:
        deleted = await runner.delete(created["namespace"], created["name"])
    run_log.status(
        f"Deleted RayJob {created['namespace']}/{created['name']}"
        if deleted
        else f"RayJob {created['name']} was already gone"
    )
    return deleted


@sync_and_async(name="delete_flow_run_rayjobs", cache_policy=NO_CACHE)
async def delete_flow_run_rayjobs(
    rayjob: RayJob, flow_run_id: str | None = None, flow_name: str | None = None, namespace: str | None = None
) -> list[str]:
    """Delete every RayJob one flow run created in the block's namespace, found by the run's identity
    labels (owner = the flow's name, run id = the flow run's id); default: the current flow run.
    Returns the names of the RayJobs deleted."""
    flow_context = FlowRunContext.get()
    if flow_run_id is None or flow_name is None:
        if flow_context is None or flow_context.flow_run is None or flow_context.flow is None:
            raise ConfigurationError("delete_flow_run_rayjobs needs flow_run_id= and flow_name= outside a flow run")
        flow_run_id = flow_run_id or str(flow_context.flow_run.id)
        flow_name = flow_name or flow_context.flow.name
    deleted = await asyncio.to_thread(rayjob.delete_run_now, flow_name, str(flow_run_id), namespace)
    RunLog().status(f"Deleted the RayJobs of flow run {flow_run_id}: {', '.join(deleted) or 'none left'}")
    return deleted
