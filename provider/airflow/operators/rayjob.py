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

Validation (KubeRay's rules, the CRD schema read from the cluster, a server dry run) happens before
anything is created. The RayJob's name derives from (dag_id, task_id, run_id, map_index), so a retried
try re-attaches to the RayJob of its first try (a worker died, the wait timed out); only when that RayJob
ended in failure does a later try delete it and start a new one. Waiting is by watch; ``deferrable=True`` hands the wait to
``RayJobTrigger``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from functools import cached_property
from typing import Any, Callable, Mapping

from airflow.sdk import BaseOperator, Context, conf
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from kuberay_provider.airflow.hooks import DEFAULT_CONN_ID, KubeRayHook
from kuberay_provider.airflow.links import XCOM_DASHBOARD_URL, RayDashboardLink
from kuberay_provider.airflow.triggers import RayJobTrigger, state_from_event
from kuberay_provider.core.cleanup import cleanup_spec_fields
from kuberay_provider.core.errors import KubeRayProviderError, ManifestError, ValidationError
from kuberay_provider.core.functions import VersionMismatch
from kuberay_provider.core.job_request import RAYJOB_KEYWORDS, RayJobRequest, RunIdentity, SubmitVia
from kuberay_provider.core.job_runner import RayJobFailed, RayJobOutcome, RayJobRunner
from kuberay_provider.core.lifecycle import ClusterNotFoundError, NameTakenError
from kuberay_provider.core.log_follower import StreamedLog
from kuberay_provider.core.status import WaitTarget

XCOM_RAYJOB = "rayjob"
TASK_STATE_KEY = "kuberay_rayjob"  # in the task's durable state: {"namespace", "name"} of its RayJob
# Errors a retry cannot fix: the task fails at once instead of burning its retries.
PERMANENT_ERRORS = (ValidationError, ManifestError, NameTakenError, ClusterNotFoundError, VersionMismatch, TypeError, ValueError)


def run_identity(context: Context) -> RunIdentity:
    ti = context["ti"]
    return RunIdentity(ti.dag_id, ti.task_id, ti.run_id, getattr(ti, "map_index", -1))


class RayJobOperator(BaseOperator):
    """Run a Ray job as a KubeRay RayJob (or on an existing RayCluster) and wait for it.

    :param rayjob: a base RayJob: a dict, or a YAML/JSON file path rendered as a Jinja template.
    :param cluster_selector: run on an existing RayCluster: its name, or ``{"ray.io/cluster": name}``.
    :param submit_via: ``"kuberay"`` (KubeRay submits) or ``"sdk"`` (the operator submits through the Ray
        Jobs SDK: InteractiveMode, or straight to the selected cluster's head).
    :param name: the RayJob's name; default derived from the run (what makes retries re-attach).
    :param namespace: default: the base manifest's, else the connection's, else ``default``.
    :param kuberay_conn_id: a ``kuberay`` connection.
    :param wait_timeout: seconds to wait for the job (None: the task's own timeouts apply).
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
    :param delete_on_success: delete the RayJob once the job succeeded (besides KubeRay's own
        shutdownAfterJobFinishes / ttlSecondsAfterFinished / deletionStrategy, passed through).
    :param delete_on_failure: delete the RayJob once the job failed.
    :param stream_logs: stream the Ray job's log into the task log while it runs.
    :param log_tail_lines: lines of the Ray job's log in the failure message.
    :param validate_schema: also check the manifest against the CRD schema read from the cluster.
    :param kwargs: any other RayJob spec field as a keyword, e.g. ``entrypoint="python job.py"``,
        ``runtime_env={"pip": [...]}``, ``ray_cluster_spec={...}``, ``shutdown_after_job_finishes=True``.

    Returns (XCom ``return_value``) the outcome: namespace, rayjob_name, job_id, cluster_name,
    deployment_status, job_status, succeeded, reason, message, dashboard_url.
    """

    template_fields: Sequence[str] = (
        "rayjob", "spec_params", "namespace", "name", "cluster_selector", "labels", "queue_name", "volcano_queue",
        "volcano_job", "head_service",
    )
    template_ext: Sequence[str] = (".yaml", ".yml", ".json")
    template_fields_renderers = {"rayjob": "yaml", "spec_params": "json"}
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
        wait_timeout: float | None = None,
        queue_name: str | None = None,
        admission_timeout: float | None = None,
        volcano_queue: str | None = None,
        volcano_job: str | None = None,
        head_service: str | None = None,
        cleanup: str | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        delete_on_kill: bool = True,
        delete_on_success: bool = False,
        delete_on_failure: bool = False,
        stream_logs: bool = True,
        log_tail_lines: int = 50,
        validate_schema: bool = True,
        **kwargs: Any,
    ) -> None:
        spec_params = {key: kwargs.pop(key) for key in list(kwargs) if key in RAYJOB_KEYWORDS}
        super().__init__(**kwargs)
        self.rayjob = rayjob
        self.spec_params = spec_params
        self.cluster_selector = cluster_selector
        self.submit_via = SubmitVia(submit_via).value
        self.name = name
        self.namespace = namespace
        self.labels = dict(labels or {})
        self.annotations = dict(annotations or {})
        self.kuberay_conn_id = kuberay_conn_id
        self.wait_timeout = wait_timeout
        self.queue_name = queue_name
        self.admission_timeout = admission_timeout
        self.volcano_queue = volcano_queue
        self.volcano_job = volcano_job
        self.head_service = head_service
        self.cleanup = cleanup
        self.deferrable = deferrable
        self.delete_on_kill = delete_on_kill
        self.delete_on_success = delete_on_success
        self.delete_on_failure = delete_on_failure
        self.stream_logs = stream_logs
        self.log_tail_lines = log_tail_lines
        self.validate_schema = validate_schema
        self._started: tuple[str, str] | None = None  # (namespace, RayJob name) once created or attached
        self._direct_job: RayJobRequest | None = None  # the direct SDK path (no RayJob): what on_kill stops
        self._check_arguments()

    def _check_arguments(self) -> None:
        """What can be judged before rendering: fail at DAG parse time, not in the middle of a run."""
        if self.rayjob is None and not self.spec_params:
            raise ValueError("RayJobOperator needs a RayJob: rayjob= (dict or YAML/JSON file) and/or spec keywords such as entrypoint=")
        if self.deferrable and ((self.submit_via == SubmitVia.SDK.value and self.cluster_selector) or self.volcano_job or self.head_service):
            raise ValueError("deferrable=True needs a RayJob to watch; submitting straight to a Ray head "
                             "(submit_via='sdk' with cluster_selector, volcano_job, head_service) creates none")
        if self.cleanup is not None:
            cleanup_spec_fields(self.cleanup)

    # --- building ---------------------------------------------------------------------------------------

    @cached_property
    def hook(self) -> KubeRayHook:
        return KubeRayHook(kuberay_conn_id=self.kuberay_conn_id)

    def build_request(self, context: Context) -> RayJobRequest:
        return RayJobRequest(
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
            cleanup=self.cleanup,
            queue_name=self.queue_name or None,
            admission_timeout=self.admission_timeout,
            volcano_queue=self.volcano_queue or None,
            volcano_job=self.volcano_job or None,
            head_service=self.head_service or None,
        )

    def _request(self, context: Context) -> RayJobRequest:
        """The request, its namespace completed from the connection when neither the operator nor the
        base manifest names one."""
        request = self.build_request(context)
        if request.namespace is None and not request.manifest_namespace:
            request = dataclasses.replace(request, namespace=self.hook.get_namespace() or None)
        return self._as_remembered(context, request)

    def _as_remembered(self, context: Context, request: RayJobRequest) -> RayJobRequest:
        """Airflow >= 3.3 keeps a task's own state across its tries (``task_state_store``). When an
        earlier try recorded its RayJob under another name than this try renders (a ``name=`` templated
        per try, a naming scheme changed by an upgrade), this try follows that RayJob: re-attaching to it,
        or replacing it if it failed, exactly as under the derived name."""
        store = context.get("task_state_store")
        if store is None or request.runs_without_rayjob:
            return request
        try:
            remembered = store.get(TASK_STATE_KEY)
        except Exception as exc:  # noqa: BLE001 - as on Airflow < 3.3: the derived name leads to the RayJob
            self.log.warning("Could not read this task's recorded RayJob: %s", exc)
            return request
        if not isinstance(remembered, dict) or not remembered.get("name"):
            return request
        namespace, name = str(remembered.get("namespace") or request.resolved_namespace), str(remembered["name"])
        if (namespace, name) == (request.resolved_namespace, request.rayjob_name):
            return request
        self.log.info("An earlier try of this task recorded RayJob %s/%s; following it instead of %s", namespace, name, request.rayjob_name)
        return dataclasses.replace(request, namespace=namespace, name=name)

    def _remember(self, context: Context, request: RayJobRequest) -> None:
        """Record the RayJob in the task's durable state (Airflow >= 3.3), for the tries after this one."""
        store = context.get("task_state_store")
        if store is None:
            return
        try:
            store.set(TASK_STATE_KEY, {"namespace": request.resolved_namespace, "name": request.rayjob_name})
        except Exception as exc:  # noqa: BLE001 - the derived name still leads a retry back to the RayJob
            self.log.warning("Could not record RayJob %s in the task state: %s", request.rayjob_name, exc)

    def _runner(self) -> RayJobRunner:
        return RayJobRunner(
            self.hook.lifecycle(validate_schema=self.validate_schema),
            log_line=lambda line: self.log.info("[ray] %s", line),
            status_line=lambda line: self.log.info("%s", line),
            stream_logs=self.stream_logs,
            log_tail_lines=self.log_tail_lines,
        )

    # --- running ----------------------------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        request = self._request(context)
        runner = self._runner()
        with _as_airflow_errors():
            if request.runs_without_rayjob:
                self._direct_job = request
                return self._finish(context, request, runner, runner.run_on_cluster(request, self.wait_timeout))
            runner.launch(request)
            self._started = (request.resolved_namespace, request.rayjob_name)
            self._remember(context, request)
            context["ti"].xcom_push(key=XCOM_RAYJOB, value={"namespace": request.resolved_namespace, "name": request.rayjob_name})
            self._push_dashboard_url(context, runner.dashboard_url_of(request))
            if self.deferrable and request.kueue_queue:
                self.log.info("RayJob %s/%s is queued for admission on Kueue LocalQueue %r; waiting in the triggerer%s",
                              request.resolved_namespace, request.rayjob_name, request.kueue_queue,
                              f" (at most {request.admission_timeout} s)" if request.admission_timeout else "")
                self._defer(request, WaitTarget.ADMITTED, "execute_after_admission", timeout=request.admission_timeout)
            if self.deferrable:
                self._defer(request, runner.first_wait_target(request), "execute_after_start")
            outcome = self._cleaning_up_on_failure(runner, request, lambda: runner.follow(request, self.wait_timeout))
        return self._finish(context, request, runner, outcome)

    def _defer(self, request: RayJobRequest, target: WaitTarget, method_name: str, timeout: float | None = None) -> None:
        self.defer(
            trigger=RayJobTrigger(
                name=request.rayjob_name, namespace=request.resolved_namespace, kuberay_conn_id=self.kuberay_conn_id,
                wait_for=target.value, timeout=timeout or self.wait_timeout, delete_on_kill=self.delete_on_kill,
                stream_logs=self.stream_logs and target is WaitTarget.TERMINAL, log_tail_lines=self.log_tail_lines,
            ),
            method_name=method_name,
        )

    def execute_after_admission(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Deferred: Kueue admitted the RayJob (or the wait for it timed out: then it is withdrawn)."""
        request = self._request(context)
        runner = self._runner()
        if (event or {}).get("status") == "timeout":
            runner.withdraw(request.resolved_namespace, request.rayjob_name, "not admitted by Kueue in time")
            raise AirflowException(
                f"RayJob {request.resolved_namespace}/{request.rayjob_name} was not admitted by Kueue "
                f"(LocalQueue {request.kueue_queue!r}) within {request.admission_timeout or self.wait_timeout} s; it was deleted"
            )
        state = state_from_event(event)
        if not state.is_terminal:
            self.log.info("RayJob %s/%s admitted by Kueue LocalQueue %r after %s s in the queue", state.namespace, state.name,
                          request.kueue_queue, event.get("waited_seconds", "?"))
        self._defer(request, runner.first_wait_target(request), "execute_after_start")
        return {}  # unreachable: defer() raises TaskDeferred

    def execute_after_start(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Deferred: the RayJob is ready for our submission (SDK mode), runs, or has already ended."""
        request = self._request(context)
        state = state_from_event(event)
        runner = self._runner()
        with _as_airflow_errors():
            runner.submit_if_waiting(request, state)
        self._push_dashboard_url(context, runner.dashboard_url(state))
        self._defer(request, WaitTarget.TERMINAL, "execute_complete")
        return {}  # unreachable: defer() raises TaskDeferred

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Deferred: the RayJob reached a terminal state."""
        request = self._request(context)
        state = state_from_event(event)
        runner = self._runner()
        streamed = StreamedLog.from_payload(event.get("log"))
        if streamed is not None and streamed.received:
            self.log.info("The Ray job's log was streamed by the triggerer (%d characters): see its section of this log", streamed.received)
        elif self.stream_logs:
            runner.replay_log(state)  # the trigger streamed nothing (the job had already ended): show it now
        with _as_airflow_errors():
            outcome = self._cleaning_up_on_failure(runner, request, lambda: runner.conclude(state, streamed))
        return self._finish(context, request, runner, outcome)

    def _cleaning_up_on_failure(
        self, runner: RayJobRunner, request: RayJobRequest, outcome_of: Callable[[], RayJobOutcome]
    ) -> RayJobOutcome:
        try:
            return outcome_of()
        except RayJobFailed:
            self._cleanup(runner, request, succeeded=False)
            raise

    def _finish(self, context: Context, request: RayJobRequest, runner: RayJobRunner, outcome: RayJobOutcome) -> dict[str, Any]:
        self._push_dashboard_url(context, outcome.dashboard_url)
        self.log.info("Ray job %s succeeded (RayJob %s/%s)", outcome.job_id, outcome.namespace, outcome.rayjob_name or "-")
        if not request.runs_without_rayjob:
            self._cleanup(runner, request, succeeded=True)
        return outcome.to_dict()

    def _cleanup(self, runner: RayJobRunner, request: RayJobRequest, *, succeeded: bool) -> None:
        runner.cleanup(
            request.resolved_namespace, request.rayjob_name, succeeded=succeeded,
            delete_on_success=self.delete_on_success, delete_on_failure=self.delete_on_failure,
        )

    @staticmethod
    def _push_dashboard_url(context: Context, url: str) -> None:
        if url:
            context["ti"].xcom_push(key=XCOM_DASHBOARD_URL, value=url)

    def on_kill(self) -> None:
        """The task was killed: delete the RayJob (KubeRay stops the job and removes its cluster), or stop
        the Ray job submitted straight to an existing cluster."""
        if not self.delete_on_kill:
            return
        if self._started is not None:
            namespace, name = self._started
            self.log.info("Task killed: deleting RayJob %s/%s", namespace, name)
            self.hook.lifecycle(validate_schema=False).delete(namespace, name)
        elif self._direct_job is not None:
            request = self._direct_job
            self.log.info("Task killed: stopping Ray job %s", request.submission_id)
            lifecycle = self.hook.lifecycle(validate_schema=False)
            service, cluster, _ = RayJobRunner(lifecycle).direct_target(request)
            lifecycle.jobs_client(request.resolved_namespace, service, cluster).stop(request.submission_id)


class RayJobCleanupOperator(BaseOperator):
    """Delete every RayJob this DAG run's RayJobOperators created (found by their dag_id and run_id
    labels), and so their clusters; only those of ``task_ids`` when given.

    Meant as the run's last task, with ``trigger_rule="all_done"``, or as a teardown
    (``cleanup.as_teardown(setups=...)``), so failed runs are cleaned up too. Returns (XCom) the names of
    the RayJobs deleted.

    :param task_ids: only the RayJobs of these tasks (all their map indexes); default: every task's.
    :param namespace: default: the connection's, else ``default``.
    :param kuberay_conn_id: a ``kuberay`` connection.
    """

    template_fields: Sequence[str] = ("task_ids", "namespace")
    ui_color = "#e3f2fd"

    def __init__(
        self,
        *,
        task_ids: Sequence[str] | None = None,
        namespace: str | None = None,
        kuberay_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.task_ids = list(task_ids) if task_ids is not None else None
        self.namespace = namespace
        self.kuberay_conn_id = kuberay_conn_id

    def execute(self, context: Context) -> list[str]:
        ti = context["ti"]
        hook = KubeRayHook(kuberay_conn_id=self.kuberay_conn_id)
        namespace = self.namespace or hook.get_namespace() or "default"
        deleted = hook.lifecycle(validate_schema=False).delete_run(namespace, ti.dag_id, ti.run_id, self.task_ids)
        self.log.info("Deleted %d RayJob(s) of run %s in %s: %s", len(deleted), ti.run_id, namespace, ", ".join(deleted) or "-")
        return deleted


class _as_airflow_errors:
    """Provider errors become Airflow's: permanent ones (invalid manifest, name taken, no such cluster)
    fail without retries; a failed Ray job fails the try (retries apply)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: Any) -> bool:
        if error is None or isinstance(error, AirflowException) or not isinstance(error, Exception):
            return False
        if isinstance(error, PERMANENT_ERRORS):
            raise AirflowFailException(str(error)) from error
        if isinstance(error, KubeRayProviderError):
            raise AirflowException(str(error)) from error
        return False
