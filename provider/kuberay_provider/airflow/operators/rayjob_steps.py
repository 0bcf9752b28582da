"""The steps of a RayJobOperator try, as one state machine (kept apart from ``operators.rayjob`` for size).

A try runs in up to four steps, each one call Airflow makes (``Step``): the launch (``execute``), and after a
deferral the resumption once Kueue admitted the RayJob, once it started (or waits for the operator's
submission), and once it ended. ``next_move`` is the one place that decides what a step does next
(``Move``): run in the worker, leave the wait to a sensor, or defer to the triggerer until the next step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowException

from kuberay_provider.airflow.operators.common import as_airflow_errors
from kuberay_provider.airflow.operators.rayjob_rules import RayJobRules
from kuberay_provider.airflow.params import push_extra
from kuberay_provider.airflow.triggers import RayJobTrigger, state_from_event
from kuberay_provider.core.dashboard_links import DashboardTarget
from kuberay_provider.core.job_request import RayJobRequest, RunMode
from kuberay_provider.core.job_runner import RayJobOutcome, RayJobRunner
from kuberay_provider.core.log_follower import ReceivedLog
from kuberay_provider.core.status import RayJobState, WaitTarget

if TYPE_CHECKING:
    from datetime import timedelta

    from airflow.triggers.base import BaseTrigger

XCOM_RAYJOB = "rayjob"


class Step(str, Enum):
    """Where a try stands when Airflow calls the operator; the value is the method it calls."""

    LAUNCH = "execute"
    ADMITTED = "execute_after_admission"  # deferred until Kueue admitted the RayJob (or the wait timed out)
    STARTED = "execute_after_start"  # deferred until the RayJob waits for our submission, runs, or ended
    ENDED = "execute_complete"  # deferred until the RayJob ended


class Move(Enum):
    """What a step does next."""

    RUN_ON_HEAD = "run_on_head"  # no RayJob: submit straight to the Ray head and follow the job in the worker
    LEAVE_TO_SENSOR = "leave_to_sensor"  # return the RayJob's state so far; a RayJobSensor waits for its end
    SUBMIT_THEN_LEAVE_TO_SENSOR = "submit_then_leave_to_sensor"  # SDK mode: the task submits before leaving
    FOLLOW = "follow"  # wait for the end in the worker
    DEFER_UNTIL_ADMITTED = "defer_until_admitted"
    DEFER_UNTIL_STARTED = "defer_until_started"
    DEFER_UNTIL_ENDED = "defer_until_ended"
    CONCLUDE = "conclude"  # the trigger saw the end: read the outcome

    @property
    def resumes_at(self) -> Step | None:
        """The step a deferral resumes in (None: no deferral)."""
        return _RESUMES_AT.get(self)


_RESUMES_AT = {
    Move.DEFER_UNTIL_ADMITTED: Step.ADMITTED,
    Move.DEFER_UNTIL_STARTED: Step.STARTED,
    Move.DEFER_UNTIL_ENDED: Step.ENDED,
}


@dataclass(frozen=True)
class Choices:
    """What the next move depends on besides the step: how the job runs and the operator's waiting options."""

    mode: RunMode
    deferrable: bool
    wait_for_completion: bool
    queued: bool  # the RayJob waits on a Kueue LocalQueue for admission

    @classmethod
    def of(cls, request: RayJobRequest, *, deferrable: bool, wait_for_completion: bool) -> Choices:
        return cls(request.mode, deferrable, wait_for_completion, bool(request.kueue_queue))


def next_move(step: Step, choices: Choices) -> Move:
    """The move that follows ``step``: every transition of a try, in one place."""
    if step is Step.LAUNCH:
        if not choices.mode.creates_rayjob:
            return Move.RUN_ON_HEAD
        if not choices.wait_for_completion and not choices.mode.provider_submits:
            return Move.LEAVE_TO_SENSOR
        if choices.deferrable:
            return Move.DEFER_UNTIL_ADMITTED if choices.queued else Move.DEFER_UNTIL_STARTED
        # SDK mode: the task itself submits the job, so it waits until then even when leaving the rest.
        return Move.FOLLOW if choices.wait_for_completion else Move.SUBMIT_THEN_LEAVE_TO_SENSOR
    if step is Step.ADMITTED:
        return Move.DEFER_UNTIL_STARTED
    if step is Step.STARTED:
        return Move.DEFER_UNTIL_ENDED if choices.wait_for_completion else Move.LEAVE_TO_SENSOR
    return Move.CONCLUDE


