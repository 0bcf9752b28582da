"""Dynamic task mapping end to end: real Airflow (dag.test()) on the local control plane and the session's
real Ray. Spec keywords in partial() / expand() / expand_kwargs(), one RayJob or RayCluster per map index,
and only the manifest read as a template file (strings ending in .yaml / .yml / .json stay strings)."""

from __future__ import annotations

from tests.airflow_env import configure_airflow_env

configure_airflow_env()

import datetime as dt
import importlib.util
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.airflow_env import PROJECT_DAGS_FOLDER
from tests.e2e.conftest import Kubectl
from tests.support.airflow_runs import load_dag, task_instance
from tests.support.cluster_under_test import JOBS_NAMESPACE

pytestmark = pytest.mark.ray

CONFIG_MAP = "kuberay-e2e-mapped-train"  # as tests/e2e/airflow_dags/rayjob_mapping.py mounts it
TRAIN_PY = """\
import argparse, os, pathlib
parser = argparse.ArgumentParser()
parser.add_argument("--shard", type=int, required=True)
parser.add_argument("--config", required=True)
args = parser.parse_args()
config = pathlib.Path(args.config).read_text().strip()
print(f"MAPPED-E2E shard {args.shard} read {pathlib.Path(args.config).name}: {config}; extra {os.environ['EXTRA_CONFIG']}", flush=True)
"""


def day(month: int, date: int) -> dt.datetime:
    return dt.datetime(2026, month, date, tzinfo=dt.UTC)


def of_index(kube: Any, kind: Any, dag_id: str, task_id: str, run_id: str, map_index: int) -> list[dict[str, Any]]:
    """The objects one map index of a task created, found by the identity label the operators set."""
    from kuberay_provider.core.job_request import RunIdentity
    from kuberay_provider.core.naming import LABEL_RUN_KEY

    key = RunIdentity(dag_id, task_id, run_id, map_index).key
    return kube.list(kind, JOBS_NAMESPACE, label_selector=f"{LABEL_RUN_KEY}={key}")


def outcome(run: Any, task_id: str, map_index: int) -> Any:
    return task_instance(run, task_id).xcom_pull(task_ids=task_id, map_indexes=map_index)


@pytest.fixture
def train_files(kubectl: Kubectl) -> Iterator[None]:
    """The ConfigMap the mapped RayJobs mount: the script whole, its config by subPath."""
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CONFIG_MAP, "namespace": JOBS_NAMESPACE},
        "data": {"train.py": TRAIN_PY, "train.yaml": "epochs: 3\n"},
    }
    kubectl.ok("apply", "-f", "-", stdin=json.dumps(config_map))
    yield
    kubectl.run("delete", "configmap", CONFIG_MAP, "-n", JOBS_NAMESPACE)


def test_mapped_rayjobs_and_rayclusters_get_one_object_per_index_and_keep_file_like_strings(
    airflow: Path, kube: Any, train_files: None, capfd: pytest.CaptureFixture[str]
) -> None:
    from kuberay_provider.core.resources import RAYCLUSTER, RAYJOB

    dag_id = "kuberay_e2e_mapped"
    run = load_dag(dag_id).test(logical_date=day(3, 14))
    out = capfd.readouterr().out
    assert run.state == "success", out[-3000:]
    for shard in (0, 1):  # the entrypoint ran as written, reading the file mounted by subPath
        assert f"[ray] MAPPED-E2E shard {shard} read train.yaml: epochs: 3; extra conf/extra.yml" in out

    rayjobs = []
    for index in (0, 1):
        [rayjob] = of_index(kube, RAYJOB, dag_id, "train", run.run_id, index)
        rayjobs.append(rayjob)
        spec, annotations = rayjob["spec"], rayjob["metadata"]["annotations"]
        assert spec["entrypoint"].endswith(f"--shard {index} --config /home/ray/conf/train.yaml")
        assert "EXTRA_CONFIG: conf/extra.yml" in spec["runtimeEnvYAML"]
        mounts = spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["volumeMounts"]
        assert mounts[1]["subPath"] == "train.yaml"
        # The rayjob= file, read and rendered for this index.
        assert annotations["kuberay-e2e/day"] == "2026-03-14" and annotations["kuberay-e2e/map-index"] == str(index)
        assert annotations["kuberay-e2e/config"] == "conf/2026-03-14.yaml"
        assert outcome(run, "train", index)["rayjob_name"] == rayjob["metadata"]["name"]
    assert rayjobs[0]["metadata"]["name"] != rayjobs[1]["metadata"]["name"]
    # expand_kwargs: keywords given to one index only.
    assert "activeDeadlineSeconds" not in rayjobs[0]["spec"] and "metadata" not in rayjobs[0]["spec"]
    assert rayjobs[1]["spec"]["activeDeadlineSeconds"] == 600 and rayjobs[1]["spec"]["metadata"] == {
        "config": "shard-1.json"
    }

    try:
        for index in (0, 1):
            [cluster] = of_index(kube, RAYCLUSTER, dag_id, "clusters", run.run_id, index)
            assert outcome(run, "clusters", index)["name"] == cluster["metadata"]["name"]
            assert len(cluster["spec"].get("workerGroupSpecs") or []) == index  # expand(worker_group_specs=...)
            assert cluster["spec"]["headServiceAnnotations"] == {"kuberay-e2e/config": "serve.yaml"}
            assert cluster["metadata"]["labels"]["config"] == "cluster.json"
    finally:
        for index in (0, 1):
            for cluster in of_index(kube, RAYCLUSTER, dag_id, "clusters", run.run_id, index):
                kube.delete(RAYCLUSTER, JOBS_NAMESPACE, cluster["metadata"]["name"])


