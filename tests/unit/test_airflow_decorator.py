"""``@task.kuberay`` as Airflow sees it: registered through the provider info, built into a task whose
request ships the function through the SDK, and refusing what cannot work."""

from __future__ import annotations

from tests.airflow_env import configure_airflow_env

configure_airflow_env()

import datetime as dt  # noqa: E402

import pytest  # noqa: E402
from airflow.sdk import DAG, task  # noqa: E402

from kuberay_provider.airflow import get_provider_info  # noqa: E402
from kuberay_provider.airflow.decorators.kuberay import _KubeRayDecoratedOperator  # noqa: E402
from kuberay_provider.core.function_runs import DEFAULT_FUNCTION_CLEANUP  # noqa: E402
from kuberay_provider.core.functions import FunctionCall, shipped  # noqa: E402
from kuberay_provider.core.spec import simple_cluster_spec  # noqa: E402
from tests.support.airflow_fakes import FakeTaskInstance  # noqa: E402

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
    assert isinstance(operator, _KubeRayDecoratedOperator) and operator.submit_via == "sdk"
    assert {"op_args", "op_kwargs", "result_path", "queue_name"} <= set(operator.template_fields)
    with shipped(FunctionCall(operator.python_callable, (21,))) as shipment:
        operator._shipment = shipment
        request = operator.build_request({"ti": FakeTaskInstance(dag_id="deco", task_id="double")})
        submission = request.submission()
    assert submission.entrypoint == shipment.entrypoint and submission.runtime_env["py_modules"] == [shipment.folder]
    assert submission.runtime_env["env_vars"] == {"A": "1"}
    assert request.cleanup == DEFAULT_FUNCTION_CLEANUP
    assert request.manifest()["spec"]["submissionMode"] == "InteractiveMode"


@pytest.mark.parametrize("kwargs, message", [
    ({"entrypoint": "python x.py"}, "takes no entrypoint"),
    ({"submit_via": "kuberay"}, "submit_via must be 'sdk'"),
])
def test_what_cannot_ship_a_function_is_refused_at_parse_time(kwargs: dict, message: str) -> None:
    with DAG("deco_bad", schedule=None, start_date=dt.datetime(2026, 1, 1)), pytest.raises(ValueError, match=message):
        @task.kuberay(ray_cluster_spec=CLUSTER, **kwargs)
        def noop() -> None:
            return None

        noop()
