"""``@task.kuberay`` as Airflow sees it: registered through the provider info, built into a task whose
request ships the function through the SDK, refusing what cannot work, and, deferred, reading its result
from the job's log rather than from the trigger's event (which carries a few KB of the log, no result)."""

from __future__ import annotations

from tests.airflow_env import configure_airflow_env

configure_airflow_env()

import base64
import datetime as dt
import json
import pickle
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk import DAG, task

from kuberay_provider.airflow import get_provider_info
from kuberay_provider.airflow.decorators.kuberay import KubeRayDecoratedOperator
from kuberay_provider.airflow.operators.rayjob import run_identity
from kuberay_provider.core.function_keys import SECRET_ENV, TryKey
from kuberay_provider.core.function_runs import DEFAULT_FUNCTION_CLEANUP
from kuberay_provider.core.functions import FunctionCall, shipped
from kuberay_provider.core.job_request import RunIdentity
from kuberay_provider.core.spec import simple_cluster_spec
from kuberay_provider.core.status import RayJobState, state_to_payload
from tests.support.airflow_fakes import FakeTaskInstance

CLUSTER = simple_cluster_spec(image="rayproject/ray:2.60.0-py311")


def test_the_decorator_is_registered_through_the_provider_info() -> None:
    [decorator] = get_provider_info()["task-decorators"]
    assert decorator == {"name": "kuberay", "class-name": "kuberay_provider.airflow.decorators.kuberay.kuberay_task"}
    assert callable(task.kuberay)


def test_a_decorated_function_becomes_a_rayjob_task_that_ships_it() -> None:
    with DAG("deco", schedule=None, start_date=dt.datetime(2026, 1, 1)) as dag:

        @task.kuberay(ray_cluster_spec=CLUSTER, runtime_env={"env_vars": {"A": "1"}}, result_path="/tmp/r.pkl")
        def double(value: int) -> int:
            return 2 * value

        double(21)
    operator = dag.get_task("double")
    assert isinstance(operator, KubeRayDecoratedOperator) and operator.submit_via == "sdk"
    assert {"op_args", "op_kwargs", "result_path", "queue_name"} <= set(operator.template_fields)
    with shipped(
        FunctionCall(operator.python_callable, (21,)), TryKey.derive(RunIdentity("deco", "double", "r"), 1, b"s" * 16)
    ) as shipment:
        request = operator.build_request({"ti": FakeTaskInstance(dag_id="deco", task_id="double")}, shipment)
        submission = request.submission()
    assert submission.entrypoint == shipment.entrypoint and submission.runtime_env["py_modules"] == [shipment.folder]
    assert submission.runtime_env["env_vars"] == {"A": "1"}
    # The cluster is held for the result (a retry of a dead worker reads it), then cleaned up as by default.
    assert request.cleanup == "delete_cluster_after:3600" and request.cleanup_after_read == DEFAULT_FUNCTION_CLEANUP
    assert request.manifest()["spec"]["submissionMode"] == "InteractiveMode"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"entrypoint": "python x.py"}, "takes no entrypoint"),
        ({"submit_via": "kuberay"}, "submit_via must be 'sdk'"),
        ({"result_format": "yaml"}, "result_format must be one of 'pickle', 'json'"),
        ({"result_hold_seconds": -1}, "result_hold_seconds must be whole seconds"),
    ],
)
def test_what_cannot_ship_a_function_is_refused_at_parse_time(kwargs: dict, message: str) -> None:
    with DAG("deco_bad", schedule=None, start_date=dt.datetime(2026, 1, 1)), pytest.raises(ValueError, match=message):

        @task.kuberay(ray_cluster_spec=CLUSTER, **kwargs)
        def noop() -> None:
            return None

        noop()


# --- deferred: the result comes from the job's log, the event carries a few KB -----------------------


