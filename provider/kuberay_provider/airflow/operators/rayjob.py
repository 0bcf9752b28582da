"""RayJobOperator: run one Ray job on KubeRay from an Airflow task.

One operator, three ways to run, chosen by the arguments (see ``core.job_request``):

* create (default): a RayJob with its own cluster; KubeRay submits. The RayJob comes from keyword
  parameters (every RayJob spec field in snake_case, e.g. ``entrypoint=``, ``ray_cluster_spec=``,
  ``shutdown_after_job_finishes=``; ``runtime_env`` as a dict), a dict, or a templated YAML/JSON file
  (``rayjob="jobs/nightly.yaml"``), the keywords overriding the base field by field;
* ``submit_via="sdk"``: the RayJob runs in InteractiveMode and the operator submits the entrypoint through
  the Ray Jobs SDK itself under a deterministic submission id;
* ``cluster_selector="my-cluster"``: on an existing RayCluster, through a RayJob with clusterSelector, or
  with ``submit_via="sdk"`` straight to that cluster's head (no RayJob).

Validation (KubeRay's rules, the CRD schema read from the cluster; with ``server_dry_run`` a server dry
run too) happens before anything is created. The RayJob's name derives from (dag_id, task_id, run_id,
map_index), so a retried try re-attaches to the RayJob of its first try (a worker died, the wait timed
out). A try that reports the outcome marks the RayJob consumed: a cleared task (or a reprocessed run)
runs the job anew, as does a try whose spec differs or that follows a failure (``core.lifecycle.reuse_of``).
Waiting is by watch; ``deferrable=True`` hands the wait to ``RayJobTrigger``; ``wait_for_completion=False``
leaves it to a ``RayJobSensor`` downstream.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from typing import Any, ClassVar

from airflow.sdk import Context, conf

from kuberay_provider.airflow.hooks import DEFAULT_CONN_ID, KubeRayHook
from kuberay_provider.airflow.lineage import with_lineage_parent
from kuberay_provider.airflow.links import XCOM_DASHBOARD_URL, RayDashboardLink, push_dashboard_link
from kuberay_provider.airflow.operators.common import (  # PERMANENT_ERRORS, TASK_STATE_KEY, run_identity: re-exported
    ManifestTemplatedOperator,
    connection_instance,
    first_try_number,
    follow_recorded_rayjob,
    given_spec_keywords,
    mark_consumed,
    record_rayjob,
    run_identity,
    with_instance,
    withdraw_work,
)
from kuberay_provider.airflow.operators.rayjob_steps import XCOM_RAYJOB, RayJobSteps
from kuberay_provider.airflow.params import SecondsFields, push_extra
from kuberay_provider.core.dashboard_links import DashboardTarget
from kuberay_provider.core.job_request import RAYJOB_KEYWORDS, RayJobRequest, SubmitVia
from kuberay_provider.core.job_runner import RayJobFailed, RayJobOutcome, RayJobRunner
from kuberay_provider.core.resources import RAYJOB
from kuberay_provider.core.status import RayJobState

# The spec keywords the operator takes as such; cluster_selector is a parameter of its own (a name or a
# selector, and a way to run), written into the spec by the request.
SPEC_KEYWORDS = RAYJOB_KEYWORDS - {"cluster_selector"}


class RayJobOperator(RayJobSteps, SecondsFields, ManifestTemplatedOperator):
    """Run a Ray job as a KubeRay RayJob (or on an existing RayCluster) and wait for it.

    Every RayJob spec field is a keyword in snake_case (``core.job_request.RAYJOB_KEYWORDS``), overriding
    the base manifest's field: ``entrypoint``, ``runtime_env`` (a dict, written as ``runtimeEnvYAML``),
    ``ray_cluster_spec``, ``shutdown_after_job_finishes``, ``ttl_seconds_after_finished``,
    ``active_deadline_seconds``, ``backoff_limit``, ``entrypoint_resources`` (a dict) and the rest. All
    are templated, and ``partial()`` / ``expand()`` / ``expand_kwargs()`` take them like any parameter:
    each map index runs its own RayJob.

    :param rayjob: a base RayJob: a dict, or a YAML/JSON file path rendered as a Jinja template (the only
        string read as a file: an entrypoint mentioning ``conf/train.yaml`` stays a string).
    :param cluster_selector: run on an existing RayCluster: its name, or ``{"ray.io/cluster": name}``.
    :param submit_via: ``"kuberay"`` (KubeRay submits) or ``"sdk"`` (the operator submits through the Ray
        Jobs SDK: InteractiveMode, or straight to the selected cluster's head).
    :param name: the RayJob's name; default derived from the run (what makes retries re-attach).
    :param namespace: default: the base manifest's, else the connection's, else ``default``.
    :param kuberay_conn_id: a ``kuberay`` connection (templated).
    :param wait_timeout: seconds to wait for the job (None: the task's own timeouts apply); templated, the
        rendered string read as a number.
    :param wait_for_completion: False: create the RayJob (or re-attach to it), return its state so far and
        leave the wait to a ``RayJobSensor`` (XCom ``rayjob`` names it). In SDK mode the task still waits
        until it has submitted the job. Refused beside what needs the task to see the end:
        ``delete_on_success`` / ``delete_on_failure``, ``admission_timeout`` (KubeRay submits), a job
        submitted straight to a Ray head.
    :param queue_name: a Kueue LocalQueue: the RayJob is labelled ``kueue.x-k8s.io/queue-name`` and
        created suspended; the task reports that it is queued for admission until Kueue admits it.
        Kueue's limits are checked first: its own cluster (no cluster_selector), shutdown after the job,
        no in-tree autoscaling, at most 7 worker groups.
    :param admission_timeout: seconds it may stay queued on Kueue; after that the RayJob is deleted
        (so it cannot start later with no task following it) and the try fails. None: only
        ``wait_timeout`` bounds the queueing.
    :param volcano_queue: a Volcano Queue: sets ``ray.io/scheduler-name: volcano`` and
        ``volcano.sh/queue-name`` (KubeRay's operator must run with the Volcano batch scheduler).
    :param volcano_job: run on the Ray head of a Volcano Job (Volcano's ``ray`` plugin exposes it as
        ``<job>-head-svc``): submitted through the Ray Jobs SDK, no RayJob or RayCluster involved.
    :param head_service: the same for any Ray head behind a Service no RayCluster describes.
    :param deferrable: wait in the triggerer (``RayJobTrigger``) instead of a worker slot.
    :param cleanup: what KubeRay does with the cluster once the job ends, in one word (``core.cleanup``):
        ``"keep"``, ``"delete_cluster"``, ``"delete_cluster_after:<s>"``,
        ``"delete_workers_then_cluster:<s>:<s>"``; refused beside a disagreeing explicit
        shutdownAfterJobFinishes / ttlSecondsAfterFinished / deletionStrategy.
    :param delete_on_kill: delete the RayJob when the task is killed (KubeRay stops the job).
    :param delete_on_final_timeout: when ``wait_timeout`` or ``execution_timeout`` ends the last try (no
        retry follows), delete the RayJob (on an existing cluster: stop the Ray job), so nothing runs on
        with no task following it. Before the last try a timeout keeps it for the retry to re-attach to.
    :param delete_on_success: delete the RayJob once the job succeeded (besides KubeRay's own
        shutdownAfterJobFinishes / ttlSecondsAfterFinished / deletionStrategy, passed through).
    :param delete_on_failure: delete the RayJob once the job failed.
    :param stream_logs: stream the Ray job's log into the task log while it runs.
    :param log_tail_lines: lines of the Ray job's log in the failure message.
    :param validate_schema: also check the manifest against the CRD schema read from the cluster.
    :param server_dry_run: a server-side dry run before the create. Off by default: the schema check above
        already runs against the installed CRD; the dry run adds only admission webhooks' verdicts, for a
        request more per RayJob.

    Returns (XCom ``return_value``) the outcome: namespace, rayjob_name, job_id, cluster_name,
    deployment_status, job_status, succeeded, reason, message, dashboard_url (with
    ``wait_for_completion=False``: as they stand when the task returns). ``do_xcom_push=False`` also
    keeps the XComs ``rayjob`` and ``ray_dashboard_url`` from being pushed.
    """

    template_fields: Sequence[str] = (
        "rayjob",
        "spec_params",
        "namespace",
        "name",
        "cluster_selector",
        "labels",
        "annotations",
        "queue_name",
        "volcano_queue",
        "volcano_job",
        "head_service",
        "kuberay_conn_id",
        "wait_timeout",
    )
    seconds_fields = ("wait_timeout",)
    manifest_field = "rayjob"
    template_fields_renderers: ClassVar[dict[str, str]] = {"rayjob": "yaml", "spec_params": "json"}
    operator_extra_links = (RayDashboardLink(),)
    ui_color = "#e3f2fd"

    def __init__(
        self,
        *,
        rayjob: Mapping[str, Any] | str | None = None,
        cluster_selector: str | Mapping[str, str] | None = None,
        submit_via: str = SubmitVia.KUBERAY.value,
        name: str | None = None,
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        kuberay_conn_id: str = DEFAULT_CONN_ID,
        wait_timeout: float | str | None = None,
        wait_for_completion: bool = True,
        queue_name: str | None = None,
        admission_timeout: float | None = None,
        volcano_queue: str | None = None,
        volcano_job: str | None = None,
        head_service: str | None = None,
        cleanup: str | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        delete_on_kill: bool = True,
        delete_on_final_timeout: bool = True,
        delete_on_success: bool = False,
        delete_on_failure: bool = False,
        stream_logs: bool = True,
        log_tail_lines: int = 50,
        validate_schema: bool = True,
        server_dry_run: bool = False,
        # RayJob spec fields (SPEC_KEYWORDS): declared one by one, since Airflow maps only declared names.
        active_deadline_seconds: int | None = None,
        backoff_limit: int | None = None,
        deletion_strategy: Mapping[str, Any] | None = None,
        entrypoint: str | None = None,
        entrypoint_num_cpus: float | None = None,
        entrypoint_num_gpus: float | None = None,
        entrypoint_resources: Mapping[str, float] | str | None = None,
        job_id: str | None = None,
        managed_by: str | None = None,
        metadata: Mapping[str, str] | None = None,
        pre_running_deadline_seconds: int | None = None,
        ray_cluster_spec: Mapping[str, Any] | None = None,
        runtime_env: Mapping[str, Any] | str | None = None,
        runtime_env_yaml: str | None = None,
        shutdown_after_job_finishes: bool | None = None,
        submission_mode: str | None = None,
        submitter_config: Mapping[str, Any] | None = None,
        submitter_pod_template: Mapping[str, Any] | None = None,
        suspend: bool | None = None,
        ttl_seconds_after_finished: int | None = None,
        **kwargs: Any,
    ) -> None:
        spec_params = given_spec_keywords(SPEC_KEYWORDS, locals())
        super().__init__(**kwargs)
        self.rayjob, self.spec_params, self.cluster_selector = rayjob, spec_params, cluster_selector
        self.submit_via = SubmitVia(submit_via).value
        self.name, self.namespace = name, namespace
        self.labels, self.annotations = dict(labels or {}), dict(annotations or {})
        self.kuberay_conn_id, self.wait_timeout, self.wait_for_completion = (
            kuberay_conn_id,
            wait_timeout,
            wait_for_completion,
        )
        self.queue_name, self.admission_timeout = queue_name, admission_timeout
        self.volcano_queue, self.volcano_job, self.head_service = volcano_queue, volcano_job, head_service
        self.cleanup, self.deferrable = cleanup, deferrable
        self.delete_on_kill, self.delete_on_success, self.delete_on_failure = (
            delete_on_kill,
            delete_on_success,
            delete_on_failure,
        )
        self.delete_on_final_timeout = delete_on_final_timeout
        self.stream_logs, self.log_tail_lines, self.validate_schema = stream_logs, log_tail_lines, validate_schema
        self.server_dry_run = server_dry_run
        self._work: RayJobRequest | None = (
            None  # once its RayJob exists or its direct Ray job is submitted: what on_kill removes
        )
        self._timed_out = False  # execution_timeout fired: the timeout rule, not on_kill, decides
        self._check_arguments()

    # --- building ---------------------------------------------------------------------------------------

    @cached_property
    def hook(self) -> KubeRayHook:
        return KubeRayHook(kuberay_conn_id=self.kuberay_conn_id)

    def build_request(self, context: Context) -> RayJobRequest:
        return with_lineage_parent(
            RayJobRequest(
                identity=run_identity(context),
                namespace=self.namespace or None,
                name=self.name or None,
                rayjob=self.rayjob,
                spec_params=self.spec_params,
                cluster_selector=self.cluster_selector,
                submit_via=self.submit_via,
                labels=self.labels,
                annotations=self.annotations,
                try_number=getattr(context["ti"], "try_number", None),
                first_try_number=first_try_number(context, self.retries),
                cleanup=self.cleanup,
                queue_name=self.queue_name or None,
                admission_timeout=self.admission_timeout,
                volcano_queue=self.volcano_queue or None,
                volcano_job=self.volcano_job or None,
                head_service=self.head_service or None,
            ),
            context,
        )  # the OpenLineage parent run, when enabled (airflow.lineage)

    def _request(self, context: Context) -> RayJobRequest:
        return self._completed(context, self.build_request(context))

    def _completed(self, context: Context, request: RayJobRequest) -> RayJobRequest:
        """``request`` with its namespace completed from the connection when neither the operator nor the
        base manifest names one, and its identity given the connection's instance id."""
        if request.namespace is None and not request.manifest_namespace:
            request = dataclasses.replace(request, namespace=self.hook.get_namespace() or None)
        return self._as_remembered(context, with_instance(request, connection_instance(self.hook)))

    def _as_remembered(self, context: Context, request: RayJobRequest) -> RayJobRequest:
        return follow_recorded_rayjob(context, request, self.log)

    def _remember(self, context: Context, request: RayJobRequest) -> None:
        record_rayjob(context, request, self.log)

    def _ray_log_line(self, line: str) -> None:
        """Where the Ray job's log goes, line by line: the task log (a subclass's hook)."""
        self.log.info("[ray] %s", line)

    def _runner(self) -> RayJobRunner:
        lifecycle = self.hook.lifecycle(validate_schema=self.validate_schema)
        lifecycle.server_dry_run = self.server_dry_run  # a new lifecycle per call: set on this one only
        return RayJobRunner(
            lifecycle,
            log_line=self._ray_log_line,
            status_line=lambda line: self.log.info("%s", line),
            stream_logs=self.stream_logs,
            log_tail_lines=self.log_tail_lines,
        )

    def _cleaning_up_on_failure(
        self, context: Context, runner: RayJobRunner, request: RayJobRequest, outcome_of: Callable[[], RayJobOutcome]
    ) -> RayJobOutcome:
        try:
            return outcome_of()
        except RayJobFailed as failed:  # the link to the failed job's page is what a person opens first
            self._push_dashboard_url(context, failed.outcome.dashboard_url, DashboardTarget.of_outcome(failed.outcome))
            self._cleanup(runner, request, succeeded=False)
            mark_consumed(runner.lifecycle, context, request, self.log)
            raise

    def _leave_to_sensor(
        self, context: Context, request: RayJobRequest, runner: RayJobRunner, state: RayJobState | None
    ) -> dict[str, Any]:
        """wait_for_completion=False: the RayJob runs on without the task, which returns its state so far and
        marks it reported, so that clearing the task runs the job anew (``core.lifecycle.reuse_of``)."""
        namespace, name = request.resolved_namespace, request.rayjob_name
        if state is None:  # just submitted (deferred SDK mode): read what the RayJob says now
            state = RayJobState.from_object(runner.lifecycle.kube.get(RAYJOB, namespace, name))
        self.log.info(
            "Not waiting for RayJob %s/%s (wait_for_completion=False): %s. A RayJobSensor on XCom %r waits for "
            "its end; KubeRay's own cleanup fields still apply",
            namespace,
            name,
            state.describe(),
            XCOM_RAYJOB,
        )
        mark_consumed(runner.lifecycle, context, request, self.log)
        dashboard_url = runner.dashboard_url(state) if state.cluster_name else runner.dashboard_url_of(request)
        return RayJobOutcome.from_state(state, dashboard_url).to_dict()

    def _finish(
        self, context: Context, request: RayJobRequest, runner: RayJobRunner, outcome: RayJobOutcome
    ) -> dict[str, Any]:
        self._push_dashboard_url(context, outcome.dashboard_url, DashboardTarget.of_outcome(outcome))
        self.log.info(
            "Ray job %s succeeded (RayJob %s/%s)", outcome.job_id, outcome.namespace, outcome.rayjob_name or "-"
        )
        if request.mode.creates_rayjob:
            self._cleanup(runner, request, succeeded=True)
            mark_consumed(runner.lifecycle, context, request, self.log)
        return outcome.to_dict()

    def _cleanup(self, runner: RayJobRunner, request: RayJobRequest, *, succeeded: bool) -> None:
        runner.cleanup(
            request.resolved_namespace,
            request.rayjob_name,
            succeeded=succeeded,
            delete_on_success=self.delete_on_success,
            delete_on_failure=self.delete_on_failure,
        )

    def _push_dashboard_url(self, context: Context, url: str, target: DashboardTarget) -> None:
        if url:
            push_extra(self, context, XCOM_DASHBOARD_URL, url)
        push_dashboard_link(
            context, self.hook, target
        )  # the UI's link, for a browser (pushed whatever do_xcom_push says, as Airflow does)

    def on_kill(self) -> None:
        """The task was killed: delete the RayJob (KubeRay stops the job and removes its cluster), or stop
        the Ray job submitted straight to an existing cluster. After ``execution_timeout`` the timeout rule
        has decided already (``_after_timeout``)."""
        if not self.delete_on_kill or self._timed_out or (work := self._work) is None:
            return
        self.log.info(
            "Task killed: %s",
            f"stopping Ray job {work.submission_id}"
            if not work.mode.creates_rayjob
            else f"deleting RayJob {work.resolved_namespace}/{work.rayjob_name}",
        )
        withdraw_work(self.hook.lifecycle(validate_schema=False), work)
