"""The life of one RayJob as a task sees it: validate, create or re-attach, wait, read logs, clean up.

Orchestrator-neutral and synchronous; the Airflow and Prefect adapters (and their async triggers) call
these steps and add only what their orchestrator needs. Waiting is ``core.async_lifecycle``'s, run here
on a private event loop (``core.sync_bridge``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from kuberay_provider.core.async_lifecycle import AdmissionTimeout as AdmissionTimeout
from kuberay_provider.core.async_lifecycle import RayJobTimeout as RayJobTimeout
from kuberay_provider.core.async_lifecycle import StateTracker, wait_tracked, wait_until_gone
from kuberay_provider.core.dashboard import (
    DASHBOARD_PORT_NAME,
    DashboardAccess,
    raycluster_head_service,
    rayjob_head_service,
)

# ClusterNotFoundError, NameTakenError: defined with the other permanent errors, still importable from here.
from kuberay_provider.core.errors import ClusterNotFoundError, NameTakenError, ValidationError
from kuberay_provider.core.function_keys import META_KEY_ID, META_TRY
from kuberay_provider.core.job_request import JobSubmission
from kuberay_provider.core.kube.errors import KubeApiError, NotFoundError
from kuberay_provider.core.kube.sync_client import RayObjectsClient
from kuberay_provider.core.lineage import without_per_try_env
from kuberay_provider.core.log_follower import tail_lines
from kuberay_provider.core.naming import (
    ANNOTATION_CONSUMED_BY_TRY,
    ANNOTATION_FIRST_TRY,
    ANNOTATION_SPEC_DIGEST,
    ANNOTATION_TRY_NUMBER,
    LABEL_RUN_KEY,
    LABEL_TASK,
    label_value,
    run_selector,
    spec_digest,
)
from kuberay_provider.core.ray_jobs import DashboardEndpoint, RayJobsClient
from kuberay_provider.core.resources import RAYCLUSTER, RAYJOB
from kuberay_provider.core.status import RayJobState
from kuberay_provider.core.sync_bridge import run_sync, watching
from kuberay_provider.core.validated_create import create_validated
from kuberay_provider.core.validation import SchemaRegistry, validate_manifest

log = logging.getLogger(__name__)
DELETION_TIMEOUT = 120.0  # seconds a replaced RayJob (and, foreground, its cluster) may take to go
# Left out of the spec digest: Kueue (un)suspends a RayJob and the SDK path sets jobId after the create;
# a function run's job metadata names the try's key, and the runtime env the try's OpenLineage parent run
# (core.lineage), which differ per try while the job does not.
VOLATILE_SPEC_FIELDS = ("suspend", "jobId")
PER_TRY_METADATA = (META_KEY_ID, META_TRY)


@dataclass
class Launch:
    """What create-or-attach found: the object, and whether this call created it."""

    manifest: dict[str, Any]
    created: bool
    replaced: bool = False  # a failed RayJob of an earlier try was deleted first
    superseded: str = (
        ""  # another RayJob of this task was deleted first, and why (its outcome was reported, its spec differs)
    )

    @property
    def state(self) -> RayJobState:
        return RayJobState.from_object(self.manifest)


def namespace_and_name(manifest: Mapping[str, Any]) -> tuple[str, str]:
    metadata = manifest.get("metadata") or {}
    return metadata.get("namespace") or "default", metadata["name"]


@dataclass
class RayJobLifecycle:
    """The steps, bound to one Kubernetes API client and one way of reaching dashboards."""

    kube: RayObjectsClient
    schemas: SchemaRegistry | None = None
    dashboard: DashboardAccess = field(default_factory=DashboardAccess)
    server_dry_run: bool = False  # a dry run before each create: only adds webhooks' verdicts (core.validated_create)

    def validate(self, manifest: dict[str, Any]) -> None:
        """Layers (a) KubeRay's rules and (b) the CRD schema; all problems at once, before any write."""
        errors = validate_manifest(manifest, self.schemas)
        if errors:
            namespace, name = manifest_label(manifest)
            raise ValidationError(errors, object_name=f"{manifest.get('kind', 'object')} {namespace}/{name}")

    def create_or_attach(self, manifest: dict[str, Any], *, result_in_log: bool = False) -> Launch:
        """Re-attach to the RayJob a previous try of this run created, or create it.

        A later try re-attaches to a RayJob that is live or succeeded, has the same spec, and whose outcome
        no try reported before the task's current series of tries (``reuse_of``): a retry after a crash
        follows the job to its end instead of running it twice. Any other RayJob of the task (it failed,
        its spec changed, or the task was cleared after its outcome was reported) is deleted and waited
        for, so there is never more than one RayJob per task, and created anew. With ``result_in_log`` (a
        shipped function, whose result only the job's log holds) so is a succeeded RayJob whose cluster, and
        the log with it, is gone: it can be run again, never read again.

        Created first, looked for only when the create is refused (409, or a quota or webhook that refuses
        a second object): where nothing exists, one request, as a bare create loop (``core.validated_create``:
        ``validate`` checked the object against the installed CRD; ``server_dry_run`` adds a dry run).
        """
        manifest = with_spec_digest(manifest)
        namespace, name = namespace_and_name(manifest)
        try:
            return Launch(self._create(manifest), created=True)
        except KubeApiError:
            if (existing := self.kube.find(RAYJOB, namespace, name)) is None:
                raise  # refused, and not because it exists
        self._check_same_run(manifest, existing)
        reuse = reuse_of(existing, manifest)
        if reuse.reattach and result_in_log and (gone := self.result_gone(existing)):
            reuse = Reuse(False, gone)
        if reuse.reattach:
            why = f" ({reuse.why})" if reuse.why else ""
            log.info("RayJob %s/%s already exists; re-attaching to it%s", namespace, name, why)
            return Launch(existing, created=False)
        log.info("RayJob %s/%s: %s; deleting it to run the job anew", namespace, name, reuse.why)
        self.delete_and_wait(namespace, name)
        created = self._create(manifest)
        return Launch(created, created=True, replaced=reuse.failed, superseded="" if reuse.failed else reuse.why)

    def _create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        created = create_validated(self.kube, manifest, self.schemas, server_dry_run=self.server_dry_run)
        log.info("Created RayJob %s/%s", *namespace_and_name(manifest))
        return created

    def result_gone(self, rayjob: Mapping[str, Any]) -> str:
        """Why a succeeded RayJob's log can no longer be read ("" while it can): its RayCluster is gone."""
        state = RayJobState.from_object(rayjob)
        if not state.succeeded_job or not state.cluster_name or (rayjob.get("spec") or {}).get("clusterSelector"):
            return ""
        cluster = self.kube.find(RAYCLUSTER, state.namespace, state.cluster_name)
        if cluster is not None and not (cluster.get("metadata") or {}).get("deletionTimestamp"):
            return ""
        return (
            f"it succeeded, but its RayCluster {state.namespace}/{state.cluster_name} is gone, and with it the Ray "
            "job's log that held the result"
        )

    def mark_consumed(self, namespace: str, name: str, try_number: int) -> bool:
        """Record on the RayJob that ``try_number`` reported its outcome (cncf.kubernetes' ``already_checked``
        label): a try of a later series (the task cleared, its run reprocessed) runs the job anew, while a
        retry of the same series still re-attaches. False when the RayJob is gone."""
        try:
            self.kube.patch(
                RAYJOB, namespace, name, {"metadata": {"annotations": {ANNOTATION_CONSUMED_BY_TRY: str(try_number)}}}
            )
        except NotFoundError:
            return False
        return True

    @staticmethod
    def _check_same_run(wanted: Mapping[str, Any], existing: Mapping[str, Any]) -> None:
        wanted_key = ((wanted.get("metadata") or {}).get("labels") or {}).get(LABEL_RUN_KEY)
        existing_key = ((existing.get("metadata") or {}).get("labels") or {}).get(LABEL_RUN_KEY)
        if wanted_key and existing_key != wanted_key:
            namespace, name = namespace_and_name(existing)
            raise NameTakenError(
                f"RayJob {namespace}/{name} exists but was not created by this run "
                f"(label {LABEL_RUN_KEY}={existing_key!r}, expected {wanted_key!r}); choose another name"
            )

    def wait(
        self,
        namespace: str,
        name: str,
        *,
        until: Callable[[RayJobState], bool] = lambda s: s.is_terminal,
        timeout: float | None = None,
        on_change: Callable[[RayJobState], None] | None = None,
    ) -> RayJobState:
        """Block until ``until(state)`` holds, following the RayJob by watch (no polling loop)."""
        tracker = StateTracker(namespace, name, until, timeout, on_change)
        return run_sync(wait_tracked(watching(self.kube), RAYJOB, tracker))

    def head_service(self, state: RayJobState) -> str:
        """The service in front of the head of the cluster the RayJob runs on.

        The cluster's own head service exists as soon as the cluster is ready; KubeRay creates the
        RayJob's stable ``<rayjob>-head-svc`` only once the job is Running (reconcileServices), too late
        for InteractiveMode's submission. So prefer the cluster's, and fall back to the RayJob's.
        """
        if state.cluster_name:
            cluster = self.kube.find(RAYCLUSTER, state.namespace, state.cluster_name)
            if cluster is not None:
                return raycluster_head_service(cluster)
        return rayjob_head_service(state.name)

    def jobs_client(self, namespace: str, service: str, cluster: str = "") -> RayJobsClient:
        if self.dashboard.uses_service_proxy:
            connection = self.kube.proxy_connection(namespace, service, DASHBOARD_PORT_NAME)
            endpoint = DashboardEndpoint.through(connection, headers=self.dashboard.auth_headers())
        else:
            endpoint = self.dashboard.direct_endpoint(namespace=namespace, service=service, cluster=cluster)
        return RayJobsClient(endpoint)

    def head_service_of_cluster(self, namespace: str, cluster_name: str) -> str:
        cluster = self.kube.find(RAYCLUSTER, namespace, cluster_name)
        if cluster is None:
            raise ClusterNotFoundError(f"RayCluster {namespace}/{cluster_name} does not exist")
        return raycluster_head_service(cluster)

    def bare_head_service(self, namespace: str, service: str | None = None, volcano_job: str | None = None) -> str:
        """The Service of a Ray head no RayCluster describes: ``service`` as named, or the one Volcano's ray
        plugin made for ``volcano_job`` (``<job>-head-svc``; newer Volcano names it after the job)."""
        candidates = [service] if service else [f"{volcano_job}-head-svc", str(volcano_job)]
        for name in candidates:
            if self.kube.read_service(namespace, name) is not None:
                return name
        what = (
            f"Service {namespace}/{service}"
            if service
            else (
                f"a Ray head Service of Volcano Job {namespace}/{volcano_job} (looked for {' and '.join(candidates)}; "
                "the Job needs Volcano's ray plugin)"
            )
        )
        raise ClusterNotFoundError(f"{what} does not exist")

    def rayjob_jobs_client(self, state: RayJobState) -> RayJobsClient:
        return self.jobs_client(state.namespace, self.head_service(state), state.cluster_name)

    def submit_interactive(self, state: RayJobState, submission: JobSubmission) -> bool:
        """InteractiveMode: submit through the Jobs SDK, then set ``spec.jobId`` so KubeRay tracks the job.

        Safe to repeat (a retried try): the fixed submission id re-attaches to a job already submitted,
        and the patch writes the same value again. True when this call started the job.
        """
        started = self.rayjob_jobs_client(state).submit(**submission.submit_arguments())
        self.kube.patch(RAYJOB, state.namespace, state.name, {"spec": {"jobId": submission.submission_id}})
        log.info(
            "%s Ray job %s for RayJob %s/%s",
            "Submitted" if started else "Re-attached to",
            submission.submission_id,
            state.namespace,
            state.name,
        )
        return started

    def log_tail(self, jobs: RayJobsClient, job_id: str, lines: int = 50) -> str:
        """The end of a Ray job's log, or "" when it cannot be read (e.g. the cluster is already gone)."""
        if not job_id or lines <= 0:
            return ""
        try:
            return tail_lines(jobs.logs(job_id), lines)
        except Exception as exc:
            log.info("could not read the log of Ray job %s: %s", job_id, exc)
            return ""

    def dashboard_link(self, namespace: str, service: str, cluster: str = "", job_id: str = "") -> str:
        """A URL of the Ray dashboard (the job's page when ``job_id`` is known), without credentials."""
        if self.dashboard.uses_service_proxy:
            base = self.kube.proxy_connection(namespace, service, DASHBOARD_PORT_NAME).url
        else:
            base = self.dashboard.direct_endpoint(namespace=namespace, service=service, cluster=cluster).url
        base = base.rstrip("/") + "/"
        return f"{base}#/jobs/{job_id}" if job_id else base

    def delete(self, namespace: str, name: str) -> bool:
        """Delete the RayJob; KubeRay (and the owner references) take its cluster with it."""
        return self.kube.delete(RAYJOB, namespace, name, propagation_policy="Foreground")

    def delete_run(
        self, namespace: str, owner: str, run_id: str, tasks: Collection[str] | None = None, *, instance: str = ""
    ) -> list[str]:
        """Delete every RayJob one run (dag or flow run) of this ``instance`` created, found by its identity
        labels; only those of ``tasks`` when given. Returns the names of the RayJobs deleted."""
        selector = run_selector(owner, run_id, instance)
        wanted = None if tasks is None else {label_value(task) for task in tasks}
        deleted = []
        for rayjob in self.kube.list(RAYJOB, namespace, label_selector=selector):
            if (
                wanted is not None
                and ((rayjob.get("metadata") or {}).get("labels") or {}).get(LABEL_TASK) not in wanted
            ):
                continue
            name = namespace_and_name(rayjob)[1]
            if self.delete(namespace, name):
                deleted.append(name)
        return deleted

    def delete_and_wait(self, namespace: str, name: str, timeout: float | None = DELETION_TIMEOUT) -> None:
        """Delete the RayJob (foreground: its cluster goes first) and return once it is gone."""
        self.delete(namespace, name)
        if (left := run_sync(wait_until_gone(watching(self.kube), RAYJOB, namespace, name, timeout))) is not None:
            raise RayJobTimeout(
                f"RayJob {namespace}/{name} was not gone within {timeout} s", RayJobState.from_object(left)
            )


