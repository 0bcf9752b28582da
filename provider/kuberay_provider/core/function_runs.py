"""The steps of a function run that sit around an ordinary RayJob run: the request, the version check,
and reading the function's result (or its exception) back. Shared by ``@task.kuberay`` and Prefect's
``run_function_as_rayjob``; ``core.functions`` has the package and the markers, ``core.function_keys``
the key that authenticates them.

Before anything of a job's log is believed, the job's metadata must show this run's key and the package
the job runs (``verify_job``): a job someone else submitted under the task's submission id, or one this
run's secret did not make, is refused without its log being read for a result.

The result lives only in the job's log, on the cluster, so the task owns the cluster's deletion: its own
cluster is created held (``core.cleanup.held_cleanup``: KubeRay keeps it ``hold_seconds`` after the job),
and once a try has read the result (or the function's exception) it applies the cleanup the task chose
(``release``). A try killed before that leaves the result for its retry; a retry that comes after the
hold, when the cluster and its log are gone, runs the function again (``RayJobLifecycle.result_gone``)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from kuberay_provider.core.cleanup import CLEANUP_FIELDS, cleanup_spec_fields, held_cleanup
from kuberay_provider.core.function_keys import ForeignRayJob, VerifiedJob, verify_job
from kuberay_provider.core.functions import (
    FunctionOutcome,
    FunctionResultMissing,
    ShippedFunction,
    check_versions,
    head_image,
    ignored_note,
    is_marker_line,
    python_of_image,
    read_error,
    read_outcome,
)
from kuberay_provider.core.job_request import RayJobRequest, SubmitVia
from kuberay_provider.core.job_runner import RayJobFailed, RayJobOutcome, RayJobRunner
from kuberay_provider.core.kube.errors import NotFoundError
from kuberay_provider.core.ray_jobs import RayJobsClient, RayJobsError
from kuberay_provider.core.resources import RAYCLUSTER, RAYJOB
from kuberay_provider.core.spec import RAYJOB_SPEC_FIELDS
from kuberay_provider.core.status import RayJobState

log = logging.getLogger(__name__)
# A function's own cluster goes as soon as a try has read the result, unless the task chose otherwise.
DEFAULT_FUNCTION_CLEANUP = "delete_cluster"
# Until then KubeRay keeps it this long after the job: a retry of a try killed after the job (Airflow
# notices a dead worker within minutes, then waits retry_delay) still finds the result.
DEFAULT_RESULT_HOLD_SECONDS = 3600
RESULT_GONE_HINT = (
    "the job's log (where the result is) goes with its RayCluster: the task's next try (or clearing the "
    "task) runs the function again. A retry later than result_hold_seconds after the job, a RayCluster "
    "deleted by hand, or cleanup given as raw shutdownAfterJobFinishes / ttlSecondsAfterFinished / "
    "deletionStrategy fields (which the task does not hold) lose it"
)
_CLEANUP_KEYWORDS = {keyword for keyword, name in RAYJOB_SPEC_FIELDS.items() if name in CLEANUP_FIELDS}


@dataclass
class FunctionRun:
    runner: RayJobRunner
    result_format: str = "pickle"
    warn: Callable[[str], None] | None = None  # None: the runner's status lines

    @staticmethod
    def request_for(
        request: RayJobRequest, shipment: ShippedFunction | None, hold_seconds: int = DEFAULT_RESULT_HOLD_SECONDS
    ) -> RayJobRequest:
        """The task's request with the function's package as entrypoint, uploaded by the SDK submission,
        the package's key id and digest in the job's metadata (next to the user's), and, on its own
        cluster, the cluster held for the result: created with ``held_cleanup`` of the task's cleanup choice
        (``DEFAULT_FUNCTION_CLEANUP`` when none), which ``release`` applies once the result was read.
        Cleanup given as raw spec fields is the user's to manage: passed through, not held."""
        params = dict(request.spec_params)
        base_spec = (request.base_manifest or {}).get("spec") or {}
        if shipment is not None:
            params["entrypoint"] = shipment.entrypoint
            params["metadata"] = {
                **dict(params.get("metadata") or base_spec.get("metadata") or {}),
                **shipment.metadata,
            }
        raw_fields = bool(_CLEANUP_KEYWORDS & set(params)) or any(f in base_spec for f in CLEANUP_FIELDS)
        own_cluster = request.selector is None and not request.on_bare_head
        chosen = (
            request.cleanup
            if request.cleanup is not None or raw_fields or not own_cluster
            else DEFAULT_FUNCTION_CLEANUP
        )
        held = chosen if own_cluster and not raw_fields and chosen is not None and chosen.strip() != "keep" else None
        return dataclasses.replace(
            request,
            spec_params=params,
            submit_via=SubmitVia.SDK,
            ship_py_modules=(shipment.folder,) if shipment is not None else (),
            cleanup=held_cleanup(held, hold_seconds) if held is not None else chosen,
            cleanup_after_read=held,
        )

    def release(self, request: RayJobRequest) -> bool:
        """Once a try has read the result (or the function's exception): the task's cleanup choice replaces
        the hold on the RayJob (KubeRay deletes the cluster as it says, counted from the job's end). A
        failure leaves the hold, and KubeRay's deletion at its end, in place: it is said, not raised."""
        choice, namespace, name = request.cleanup_after_read, request.resolved_namespace, request.rayjob_name
        if choice is None or request.runs_without_rayjob:
            return False
        try:
            self.runner.lifecycle.kube.patch(RAYJOB, namespace, name, {"spec": cleanup_spec_fields(choice)})
        except NotFoundError:
            return False
        except Exception as exc:
            (self.warn or self.runner.status_line)(
                f"Could not apply cleanup={choice!r} to RayJob {namespace}/{name} after reading the result ({exc}): "
                f"its cluster stays until the hold ends ({request.cleanup}); delete the RayJob to free it sooner"
            )
            return False
        self.runner.status_line(
            f"The function's outcome is read: cleanup={choice!r} now applies to the cluster of RayJob {namespace}/{name}"
        )
        return True

    def check_versions(self, request: RayJobRequest, warn: Callable[[str], None]) -> None:
        """Before anything is submitted: the cluster's Python (from its head image's tag) and Ray (its
        rayVersion, or what a running head reports) against this process's."""
        lifecycle, namespace = self.runner.lifecycle, request.resolved_namespace
        if request.on_bare_head:
            service, cluster, _ = self.runner.direct_target(request)
            check_versions(None, lifecycle.jobs_client(namespace, service, cluster).ray_version(), warn)
            return
        if request.selected_cluster:
            found = lifecycle.kube.find(RAYCLUSTER, namespace, request.selected_cluster)
            cluster_spec = (found or {}).get("spec") or {}
        else:
            cluster_spec = (request.manifest().get("spec") or {}).get("rayClusterSpec") or {}
        check_versions(
            python_of_image(head_image(cluster_spec)), str(cluster_spec.get("rayVersion") or "") or None, warn
        )

    def _jobs_client(self, request: RayJobRequest, outcome_namespace: str, rayjob_name: str) -> RayJobsClient:
        lifecycle = self.runner.lifecycle
        if request.runs_without_rayjob:
            service, cluster, _ = self.runner.direct_target(request)
            return lifecycle.jobs_client(request.resolved_namespace, service, cluster)
        rayjob = lifecycle.kube.get(RAYJOB, outcome_namespace, rayjob_name)
        return lifecycle.rayjob_jobs_client(RayJobState.from_object(rayjob))

    def verified_job(self, request: RayJobRequest, outcome: RayJobOutcome) -> tuple[VerifiedJob, RayJobsClient]:
        """The job as this run's (its metadata and entrypoint checked), and its Jobs API; ForeignRayJob when
        it is not this run's, FunctionResultMissing when it cannot be read any more."""
        job_id = outcome.job_id
        if not job_id:
            raise FunctionResultMissing("the RayJob names no Ray job: the function never ran")
        try:
            jobs = self._jobs_client(request, outcome.namespace or request.resolved_namespace, outcome.rayjob_name)
            jobs.info(job_id)  # a readable error (credentials stripped) when the job cannot be read
            try:
                details = jobs.client.get_job_info(job_id)
            except Exception as exc:
                raise RayJobsError(f"reading the metadata of Ray job {job_id} failed ({type(exc).__name__})") from None
        except Exception as exc:
            raise FunctionResultMissing(
                f"Ray job {job_id} could not be read to check it is this run's before reading its result ({exc}); "
                + RESULT_GONE_HINT
            ) from exc
        verified = verify_job(
            job_id,
            getattr(details, "metadata", None),
            str(getattr(details, "entrypoint", "") or ""),
            request.identity,
            request.try_number,
        )
        return verified, jobs

    @staticmethod
    def _job_of_this_try(request: RayJobRequest, outcome: RayJobOutcome) -> VerifiedJob | None:
        """The job as this try submitted it, from the try's own request (not from Ray): its markers must
        still carry this try's key, so a job someone else put under the submission id cannot pass."""
        params = request.spec_params
        try:
            return verify_job(
                outcome.job_id,
                params.get("metadata"),
                str(params.get("entrypoint") or ""),
                request.identity,
                request.try_number,
            )
        except ForeignRayJob:
            return None

    def _full_log(self, jobs: RayJobsClient, job_id: str) -> str:
        try:
            return jobs.logs(job_id)
        except Exception as exc:
            raise FunctionResultMissing(
                f"the log of Ray job {job_id} could not be read back for the function's result ({exc}); "
                + RESULT_GONE_HINT
            ) from exc

    def _report(self, ignored: int) -> None:
        if ignored:
            (self.warn or self.runner.status_line)(ignored_note(ignored))

    def result(self, request: RayJobRequest, outcome: RayJobOutcome, seen_markers: Iterable[str]) -> FunctionOutcome:
        """The function's return value (or the path it was written to) of a succeeded job: from the
        markers the log stream delivered, else from the job's whole log; only after ``verified_job``."""
        lines = "\n".join(seen_markers)
        try:
            job, jobs = self.verified_job(request, outcome)
        except FunctionResultMissing:
            # The job cannot be read any more (cleanup="delete_cluster" took the cluster right after the job),
            # but this try streamed its log: markers that carry this try's key (HMAC) are this run's result.
            own = self._job_of_this_try(request, outcome) if lines else None
            if own is None:
                raise
            found = read_outcome(lines, own, self.result_format)
            self._report(found.ignored)
            return found
        if lines:
            try:
                found = read_outcome(lines, job, self.result_format)
            except FunctionResultMissing:
                pass  # nothing authentic streamed (a stream that missed the end): read the whole log
            else:
                self._report(found.ignored)
                return found
        found = read_outcome(self._full_log(jobs, job.job_id), job, self.result_format)
        self._report(found.ignored)
        return found

    def failure(self, request: RayJobRequest, failed: RayJobFailed, seen_markers: Iterable[str]) -> Exception:
        """What a failed job means: the function's own exception with its remote traceback (an
        authenticated error marker), a refusal of a job that is not this run's, or (no error marker: the
        job failed around the function, e.g. its runtime_env) the RayJob failure itself. Never unpickles."""
        try:
            job, jobs = self.verified_job(request, failed.outcome)
        except ForeignRayJob as foreign:
            return foreign
        except FunctionResultMissing as exc:
            log.info("the failed Ray job %s could not be checked: %s", failed.outcome.job_id, exc)
            return failed
        # The streamed markers, else the tail's: the same lines, which must not be counted twice.
        markers = list(seen_markers) or [line for line in failed.log_tail.splitlines() if is_marker_line(line)]
        error, ignored = read_error("\n".join(markers), job)
        if error is None:
            try:
                error, ignored = read_error(self._full_log(jobs, job.job_id), job)
            except FunctionResultMissing as exc:
                log.info("no function error in the log of %s: %s", job.job_id, exc)
        self._report(ignored)
        return error if error is not None else failed
