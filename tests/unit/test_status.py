from __future__ import annotations

from kuberay_provider.core.status import JobDeploymentStatus, JobStatus, RayJobState


def _obj(**status):
    return {"metadata": {"name": "j", "namespace": "ns", "resourceVersion": "7"}, "status": status}


def test_terminal_sets_follow_kuberay():
    assert {s for s in JobStatus if s.is_terminal} == {JobStatus.STOPPED, JobStatus.SUCCEEDED, JobStatus.FAILED}
    assert {s for s in JobDeploymentStatus if s.is_terminal} == {
        JobDeploymentStatus.COMPLETE,
        JobDeploymentStatus.FAILED,
    }


def test_state_from_object_reads_kuberay_fields():
    state = RayJobState.from_object(
        _obj(
            jobStatus="FAILED",
            jobDeploymentStatus="Failed",
            reason="AppFailed",
            message="boom",
            jobId="j-x",
            rayClusterName="j-abcde",
            failed=2,
        )
    )
    assert state.job_status is JobStatus.FAILED and state.deployment_status is JobDeploymentStatus.FAILED
    assert state.is_terminal and not state.succeeded_job
    assert state.failed == 2 and state.cluster_name == "j-abcde" and state.resource_version == "7"
    assert "reason=AppFailed" in state.failure_summary() and "boom" in state.failure_summary()


def test_new_object_without_status():
    state = RayJobState.from_object({"metadata": {"name": "j"}})
    assert state.deployment_status is JobDeploymentStatus.NEW and not state.is_terminal
    assert "deployment=New" in state.describe()


def test_validation_failed_ends_the_wait_and_unknown_values_survive():
    assert RayJobState.from_object(_obj(jobDeploymentStatus="ValidationFailed")).is_terminal
    state = RayJobState.from_object(_obj(jobDeploymentStatus="SomethingNew"))
    assert state.deployment_status == "SomethingNew" and not state.is_terminal


def test_complete_but_not_succeeded_is_explained():
    state = RayJobState.from_object(_obj(jobStatus="STOPPED", jobDeploymentStatus="Complete"))
    assert state.is_terminal and not state.succeeded_job
    assert "without succeeding" in state.failure_summary()


def test_waiting_and_suspended():
    assert RayJobState.from_object(_obj(jobDeploymentStatus="Waiting")).is_waiting_for_submission
    assert RayJobState.from_object(_obj(jobDeploymentStatus="Suspended")).is_suspended