def _annotation_number(manifest: Mapping[str, Any], key: str) -> int | None:
    value = ((manifest.get("metadata") or {}).get("annotations") or {}).get(key)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def try_number_of(manifest: Mapping[str, Any]) -> int | None:
    """The try that created the RayJob, from its annotation (None: not recorded)."""
    return _annotation_number(manifest, ANNOTATION_TRY_NUMBER)


def consumed_by(manifest: Mapping[str, Any]) -> int | None:
    """The try that reported the RayJob's outcome (None: no try has)."""
    return _annotation_number(manifest, ANNOTATION_CONSUMED_BY_TRY)


def rayjob_spec_digest(manifest: Mapping[str, Any]) -> str:
    return spec_digest(without_per_try_env(manifest.get("spec") or {}), VOLATILE_SPEC_FIELDS, PER_TRY_METADATA)


def with_spec_digest(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the RayJob to create, annotated with the digest of its spec."""
    metadata = dict(manifest.get("metadata") or {})
    metadata["annotations"] = {
        **(metadata.get("annotations") or {}),
        ANNOTATION_SPEC_DIGEST: rayjob_spec_digest(manifest),
    }
    return {**manifest, "metadata": metadata}


@dataclass(frozen=True)
class Reuse:
    """What a try does with the RayJob of its name that an earlier try left, and why."""

    reattach: bool
    why: str = ""
    failed: bool = False  # replaced because it failed


def reuse_of(existing: Mapping[str, Any], wanted: Mapping[str, Any]) -> Reuse:
    """Re-attach, or replace (delete and create anew), the RayJob ``existing`` for the try asking ``wanted``.

    Replaced: a failure of an earlier try (said as such, whatever else changed); a spec that differs; an
    outcome a try reported (``consumed_by``) before the task's current series of tries began (the task was
    cleared) or at or after this try's number (the run was recreated and counts tries from 1 again).
    Re-attached otherwise: a live or succeeded RayJob, also one whose outcome a try of this series marked
    but died before the orchestrator recorded it (a retry reports the same outcome instead of running the
    job twice). A RayJob of an older provider version, without these annotations, counts as the same spec
    and unconsumed.
    """
    if is_failure_of_an_earlier_try(existing, wanted):
        return Reuse(False, f"it failed in try {try_number_of(existing)}", failed=True)
    recorded = ((existing.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_SPEC_DIGEST)
    if recorded and recorded != rayjob_spec_digest(wanted):
        return Reuse(False, "its spec differs from this try's (the DAG or a templated value changed)")
    consumer, this_try, first_try = (
        consumed_by(existing),
        try_number_of(wanted),
        _annotation_number(wanted, ANNOTATION_FIRST_TRY),
    )
    if consumer is not None and (this_try is None or consumer >= this_try):
        return Reuse(
            False, f"try {consumer} already reported its outcome and this try ({this_try}) starts the task over"
        )
    if consumer is not None and first_try is not None and consumer < first_try:
        return Reuse(
            False,
            f"try {consumer} reported its outcome before the task was cleared (this series began with try {first_try})",
        )
    if consumer is not None:
        return Reuse(True, f"try {consumer} marked its outcome but ended before the orchestrator recorded it")
    return Reuse(True)


def is_failure_of_an_earlier_try(existing: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """The existing RayJob ended without success, and ``wanted`` comes from a later try than it did."""
    existing_try, wanted_try = try_number_of(existing), try_number_of(wanted)
    if existing_try is None or wanted_try is None or wanted_try <= existing_try:
        return False
    state = RayJobState.from_object(existing)
    return state.is_terminal and not state.succeeded_job


def manifest_label(manifest: Mapping[str, Any]) -> tuple[str, str]:
    metadata: Mapping[str, Any] = manifest["metadata"] if isinstance(manifest.get("metadata"), Mapping) else {}
    return metadata.get("namespace") or "default", metadata.get("name") or metadata.get("generateName") or "?"
