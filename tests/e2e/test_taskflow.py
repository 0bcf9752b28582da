"""``@task.kuberay`` and ``run_function_as_rayjob`` end to end on the local control plane and the session's
real Ray: a function's dict feeds a downstream task, ``ray.remote`` inside, arguments rendered and from an
upstream XCom, mapped over three inputs, an exception failing the task with its remote traceback, a JSON
result, and a forged result marker that the worker refuses without decoding it."""

from __future__ import annotations

from tests.airflow_env import configure_airflow_env

configure_airflow_env()

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from tests.airflow_env import PROJECT_DAGS_FOLDER
from tests.support.airflow_runs import load_dag, rayjobs_of, task_instance
from tests.support.cluster_under_test import JOBS_NAMESPACE, RAY_IMAGE

pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]


def test_a_functions_dict_feeds_a_downstream_task_and_mapped_functions_return_each_value(
    airflow: Path, kube: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    run = load_dag("taskflow_functions", PROJECT_DAGS_FOLDER).test(logical_date=dt.datetime(2026, 3, 14, tzinfo=dt.UTC))
    out = capfd.readouterr().out
    assert run.state == "success", out[-4000:]
    summary = task_instance(run, "summarize").xcom_pull(task_ids="summarize")
    assert summary == {"day": "2026-03-14", "shards": 3, "sum_of_squares": 50}
    assert task_instance(run, "report").xcom_pull(task_ids="report") == "2026-03-14: 3 shards, sum of squares 50"
    shards = sorted(
        (ti.map_index, ti.xcom_pull(task_ids="score_shard", map_indexes=ti.map_index))
        for ti in run.get_task_instances()
        if ti.task_id == "score_shard"
    )
    assert shards == [(0, 6), (1, 10), (2, 15)]
    [rayjob] = rayjobs_of(kube, "taskflow_functions", "summarize", run.run_id)
    assert rayjob["spec"]["submissionMode"] == "InteractiveMode" and rayjob["spec"]["entrypoint"].startswith(
        "python -m kuberay_fn_"
    )
    assert "KUBERAY-FUNCTION:result:" not in out and "<the function's result:" in out  # read back, not dumped


def test_an_exception_fails_the_task_with_the_remote_traceback(
    airflow: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    run = load_dag("kuberay_e2e_taskflow_failure").test()
    out = capfd.readouterr().out
    assert run.state == "failed"
    assert "the function raised ValueError in the Ray job: E2E-REMOTE-ERROR rows must not be negative, got -3" in out, (
        out[-4000:]
    )
    assert "--- remote traceback ---" in out and "in check_rows" in out


def test_a_json_result_comes_back_and_a_forged_marker_is_never_decoded(
    airflow: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    planted = tmp_path / "planted-by-the-job"
    run = load_dag("kuberay_e2e_taskflow_trust").test(
        logical_date=dt.datetime(2026, 3, 14, tzinfo=dt.UTC), run_conf={"planted": str(planted)}
    )
    out = capfd.readouterr().out
    as_json, forge = task_instance(run, "as_json"), task_instance(run, "forge")
    assert as_json.state == "success", out[-4000:]
    assert as_json.xcom_pull(task_ids="as_json") == {"day": "2026-03-14", "rows": [1, 2, 3], "ok": True}
    assert forge.state == "failed"
    assert "2 line(s) in the Ray job's log looked like a function marker but did not authenticate" in out, out[-4000:]
    assert not planted.exists() and "KUBERAY-FUNCTION:" not in out


def test_prefect_runs_a_function_as_a_rayjob_and_gets_its_result(
    prefect_api: None, least_privilege_kubeconfig: Path
) -> None:
    from prefect import flow
    from prefect_kubernetes.credentials import KubernetesClusterConfig, KubernetesCredentials

    from kuberay_provider.core.spec import simple_cluster_spec
    from kuberay_provider.prefect import RayJob, run_function_as_rayjob

    block = RayJob(
        credentials=KubernetesCredentials(cluster_config=KubernetesClusterConfig.from_file(least_privilege_kubeconfig)),
        namespace=JOBS_NAMESPACE,
        ray_cluster_spec=simple_cluster_spec(image=RAY_IMAGE, ray_version="2.60.0", head_memory="1Gi"),
    )

    def tally(words: list[str], *, weight: int) -> dict[str, int]:
        import ray

        counted = ray.get([ray.remote(lambda w: len(w)).remote(word) for word in words])
        return {word: count * weight for word, count in zip(words, counted, strict=False)}

    def refuse(reason: str) -> None:
        raise RuntimeError(f"E2E-PREFECT-REMOTE {reason}")

    @flow(name="functions-as-rayjobs")
    def functions() -> dict[str, int]:
        return run_function_as_rayjob(block, tally, ["ray", "prefect"], weight=2)

    assert functions() == {"ray": 6, "prefect": 14}

    @flow(name="function-raises")
    def raising() -> None:
        run_function_as_rayjob(block, refuse, "on purpose")

    from kuberay_provider.core.functions import RemoteFunctionError

    with pytest.raises(RemoteFunctionError, match="E2E-PREFECT-REMOTE on purpose") as raised:
        raising()
    assert "in refuse" in raised.value.remote_traceback