class Planted:
    """Unpickling this runs ``open(path, "w")``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


class JobsStandIn:
    def __init__(self, log: str, metadata: dict[str, str], entrypoint: str) -> None:
        self.log, self.details = log, SimpleNamespace(metadata=metadata, entrypoint=entrypoint)
        self.client = self

    def info(self, job_id: str) -> Any:
        from kuberay_provider.core.ray_jobs import RayJobInfo
        from kuberay_provider.core.status import JobStatus

        return RayJobInfo(job_id, JobStatus.SUCCEEDED)

    def get_job_info(self, job_id: str) -> SimpleNamespace:
        return self.details

    def logs(self, job_id: str) -> str:
        return self.log


def test_a_deferred_task_reads_its_result_from_the_jobs_log_not_from_the_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, "unit-test-secret-of-the-workers-0123456789")
    with DAG("deco", schedule=None, start_date=dt.datetime(2026, 1, 1)) as dag:

        @task.kuberay(ray_cluster_spec=CLUSTER, namespace="ns", deferrable=True)
        def double(value: int) -> int:
            return 2 * value

        double(21)
    operator = dag.get_task("double")
    ti = FakeTaskInstance(dag_id="deco", task_id="double")
    with shipped(
        FunctionCall(operator.python_callable, (21,)), TryKey.derive(run_identity({"ti": ti}), ti.try_number)
    ) as shipment:
        done = subprocess.run(
            [sys.executable, "-m", shipment.package],
            cwd=Path(shipment.folder).parent,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        jobs = JobsStandIn("the job's log\n" + done.stdout, dict(shipment.metadata), shipment.entrypoint)
    rayjob = {
        "metadata": {"name": "deco-double", "namespace": "ns"},
        "status": {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED", "jobId": "deco-double-sdk"},
    }
    lifecycle = SimpleNamespace(kube=SimpleNamespace(get=lambda *args: rayjob), rayjob_jobs_client=lambda state: jobs)
    operator.__dict__["hook"] = SimpleNamespace(lifecycle=lambda **kwargs: lifecycle)
    planted = tmp_path / "planted"
    forged = "KUBERAY-FUNCTION:result:" + base64.b64encode(pickle.dumps(Planted(str(planted)))).decode()
    event = {
        "status": "success",
        "state": state_to_payload(RayJobState.from_object(rayjob)),
        "message": "done",
        "log": {"received": 100, "last_lines": f"a line\n{forged}"},
    }  # what an old trigger's event could carry
    assert operator.execute_complete({"ti": ti}, event) == 42
    assert not planted.exists() and ti.pushed["rayjob_outcome"]["job_id"] == "deco-double-sdk"


def test_the_trigger_event_carries_a_few_kb_of_the_log_and_no_result(monkeypatch: pytest.MonkeyPatch) -> None:
    from kuberay_provider.airflow import triggers
    from kuberay_provider.airflow.triggers import EVENT_LOG_TAIL_BYTES, RayJobTrigger
    from kuberay_provider.core.kube.watch import WatchEvent
    from tests.unit.test_airflow_trigger import first_event, rayjob, use_events

    marker = "KUBERAY-FUNCTION:result:" + "a" * 64 + ":" + "QUFB" * 175_000  # a result of ~500 KB, as a line of ~700 KB

    class LongLog:
        def find(self, job_id: str) -> Any:
            from kuberay_provider.core.ray_jobs import RayJobInfo
            from kuberay_provider.core.status import JobStatus

            return RayJobInfo(job_id, JobStatus.RUNNING)

        async def tail(self, job_id: str, start: int = 0) -> Any:
            # Like RayJobsClient.tail: a resumed stream skips the ``start`` characters already delivered.
            text = "".join(f"progress {index} " + "x" * 200 + "\n" for index in range(40)) + marker + "\n"
            if text[start:]:
                yield text[start:]

    use_events(
        monkeypatch,
        [
            WatchEvent("ADDED", rayjob("Running", "RUNNING", "j-1")),
            WatchEvent("MODIFIED", rayjob("Complete", "SUCCEEDED", "j-1")),
        ],
    )
    monkeypatch.setattr(triggers, "_jobs_client_finder", lambda conn_id: lambda state: LongLog())
    payload = first_event(RayJobTrigger("j", "ns", stream_logs=True, log_tail_lines=50))
    carried = payload["log"]["last_lines"]
    assert len(json.dumps(payload).encode()) < EVENT_LOG_TAIL_BYTES + 2048
    assert "KUBERAY-FUNCTION" not in carried and carried.endswith(
        f"<the function's result: {len(marker)} characters, read back by the task>"
    )
    assert carried.splitlines()[-2].startswith("progress 39 ") and payload["log"]["received"] > len(marker)
    assert len(triggers.event_log_tail("é" * 5000, str, 100).encode()) <= 100  # one long line is cut, whole characters
