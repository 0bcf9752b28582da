"""operators.rayjob_steps: the RayJobOperator's steps, and the one table of what follows each."""

from __future__ import annotations

import pytest

from kuberay_provider.airflow.operators.rayjob_steps import Choices, Move, Step, next_move
from kuberay_provider.core.job_request import RunMode


def choices(
    mode: RunMode = RunMode.OWN_CLUSTER, *, deferrable: bool = False, wait: bool = True, queued: bool = False
) -> Choices:
    return Choices(mode, deferrable=deferrable, wait_for_completion=wait, queued=queued)


@pytest.mark.parametrize(
    "step, given, move",
    [
        (Step.LAUNCH, choices(), Move.FOLLOW),
        (Step.LAUNCH, choices(RunMode.SELECTED_HEAD), Move.RUN_ON_HEAD),
        (Step.LAUNCH, choices(RunMode.BARE_HEAD), Move.RUN_ON_HEAD),
        (Step.LAUNCH, choices(wait=False), Move.LEAVE_TO_SENSOR),
        (Step.LAUNCH, choices(RunMode.CLUSTER_SELECTOR, wait=False, deferrable=True), Move.LEAVE_TO_SENSOR),
        # SDK mode: the task submits the job itself, so it waits until then even without waiting for the end.
        (Step.LAUNCH, choices(RunMode.INTERACTIVE, wait=False), Move.SUBMIT_THEN_LEAVE_TO_SENSOR),
        (Step.LAUNCH, choices(RunMode.INTERACTIVE, wait=False, deferrable=True), Move.DEFER_UNTIL_STARTED),
        (Step.LAUNCH, choices(deferrable=True), Move.DEFER_UNTIL_STARTED),
        (Step.LAUNCH, choices(deferrable=True, queued=True), Move.DEFER_UNTIL_ADMITTED),
        (Step.LAUNCH, choices(queued=True), Move.FOLLOW),  # in the worker, the follow waits for admission itself
        (Step.ADMITTED, choices(deferrable=True, queued=True), Move.DEFER_UNTIL_STARTED),
        (Step.STARTED, choices(deferrable=True), Move.DEFER_UNTIL_ENDED),
        (Step.STARTED, choices(RunMode.INTERACTIVE, deferrable=True, wait=False), Move.LEAVE_TO_SENSOR),
        (Step.ENDED, choices(deferrable=True), Move.CONCLUDE),
    ],
)
def test_what_follows_each_step(step: Step, given: Choices, move: Move):
    assert next_move(step, given) is move


def test_each_deferral_resumes_in_the_method_of_its_step():
    assert {move: move.resumes_at for move in Move if move.resumes_at is not None} == {
        Move.DEFER_UNTIL_ADMITTED: Step.ADMITTED,
        Move.DEFER_UNTIL_STARTED: Step.STARTED,
        Move.DEFER_UNTIL_ENDED: Step.ENDED,
    }
    assert [step.value for step in Step] == [
        "execute",
        "execute_after_admission",
        "execute_after_start",
        "execute_complete",
    ]
