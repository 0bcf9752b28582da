"""The steps of a function run that sit around an ordinary RayJob run: the request, the version check,
and reading the function's result (or its exception) back. Shared by ``@task.kuberay`` and Prefect's
``run_function_as_rayjob``; ``core.functions`` has the package and the markers."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Callable, Iterable

from kuberay_provider.core.cleanup import CLEANUP_FIELDS
from kuberay_provider.core.functions import (
    FunctionOutcome,
    FunctionResultMissing,
    RemoteFunctionError,
    ShippedFunction,
    check_versions,
    head_image,
    is_marker_line,
    python_of_image,
    read_outcome,
)
from kuberay_provider.core.job_request import RayJobRequest, SubmitVia
from kuberay_provider.core.job_runner import RayJobFailed, RayJobOutcome, RayJobRunner
from kuberay_provider.core.ray_jobs import RayJobsClient
from kuberay_provider.core.resources import RAYCLUSTER, RAYJOB
from kuberay_provider.core.spec import RAYJOB_SPEC_FIELDS
from kuberay_provider.core.status import RayJobState

log = logging.getLogger(__name__)
# A function's own cluster goes a minute after the job, unless the task chose: long enough for the task
# to read the result from the job's log, short enough that nothing lingers.
DEFAULT_FUNCTION_CLEANUP = "delete_cluster_after:60"
_CLEANUP_KEYWORDS = {keyword for keyword, name in RAYJOB_SPEC_FIELDS.items() if name in CLEANUP_FIELDS}


@dataclass
class FunctionRun:
    runner: RayJobRunner

    @staticmethod
    def request_for(request: RayJobRequest, shipment: ShippedFunction | None) -> RayJobRequest:
        """The task's request with the function's package as entrypoint, uploaded by the SDK submission,
        and (own cluster, no cleanup chosen) ``DEFAULT_FUNCTION_CLEANUP``."""
        params = dict(request.spec_params)
        if shipment is not None:
            params["entrypoint"] = shipment.entrypoint
        base_spec = (request.base_manifest or {}).get("spec") or {}
        chose_cleanup = request.cleanup is not None or bool(_CLEANUP_KEYWORDS & set(params)) or any(f in base_spec for f in CLEANUP_FIELDS)
        own_cluster = request.selector is None and not request.on_bare_head
        return dataclasses.replace(
            request, spec_params=params, submit_via=SubmitVia.SDK,
            ship_py_modules=(shipment.folder,) if shipment is not None else (),
            cleanup=request.cleanup if chose_cleanup or not own_cluster else DEFAULT_FUNCTION_CLEANUP,
        )

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
        check_versions(python_of_image(head_image(cluster_spec)), str(cluster_spec.get("rayVersion") or "") or None, warn)

    def _jobs_client(self, request: RayJobRequest, outcome_namespace: str, rayjob_name: str) -> RayJobsClient:
        lifecycle = self.runner.lifecycle
        if request.runs_without_rayjob:
            service, cluster, _ = self.runner.direct_target(request)
            return lifecycle.jobs_client(request.resolved_namespace, service, cluster)
        rayjob = lifecycle.kube.get(RAYJOB, outcome_namespace, rayjob_name)
        return lifecycle.rayjob_jobs_client(RayJobState.from_object(rayjob))

    def _outcome(self, request: RayJobRequest, job_id: str, namespace: str, rayjob_name: str, seen: Iterable[str]) -> FunctionOutcome:
        lines = list(seen)
        if lines:
            return read_outcome("\n".join(lines))
        try:
            text = self._jobs_client(request, namespace, rayjob_name).logs(job_id)
        except Exception as exc:  # noqa: BLE001 - said below, with what to do
            raise FunctionResultMissing(
                f"the log of Ray job {job_id} could not be read back for the function's result ({exc}); "
                "keep the cluster a little after the job (cleanup='delete_cluster_after:60')"
            ) from exc
        return read_outcome(text)

    def result(self, request: RayJobRequest, outcome: RayJobOutcome, seen_markers: Iterable[str]) -> FunctionOutcome:
        """The function's return value (or the path it was written to) of a succeeded job."""
        return self._outcome(request, outcome.job_id, outcome.namespace or request.resolved_namespace, outcome.rayjob_name, seen_markers)

    def failure(self, request: RayJobRequest, failed: RayJobFailed, seen_markers: Iterable[str]) -> Exception:
        """What a failed job means: the function's own exception with its remote traceback, or (no
        marker: the job failed around the function, e.g. its runtime_env) the RayJob failure itself."""
        markers = list(seen_markers) or [line for line in failed.log_tail.splitlines() if is_marker_line(line)]
        outcome = failed.outcome
        try:
            self._outcome(request, outcome.job_id, outcome.namespace or request.resolved_namespace, outcome.rayjob_name, markers)
        except RemoteFunctionError as error:
            return error
        except Exception as exc:  # noqa: BLE001 - nothing better to say than the job's own failure
            log.info("no function error in the log of %s: %s", outcome.job_id, exc)
        return failed
