"""The RayJob controller's I/O: observe (API + backend), run the pure reconcile, perform its Outcome."""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from kuberay_provider.local.ray_backend.base import (
    BackendError,
    JobAlreadyExistsError,
    JobInfo,
    JobRequest,
    RayBackend,
)

from . import kuberay as k
from .actions import (
    Action,
    AddFinalizer,
    CreateRayCluster,
    DeleteRayCluster,
    DeleteSelf,
    DeleteSubmitter,
    EnsureOwnerHeadService,
    EventSpec,
    Outcome,
    RemoveFinalizer,
    StartSubmitter,
    StopRayJob,
    SubmitJob,
    SuspendWorkerGroups,
)
from .api import PODS, RAYCLUSTERS, RAYJOBS, SERVICES, ApiError, ClusterAPI, ConflictError, NotFoundError
from .clock import Clock
from .events import EventRecorder
from .rayjob import reconcile_rayjob
from .rayjob_model import JobInfoError, RayJobObservation, RayJobSettings, SubmitterState, submission_mode

log = logging.getLogger(__name__)

CONFLICT_RETRY_SECONDS = 0.05


@dataclass
class SubmitterRecord:
    """The submitter K8s Job / sidecar container of one RayJob, which here lives in controller memory.

    ``pending`` holds the submission a started submitter has not made yet: a real submitter Pod is
    scheduled, pulls the head image and waits for the GCS before it submits, so the RayJob is Running
    for a few seconds while Ray does not know the job id (BEHAVIOUR.md 2.1). It submits at ``submit_at``.
    """

    failed: bool = False
    failure_reason: str = ""
    failure_message: str = ""
    finished_at: datetime | None = None
    pending: StartSubmitter | None = None
    submit_at: datetime | None = None
    cluster_name: str = ""  # a SidecarMode submitter lives in that cluster's head Pod and dies with it

    def view(self) -> SubmitterState:
        return SubmitterState(self.failed, self.failure_reason, self.failure_message, self.finished_at)


class ActionFailed(Exception):
    """An action failed: KubeRay returns the error and requeues without writing the status."""


