"""The ``RayJob`` block as Prefect's ``JobBlock``: ``trigger()`` starts a RayJob and returns its run, whose
``wait_for_completion()`` follows it to its end and ``fetch_result()`` gives the outcome, as
prefect-kubernetes' ``KubernetesJob`` does for a Job.

Each step is the matching task (``create_rayjob``, ``wait_for_rayjob``), so a run names its RayJob after
the call, re-attaches on a retry, streams the Ray log into the run log and publishes the same artifacts.
Every method works from sync code and, awaited, from async code (Prefect's ``async_dispatch``).
"""

from __future__ import annotations

from logging import Logger
from typing import TYPE_CHECKING, Any

from prefect._internal.compatibility.async_dispatch import async_dispatch
from prefect.blocks.abstract import JobRun

from kuberay_provider.core.job_outcome import RayJobFailed
from kuberay_provider.prefect.tasks import create_rayjob, wait_for_rayjob

if TYPE_CHECKING:
    from prefect import Task

    from kuberay_provider.prefect.blocks import RayJob
    from kuberay_provider.prefect.dispatch import SyncAndAsyncTask


def async_twin(task: SyncAndAsyncTask) -> Task:  # type: ignore[type-arg]  # the twin keeps its own signature
    """The task's async twin (``sync_and_async`` always makes one)."""
    assert task.aio is not None
    return task.aio


class RayJobRun(JobRun[dict[str, Any]]):
    """One triggered RayJob. ``created`` is what ``create_rayjob`` returned (None for a block that submits
    straight to a selected cluster's head: no RayJob, the wait submits)."""

    def __init__(self, rayjob: RayJob, created: dict[str, str] | None) -> None:
        self.rayjob = rayjob
        self.created = created
        self.outcome: dict[str, Any] | None = None
        self.failure: RayJobFailed | None = None

    @classmethod
    async def astart(cls, rayjob: RayJob) -> RayJobRun:
        created = None if rayjob.runs_without_rayjob else await async_twin(create_rayjob)(rayjob)
        return cls(rayjob, created)

    @classmethod
    def start(cls, rayjob: RayJob) -> RayJobRun:
        return cls(rayjob, None if rayjob.runs_without_rayjob else create_rayjob(rayjob))

    @property
    def wait_arguments(self) -> tuple[Any, ...]:
        """``wait_for_rayjob``'s arguments: the block, and what ``create_rayjob`` returned when it made one."""
        return (self.rayjob,) if self.created is None else (self.rayjob, self.created)

    async def await_for_completion(self) -> Logger:
        """Follow the RayJob to its end (the Ray log into the run log); a failed job raises ``RayJobFailed``."""
        try:
            self.outcome = await async_twin(wait_for_rayjob)(*self.wait_arguments)
        except RayJobFailed as failed:
            self.failure = failed
            raise
        return self.logger  # type: ignore[return-value]  # JobRun declares a Logger; run loggers are adapters

    @async_dispatch(await_for_completion)
    def wait_for_completion(self) -> Logger:  # type: ignore[override]  # sync or async by the caller, as Prefect's own
        try:
            self.outcome = wait_for_rayjob(*self.wait_arguments)
        except RayJobFailed as failed:
            self.failure = failed
            raise
        return self.logger  # type: ignore[return-value]  # as above

    async def afetch_result(self) -> dict[str, Any]:
        return self.result()

    @async_dispatch(afetch_result)
    def fetch_result(self) -> dict[str, Any]:  # type: ignore[override]  # as wait_for_completion
        """The outcome (namespace, rayjob_name, job_id, job_status, succeeded, ...) once the wait is over."""
        return self.result()

    def result(self) -> dict[str, Any]:
        if self.failure is not None:
            raise self.failure
        if self.outcome is None:
            raise RuntimeError("the RayJob has not been waited on yet: call wait_for_completion() first")
        return self.outcome
