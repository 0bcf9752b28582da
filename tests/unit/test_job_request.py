"""core.job_request and the small pieces the adapters share: RayJobRequest, ReceivedLog, state payloads."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kuberay_provider.core.job_request import RayJobRequest, RunIdentity, RunMode
from kuberay_provider.core.log_follower import ReceivedLog, tail_lines
from kuberay_provider.core.status import RayJobState, WaitTarget, state_from_payload, state_to_payload

IDENTITY = RunIdentity("dag", "task", "run-1")


def test_unknown_spec_keywords_are_refused():
    with pytest.raises(TypeError, match="entry_point"):
        RayJobRequest(IDENTITY, spec_params={"entry_point": "python x.py"})


def test_namespace_precedence():
    base = {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": "x", "namespace": "from-file"},
        "spec": {},
    }
    assert RayJobRequest(IDENTITY, rayjob=base).resolved_namespace == "from-file"
    assert RayJobRequest(IDENTITY, rayjob=base, namespace="explicit").resolved_namespace == "explicit"
    assert RayJobRequest(IDENTITY, spec_params={"entrypoint": "e"}).resolved_namespace == "default"


def test_explicit_name_is_kept_and_still_labelled_with_the_run():
    manifest = RayJobRequest(IDENTITY, name="nightly", spec_params={"entrypoint": "e"}).manifest()
    assert manifest["metadata"]["name"] == "nightly"
    assert manifest["metadata"]["labels"]["kuberay-provider.io/run-key"] == IDENTITY.key


def test_sdk_submission_reads_the_spec():
    request = RayJobRequest(
        IDENTITY,
        submit_via="sdk",
        spec_params={
            "entrypoint": "python x.py",
            "runtime_env": {"env_vars": {"A": "1"}},
            "entrypoint_resources": {"gpu_slot": 1},
            "entrypoint_num_cpus": 0.5,
        },
    )
    submission = request.submission()
    assert submission.submission_id == request.rayjob_name + "-sdk"
    assert submission.runtime_env == {"env_vars": {"A": "1"}}
    assert submission.entrypoint_resources == {"gpu_slot": 1} and submission.entrypoint_num_cpus == 0.5


def test_sdk_submission_needs_an_entrypoint():
    with pytest.raises(ValueError, match="entrypoint"):
        RayJobRequest(IDENTITY, submit_via="sdk", spec_params={"suspend": False}).submission()


def test_line_buffer_keeps_whole_lines_and_a_tail():
    buffer = ReceivedLog(keep=2)
    assert buffer.feed("a\nb") == ["a"]
    assert buffer.feed("c\nd\n") == ["bc", "d"]
    assert buffer.feed("e") == [] and buffer.flush() == ["e"]
    assert buffer.tail(5) == "d\ne"
    assert tail_lines("1\n2\n3\n", 2) == "2\n3"


def test_state_payload_is_json_and_round_trips():
    state = RayJobState.from_object(
        {
            "metadata": {"name": "j", "namespace": "n"},
            "status": {"jobDeploymentStatus": "Waiting", "jobStatus": "", "jobId": ""},
        }
    )
    payload = json.loads(json.dumps(state_to_payload(state)))
    assert state_from_payload(payload) == state
    assert WaitTarget.READY_FOR_SUBMISSION.reached(state) and not WaitTarget.STARTED.reached(state)


def test_kueue_with_interactive_mode_submission_is_refused_up_front():
    """KubeRay resumes a preempted InteractiveMode RayJob on a new cluster still tracking spec.jobId, a
    job submitted to the old cluster: the task would wait forever. Refused before anything is created."""
    with pytest.raises(ValueError, match="preempts the RayJob.*submit_via='kuberay'"):
        RayJobRequest(IDENTITY, spec_params={"entrypoint": "python x.py"}, queue_name="team-a", submit_via="sdk")
    with pytest.raises(ValueError, match="function is shipped through the SDK"):
        RayJobRequest(
            IDENTITY,
            spec_params={"entrypoint": "python -m fn"},
            queue_name="team-a",
            submit_via="sdk",
            ship_py_modules=("/tmp/fn",),
        )
    RayJobRequest(IDENTITY, spec_params={"entrypoint": "python x.py"}, queue_name="team-a")  # KubeRay submits: fine


def test_a_cleared_task_submits_straight_to_a_head_under_a_new_id_and_a_retry_keeps_its_series_id():
    def direct(first_try: int | None) -> RayJobRequest:
        return RayJobRequest(
            IDENTITY,
            submit_via="sdk",
            cluster_selector="shared",
            first_try_number=first_try,
            spec_params={"entrypoint": "python x.py"},
        )

    first_series, unknown = direct(1).submission_id, direct(None).submission_id
    assert first_series == unknown == f"{direct(1).rayjob_name}-sdk"  # unchanged for every run never cleared
    cleared = direct(3).submission_id  # Airflow's clear began a new series at try 3: no RayJob holds a consumed mark
    assert cleared != first_series and cleared == direct(3).submission_id  # its retries re-attach to it
    through_rayjob = RayJobRequest(
        IDENTITY, submit_via="sdk", first_try_number=3, spec_params={"entrypoint": "python x.py"}
    )
    assert through_rayjob.submission_id == f"{through_rayjob.rayjob_name}-sdk"  # a new RayJob gives a new cluster


@pytest.mark.parametrize(
    "arguments, mode",
    [
        ({}, RunMode.OWN_CLUSTER),
        ({"submit_via": "sdk"}, RunMode.INTERACTIVE),
        ({"cluster_selector": "shared"}, RunMode.CLUSTER_SELECTOR),
        ({"cluster_selector": {"ray.io/cluster": "shared"}, "submit_via": "sdk"}, RunMode.SELECTED_HEAD),
        ({"head_service": "head-svc"}, RunMode.BARE_HEAD),
        ({"volcano_job": "vj", "submit_via": "sdk"}, RunMode.BARE_HEAD),
        ({"cluster_selector": ""}, RunMode.OWN_CLUSTER),  # an empty selector selects nothing
    ],
)
def test_the_arguments_choose_one_run_mode(arguments: dict[str, Any], mode: RunMode):
    request = RayJobRequest(IDENTITY, spec_params={"entrypoint": "python x.py"}, **arguments)
    assert request.mode is mode
    # The questions the runners ask are views of the mode.
    assert request.runs_without_rayjob is (mode in (RunMode.SELECTED_HEAD, RunMode.BARE_HEAD))
    assert request.submits_itself is (mode not in (RunMode.OWN_CLUSTER, RunMode.CLUSTER_SELECTOR))
    assert request.on_bare_head is (mode is RunMode.BARE_HEAD)
    interactive = request.manifest()["spec"].get("submissionMode") == "InteractiveMode"
    assert interactive is (mode is RunMode.INTERACTIVE)