def test_strings_ending_in_yaml_yml_json_are_not_read_as_files_and_the_manifest_file_still_is(
    airflow: Path, kube: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    from kuberay_provider.core.resources import RAYJOB

    dag_id = "kuberay_e2e_config_strings"
    run = load_dag(dag_id).test(logical_date=day(3, 16))
    out = capfd.readouterr().out
    assert run.state == "success", out[-3000:]  # before: TemplateNotFound for the entrypoint
    assert "[ray] CONFIG-STRINGS --day 2026-03-16 --config conf/train.yaml" in out
    [rayjob] = of_index(kube, RAYJOB, dag_id, "train", run.run_id, -1)
    spec, metadata = rayjob["spec"], rayjob["metadata"]
    assert spec["entrypoint"].endswith("--day 2026-03-16 --config conf/train.yaml")
    assert "EXTRA_CONFIG: conf/extra.yml" in spec["runtimeEnvYAML"] and metadata["labels"]["config"] == "train.json"
    assert (
        spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]["subPath"]
        == "app.yaml"
    )
    assert metadata["annotations"]["kuberay-e2e/day"] == "2026-03-16"  # from the rayjob= file, rendered
    assert metadata["annotations"]["kuberay-e2e/config"] == "conf/2026-03-16.yaml"


@pytest.fixture
def small_partitions(tmp_path: Path) -> Iterator[tuple[Path, dict[str, int]]]:
    """The example's data root (through the Variable it reads) holding the day's three partitions, small
    and of different sizes, so each map index is seen scoring its own."""
    spec = importlib.util.spec_from_file_location(
        "example_job", PROJECT_DAGS_FOLDER / "ray_jobs" / "batch_inference.py"
    )
    assert spec is not None and spec.loader is not None
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    rows = {"emea": 40, "amer": 50, "apac": 60}
    for region, count in rows.items():
        job.make_input_partition(
            tmp_path / "batch_inference_mapped" / f"region={region}" / "input" / "date=2026-03-15",
            "2026-03-15",
            rows=count,
        )
    os.environ["AIRFLOW_VAR_KUBERAY_EXAMPLE_DATA_ROOT"] = str(tmp_path)
    yield tmp_path, rows
    os.environ.pop("AIRFLOW_VAR_KUBERAY_EXAMPLE_DATA_ROOT", None)


@pytest.mark.local_only("an example job that reads and writes this machine's disk (the local Ray runs it here)")
def test_the_mapped_batch_inference_example_scores_each_partition_then_summarizes(
    airflow: Path, kube: Any, small_partitions: tuple[Path, dict[str, int]], capfd: pytest.CaptureFixture[str]
) -> None:
    from kuberay_provider.core.resources import RAYJOB

    data_root, rows = small_partitions
    dag_id = "batch_inference_mapped"
    run = load_dag(dag_id, PROJECT_DAGS_FOLDER).test(logical_date=day(3, 15))
    out = capfd.readouterr().out
    assert run.state == "success", out[-3000:]
    assert out.count("Created RayJob") == 3

    summary = task_instance(run, "summarize").xcom_pull(task_ids="summarize")
    assert summary["date"] == "2026-03-15" and summary["rows"] == sum(rows.values())
    assert list(summary["partitions"]) == list(rows)  # map-index order
    for index, (region, count) in enumerate(rows.items()):
        assert summary["partitions"][region]["rows"] == count
        assert f"[ray] scored {count} rows for 2026-03-15" in out
        [rayjob] = of_index(kube, RAYJOB, dag_id, "score", run.run_id, index)
        assert summary["partitions"][region]["rayjob"] == rayjob["metadata"]["name"]
        assert (
            f"--date 2026-03-15 --data-root {data_root}/batch_inference_mapped/region={region}"
            in rayjob["spec"]["entrypoint"]
        )
        assert (
            data_root / "batch_inference_mapped" / f"region={region}" / "output" / "date=2026-03-15" / "_SUMMARY.json"
        ).exists()
    assert "scored 150 rows for 2026-03-15 in 3 partitions" in out