class RayJobSteps(RayJobRules):
    """Mixed into ``RayJobOperator``: its entry points, each one step of the state machine above."""

    if TYPE_CHECKING:
        kuberay_conn_id: str
        stream_logs: bool
        log_tail_lines: int
        delete_on_kill: bool
        _work: RayJobRequest | None

        def _request(self, context: Context) -> RayJobRequest: ...
        def _runner(self) -> RayJobRunner: ...
        def _remember(self, context: Context, request: RayJobRequest) -> None: ...
        def _push_dashboard_url(self, context: Context, url: str, target: DashboardTarget) -> None: ...
        def _finish(
            self, context: Context, request: RayJobRequest, runner: RayJobRunner, outcome: RayJobOutcome
        ) -> Any: ...
        def _leave_to_sensor(
            self, context: Context, request: RayJobRequest, runner: RayJobRunner, state: RayJobState | None
        ) -> dict[str, Any]: ...
        def _cleaning_up_on_failure(
            self,
            context: Context,
            runner: RayJobRunner,
            request: RayJobRequest,
            outcome_of: Callable[[], RayJobOutcome],
        ) -> RayJobOutcome: ...
        def defer(
            self,
            *,
            trigger: BaseTrigger,
            method_name: str,
            kwargs: dict[str, Any] | None = None,
            timeout: timedelta | int | float | None = None,
        ) -> NoReturn: ...

    # --- running: one step per call from Airflow, the next move decided by rayjob_steps.next_move -----

    def execute(self, context: Context) -> Any:
        return self._run_step(context, Step.LAUNCH, None)

    def execute_after_admission(self, context: Context, event: dict[str, Any]) -> Any:
        """Deferred: Kueue admitted the RayJob (or the wait for it timed out: then it is withdrawn)."""
        return self._run_step(context, Step.ADMITTED, event)

    def execute_after_start(self, context: Context, event: dict[str, Any]) -> Any:
        """Deferred: the RayJob is ready for our submission (SDK mode), runs, or has already ended."""
        return self._run_step(context, Step.STARTED, event)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        """Deferred: the RayJob reached a terminal state."""
        return self._run_step(context, Step.ENDED, event)

    @contextlib.contextmanager
    def _step_scope(self, context: Context, step: Step) -> Iterator[RayJobRequest]:
        """What a step runs under, and its request: a subclass's hook (``@task.kuberay`` ships its function)."""
        yield self._request(context)

    def _run_step(self, context: Context, step: Step, event: dict[str, Any] | None) -> Any:
        with self._step_scope(context, step) as request:
            runner = self._runner()
            choices = Choices.of(request, deferrable=self.deferrable, wait_for_completion=self.wait_for_completion)
            move = next_move(step, choices)
            state = self._arrive(context, step, move, request, runner, event)
            return self._make(context, step, move, request, runner, state, event)

    @contextlib.contextmanager
    def _guarded(self, context: Context, request: RayJobRequest) -> Iterator[None]:
        """Around the calls into the cluster: provider errors become Airflow's, a timeout follows the rule."""
        with as_airflow_errors(), self._timeout_rule(context, request):
            yield

    def _arrive(
        self,
        context: Context,
        step: Step,
        move: Move,
        request: RayJobRequest,
        runner: RayJobRunner,
        event: dict[str, Any] | None,
    ) -> RayJobState | None:
        """What the step learns before its move: the RayJob's state (None: no RayJob)."""
        if step is Step.LAUNCH:
            return None if move is Move.RUN_ON_HEAD else self._launch(context, request, runner)
        if step is Step.ADMITTED:
            return self._admitted(request, runner, event)
        self._timeout_event(context, request, event)
        state = state_from_event(event)
        if step is Step.STARTED:
            with self._guarded(context, request):
                runner.submit_if_waiting(request, state)
        return state

    def _launch(self, context: Context, request: RayJobRequest, runner: RayJobRunner) -> RayJobState:
        with self._guarded(context, request):
            launch = runner.launch(request)  # its status line says when and why the job runs anew
            self._work = request
            self._remember(context, request)
            push_extra(
                self, context, XCOM_RAYJOB, {"namespace": request.resolved_namespace, "name": request.rayjob_name}
            )
            self._push_dashboard_url(context, runner.dashboard_url_of(request), DashboardTarget.of_request(request))
            runner.on_started = lambda s: self._push_dashboard_url(
                context, runner.dashboard_url(s), DashboardTarget.of_rayjob(s)
            )
            return launch.state

    def _make(
        self,
        context: Context,
        step: Step,
        move: Move,
        request: RayJobRequest,
        runner: RayJobRunner,
        state: RayJobState | None,
        event: dict[str, Any] | None,
    ) -> Any:
        if move is Move.RUN_ON_HEAD:
            with self._guarded(context, request):
                self._work = request
                self._push_dashboard_url(context, "", DashboardTarget.of_request(request))
                return self._finish(context, request, runner, runner.run_on_cluster(request, self.wait_timeout))
        if move is Move.LEAVE_TO_SENSOR:
            with self._guarded(context, request):  # after our submission the event's state is stale: read anew
                return self._leave_to_sensor(context, request, runner, state if step is Step.LAUNCH else None)
        if move is Move.SUBMIT_THEN_LEAVE_TO_SENSOR:
            with self._guarded(context, request):
                return self._leave_to_sensor(context, request, runner, runner.start(request, self.wait_timeout))
        if move is Move.FOLLOW:
            with self._guarded(context, request):
                outcome = self._cleaning_up_on_failure(
                    context, runner, request, lambda: runner.follow(request, self.wait_timeout)
                )
            return self._finish(context, request, runner, outcome)
        if move is Move.CONCLUDE and state is not None:
            return self._conclude(context, request, runner, state, event)
        self._defer_until(context, move, request, runner, state)

    def _admitted(self, request: RayJobRequest, runner: RayJobRunner, event: dict[str, Any] | None) -> RayJobState:
        if (event or {}).get("status") == "timeout":
            runner.withdraw(request.resolved_namespace, request.rayjob_name, "not admitted by Kueue in time")
            raise AirflowException(
                f"RayJob {request.resolved_namespace}/{request.rayjob_name} was not admitted by Kueue "
                f"(LocalQueue {request.kueue_queue!r}) within {request.admission_timeout or self.wait_timeout} s; it was deleted"
            )
        state = state_from_event(event)
        if not state.is_terminal:
            self.log.info(
                "RayJob %s/%s admitted by Kueue LocalQueue %r after %s s in the queue",
                state.namespace,
                state.name,
                request.kueue_queue,
                (event or {}).get("waited_seconds", "?"),
            )
        return state

    def _defer_until(
        self, context: Context, move: Move, request: RayJobRequest, runner: RayJobRunner, state: RayJobState | None
    ) -> NoReturn:
        resumes_at = move.resumes_at
        if resumes_at is None:
            raise AssertionError(f"{move} is not a deferral")
        target, timeout = runner.first_wait_target(request), self.wait_timeout
        if move is Move.DEFER_UNTIL_ADMITTED:
            self.log.info(
                "RayJob %s/%s is queued for admission on Kueue LocalQueue %r; waiting in the triggerer%s",
                request.resolved_namespace,
                request.rayjob_name,
                request.kueue_queue,
                f" (at most {request.admission_timeout} s)" if request.admission_timeout else "",
            )
            target, timeout = WaitTarget.ADMITTED, request.admission_timeout or self.wait_timeout
        elif move is Move.DEFER_UNTIL_ENDED:
            if state is not None:
                self._push_dashboard_url(context, runner.dashboard_url(state), DashboardTarget.of_rayjob(state))
            target = WaitTarget.TERMINAL
        self.defer(
            trigger=RayJobTrigger(
                name=request.rayjob_name,
                namespace=request.resolved_namespace,
                kuberay_conn_id=self.kuberay_conn_id,
                wait_for=target.value,
                timeout=timeout,
                delete_on_kill=self.delete_on_kill,
                stream_logs=self.stream_logs and target is WaitTarget.TERMINAL,
                log_tail_lines=self.log_tail_lines,
            ),
            method_name=resumes_at.value,
        )

    def _conclude(
        self,
        context: Context,
        request: RayJobRequest,
        runner: RayJobRunner,
        state: RayJobState,
        event: dict[str, Any] | None,
    ) -> Any:
        streamed = ReceivedLog.from_payload((event or {}).get("log"))
        if streamed is not None and streamed.received:
            self.log.info(
                "The Ray job's log was streamed by the triggerer (%d characters): see its section of this log",
                streamed.received,
            )
        elif self.stream_logs:
            runner.replay_log(state)  # the trigger streamed nothing (the job had already ended): show it now
        with self._guarded(context, request):
            outcome = self._cleaning_up_on_failure(context, runner, request, lambda: runner.conclude(state, streamed))
        return self._finish(context, request, runner, outcome)