class RayJobRuntime:
    def __init__(
        self,
        api: ClusterAPI,
        backend: RayBackend,
        clock: Clock,
        recorder: EventRecorder,
        settings: RayJobSettings,
        *,
        submitter_start_delay_seconds: float = 0.0,
        submitter_exit_delay_seconds: float = 0.0,
    ) -> None:
        self.api = api
        self.backend = backend
        self.clock = clock
        self.recorder = recorder
        self.settings = settings
        self.submitter_start_delay = timedelta(seconds=submitter_start_delay_seconds)
        self.submitter_exit_delay = timedelta(seconds=submitter_exit_delay_seconds)
        self.submitters: dict[tuple[str, str], SubmitterRecord] = {}
        # (namespace, rayjob) -> (cluster, Ray job id): to stop the Ray job if the RayJob vanishes without
        # our finalizer having run (an API server that deletes at once).
        self.running_jobs: dict[tuple[str, str], tuple[str, str]] = {}

    # -- observe -------------------------------------------------------------------------------
    async def observe(self, rayjob: Mapping[str, Any]) -> RayJobObservation:
        meta, spec, status = rayjob["metadata"], rayjob.get("spec") or {}, rayjob.get("status") or {}
        namespace = meta.get("namespace", "")
        cluster_name = status.get("rayClusterName", "")
        cluster = await self.api.get(RAYCLUSTERS, namespace, cluster_name) if cluster_name else None
        head_service = None
        if cluster is not None:
            head_service = await self.api.get(SERVICES, namespace, k.cluster_head_service_name(cluster))
        deployment = status.get("jobDeploymentStatus", "")
        running = deployment == "Running"
        job_info: JobInfo | JobInfoError | None = None
        if running and cluster is not None and status.get("jobId"):
            try:
                job_info = await self.backend.job_info(namespace, cluster_name, status["jobId"])
            except BackendError as exc:
                job_info = JobInfoError(str(exc))
        head_pod_present = False
        if running and submission_mode(spec) == "SidecarMode":
            head_pod_present = bool(
                await self.api.list(PODS, namespace, {k.RAY_CLUSTER_LABEL: cluster_name, k.RAY_NODE_TYPE_LABEL: "head"})
            )
        owner_service = (
            await self.api.get(SERVICES, namespace, k.owner_head_service_name(meta["name"])) if running else None
        )
        record = self.submitters.get((namespace, meta["name"]))
        if record is not None and submission_mode(spec) == "SidecarMode" and record.cluster_name != cluster_name:
            record = self.submitters.pop((namespace, meta["name"]))  # its head Pod went with the old cluster
            record = None
        now = self.clock.now()
        if record is not None and isinstance(job_info, JobInfo) and job_info.is_terminal and record.finished_at is None:
            # `ray job logs --follow` returns when the Ray job ends: the submitter finishes then.
            record.finished_at = now + self.submitter_exit_delay
        submitter = record.view() if record is not None else None
        if submitter is not None and submitter.finished_at is not None and submitter.finished_at > now:
            submitter = SubmitterState(submitter.failed, submitter.failure_reason, submitter.failure_message, None)
        return RayJobObservation(
            rayjob=rayjob,
            now=now,
            cluster=cluster,
            cluster_head_service=head_service,
            head_pod_present=head_pod_present,
            job_info=job_info,
            submitter=submitter,
            owner_head_service=owner_service,
        )

    # -- reconcile -----------------------------------------------------------------------------
    async def reconcile(self, namespace: str, name: str) -> float | None:
        rayjob = await self.api.get(RAYJOBS, namespace, name)
        if rayjob is None:
            return None
        await self._submit_when_due(rayjob)
        outcome = reconcile_rayjob(await self.observe(rayjob), self.settings)
        self._remember_job(rayjob, outcome)
        status_to_write = outcome.status
        try:
            for action in outcome.actions:
                result = await self._perform(rayjob, action)
                if isinstance(result, dict):
                    rayjob = result  # a metadata update: the status write needs its resourceVersion
                elif result is False and isinstance(action, SubmitJob):
                    status_to_write = dict(action.status_if_failed) if action.status_if_failed else None
        except ActionFailed:
            await self._record_all(rayjob, outcome.events)
            return self.settings.requeue_seconds
        await self._record_all(rayjob, outcome.events)
        if status_to_write is not None:
            try:
                await self.api.replace_status(RAYJOBS, {**rayjob, "status": status_to_write})
            except ConflictError:
                return CONFLICT_RETRY_SECONDS
            except NotFoundError:
                return None
        return self._sooner_for_submitter(namespace, name, outcome.requeue_after)

    async def _submit_when_due(self, rayjob: Mapping[str, Any]) -> None:
        """The submitter Pod acts on its own schedule: once its start delay has passed, it submits."""
        key = (rayjob["metadata"].get("namespace", ""), rayjob["metadata"]["name"])
        record = self.submitters.get(key)
        if record is None or record.pending is None or record.submit_at is None or self.clock.now() < record.submit_at:
            return
        self.submitters[key] = await self._run_submitter(rayjob, record.pending)

    def _sooner_for_submitter(self, namespace: str, name: str, requeue: float | None) -> float | None:
        """Look again when a pending submitter is due to submit, if that is sooner than the requeue."""
        record = self.submitters.get((namespace, name))
        if record is None or record.submit_at is None or record.pending is None:
            return requeue
        due = max((record.submit_at - self.clock.now()).total_seconds(), 0.0) + 0.01
        return due if requeue is None else min(requeue, due)

    def _remember_job(self, rayjob: Mapping[str, Any], outcome: Outcome) -> None:
        status = outcome.status or rayjob.get("status") or {}
        key = (rayjob["metadata"].get("namespace", ""), rayjob["metadata"]["name"])
        if status.get("jobId") and status.get("rayClusterName"):
            self.running_jobs[key] = (status["rayClusterName"], status["jobId"])

    async def _record_all(self, rayjob: Mapping[str, Any], events: list[EventSpec]) -> None:
        for event in events:
            await self.recorder.record(rayjob, event)

    async def on_deleted(self, rayjob: Mapping[str, Any]) -> None:
        """The RayJob is gone: stop its Ray job if it may still run; forget its submitter."""
        key = (rayjob["metadata"].get("namespace", ""), rayjob["metadata"]["name"])
        self.submitters.pop(key, None)
        remembered = self.running_jobs.pop(key, None)
        job_status = (rayjob.get("status") or {}).get("jobStatus", "")
        if remembered and job_status not in ("STOPPED", "SUCCEEDED", "FAILED"):
            await self._stop(key[0], *remembered)

    async def _stop(self, namespace: str, cluster: str, job_id: str) -> None:
        try:
            await self.backend.stop_job(namespace, cluster, job_id)
        except BackendError as exc:  # KubeRay logs StopJob failures and carries on
            log.warning("could not stop Ray job %s: %s", job_id, exc)

    # -- actions -------------------------------------------------------------------------------
    async def _perform(self, rayjob: Mapping[str, Any], action: Action) -> dict[str, Any] | bool | None:
        namespace = rayjob["metadata"].get("namespace", "")
        name = rayjob["metadata"]["name"]
        if isinstance(action, (AddFinalizer, RemoveFinalizer)):
            return await self._update_finalizers(rayjob, action)
        if isinstance(action, StopRayJob):
            await self._stop(namespace, action.cluster_name, action.job_id)
        elif isinstance(action, CreateRayCluster):
            await self._create_cluster(rayjob, action.body)
        elif isinstance(action, EnsureOwnerHeadService):
            await self._ensure_owner_service(rayjob, action)
        elif isinstance(action, StartSubmitter):
            if self.submitter_start_delay:
                self.submitters[(namespace, name)] = SubmitterRecord(
                    pending=action,
                    submit_at=self.clock.now() + self.submitter_start_delay,
                    cluster_name=action.cluster_name,
                )
            else:
                self.submitters[(namespace, name)] = await self._run_submitter(rayjob, action)
        elif isinstance(action, DeleteSubmitter):
            self.submitters.pop((namespace, name), None)
        elif isinstance(action, SubmitJob):
            return await self._submit_http(rayjob, action.cluster_name, action.request)
        elif isinstance(action, DeleteRayCluster):
            await self._delete_cluster(rayjob, action.name)
        elif isinstance(action, SuspendWorkerGroups):
            await self._suspend_worker_groups(rayjob, action.cluster_name)
        elif isinstance(action, DeleteSelf):
            await self.api.delete(RAYJOBS, namespace, name)
        return None

    async def _guarded(self, rayjob: Mapping[str, Any], call: Any, ok: EventSpec | None, failed: EventSpec) -> Any:
        """Run an API call; on failure record ``failed`` (with the error) and abort the reconcile."""
        try:
            result = await call
        except ApiError as exc:
            await self.recorder.record(
                rayjob, EventSpec(failed.type, failed.reason, failed.action, f"{failed.message}: {exc.message or exc}")
            )
            raise ActionFailed(str(exc)) from exc
        if ok is not None:
            await self.recorder.record(rayjob, ok)
        return result

    async def _update_finalizers(
        self, rayjob: Mapping[str, Any], action: AddFinalizer | RemoveFinalizer
    ) -> dict[str, Any] | None:
        body = copy.deepcopy(dict(rayjob))
        finalizers = [f for f in body["metadata"].get("finalizers") or [] if f != action.finalizer]
        if isinstance(action, AddFinalizer):
            finalizers.append(action.finalizer)
        body["metadata"]["finalizers"] = finalizers
        try:
            return await self.api.replace(RAYJOBS, body)
        except NotFoundError:
            return None
        except ApiError as exc:
            raise ActionFailed(str(exc)) from exc

    async def _create_cluster(self, rayjob: Mapping[str, Any], body: Mapping[str, Any]) -> None:
        ref = f"{body['metadata']['namespace']}/{body['metadata']['name']}"
        await self._guarded(
            rayjob,
            self.api.create(RAYCLUSTERS, body["metadata"]["namespace"], body),
            EventSpec("Normal", "CreatedRayCluster", "Create", f"Created RayCluster {ref}"),
            EventSpec("Warning", "FailedToCreateRayCluster", "Create", f"Failed to create RayCluster {ref}"),
        )

    async def _ensure_owner_service(self, rayjob: Mapping[str, Any], action: EnsureOwnerHeadService) -> None:
        body = copy.deepcopy(dict(action.body))
        namespace, svc_name = body["metadata"]["namespace"], body["metadata"]["name"]
        cluster = await self.api.get(RAYCLUSTERS, namespace, action.cluster_name)
        if cluster is not None:
            cluster_service = await self.api.get(SERVICES, namespace, k.cluster_head_service_name(cluster))
            annotation = ((cluster_service or {}).get("metadata", {}).get("annotations") or {}).get(
                k.ENDPOINTS_ANNOTATION
            )
            if annotation:
                body["metadata"].setdefault("annotations", {})[k.ENDPOINTS_ANNOTATION] = annotation
        existing = await self.api.get(SERVICES, namespace, svc_name)
        ref = f"{namespace}/{svc_name}"
        if existing is None:
            await self._guarded(
                rayjob,
                self.api.create(SERVICES, namespace, body),
                EventSpec("Normal", "CreatedService", "Create", f"Created the service {ref}"),
                EventSpec("Warning", "FailedToCreateService", "Create", f"Failed to create the service {ref}"),
            )
            return
        body["spec"]["clusterIP"] = (existing.get("spec") or {}).get("clusterIP", body["spec"].get("clusterIP"))
        existing["spec"] = body["spec"]
        existing["metadata"]["annotations"] = {
            **(existing["metadata"].get("annotations") or {}),
            **body["metadata"].get("annotations", {}),
        }
        await self._guarded(
            rayjob,
            self.api.replace(SERVICES, existing),
            EventSpec("Normal", "UpdatedService", "Update", f"Updated the service {ref}"),
            EventSpec("Warning", "FailedToUpdateService", "Update", f"Failed to update the service {ref}"),
        )

    async def _submit(self, rayjob: Mapping[str, Any], cluster: str, request: JobRequest) -> None:
        """Submit through the backend; what it adapted (package lists...) becomes Events on the RayJob."""
        notices = await self.backend.submit_job(rayjob["metadata"].get("namespace", ""), cluster, request)
        for notice in notices or ():
            await self.recorder.record(rayjob, EventSpec(notice.type, notice.reason, "Submit", notice.message))

    async def _run_submitter(self, rayjob: Mapping[str, Any], action: StartSubmitter) -> SubmitterRecord:
        """The submitter's ``ray job status || ray job submit``, retried up to backoffLimit like its Job."""
        error = ""
        for _attempt in range(action.backoff_limit + 1):
            try:
                await self._submit(rayjob, action.cluster_name, action.request)
                return SubmitterRecord(cluster_name=action.cluster_name)
            except JobAlreadyExistsError:
                return SubmitterRecord(cluster_name=action.cluster_name)
            except BackendError as exc:
                error = str(exc)
        return SubmitterRecord(
            cluster_name=action.cluster_name,
            failed=True,
            failure_reason="BackoffLimitExceeded",
            failure_message=f"Job has reached the specified backoff limit: {error}",
            finished_at=self.clock.now(),
        )

    async def _submit_http(self, rayjob: Mapping[str, Any], cluster: str, request: JobRequest) -> bool:
        try:
            await self._submit(rayjob, cluster, request)
        except JobAlreadyExistsError:
            return True
        except BackendError as exc:
            log.warning("HTTPMode submission of %s failed: %s", request.job_id, exc)
            return False
        return True

    async def _delete_cluster(self, rayjob: Mapping[str, Any], cluster_name: str) -> None:
        namespace = rayjob["metadata"].get("namespace", "")
        ref = f"{namespace}/{cluster_name}"
        deleted = await self._guarded(
            rayjob,
            self.api.delete(RAYCLUSTERS, namespace, cluster_name),
            None,
            EventSpec("Warning", "FailedToDeleteRayCluster", "Delete", f"Failed to delete cluster {ref}"),
        )
        if deleted:
            await self.recorder.record(
                rayjob, EventSpec("Normal", "DeletedRayCluster", "Delete", f"Deleted cluster {ref}")
            )
        await self.backend.delete_cluster(namespace, cluster_name)

    async def _suspend_worker_groups(self, rayjob: Mapping[str, Any], cluster_name: str) -> None:
        """suspendWorkerGroups: DeleteWorkers sets ``suspend: true`` on every worker group."""
        namespace = rayjob["metadata"].get("namespace", "")
        cluster = await self.api.get(RAYCLUSTERS, namespace, cluster_name)
        if cluster is None:
            raise ActionFailed(f"RayCluster {namespace}/{cluster_name} not found")
        for group in (cluster.get("spec") or {}).get("workerGroupSpecs") or []:
            group["suspend"] = True
        ref = f"{namespace}/{cluster_name}"
        await self._guarded(
            rayjob,
            self.api.replace(RAYCLUSTERS, cluster),
            EventSpec(
                "Normal",
                "UpdatedRayCluster",
                "Update",
                f"Set the `suspend` field to true for all worker groups in cluster {ref}",
            ),
            EventSpec(
                "Warning", "FailedToUpdateRayCluster", "Update", f"Failed to suspend worker groups in cluster {ref}"
            ),
        )
