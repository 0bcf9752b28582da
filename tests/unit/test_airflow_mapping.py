"""Dynamic task mapping over the spec keywords, and which templated strings are read as files.

The operators declare every spec keyword of core's tables in their ``__init__`` (what Airflow's
``partial()`` / ``expand()`` / ``expand_kwargs()`` check names against), and only the manifest field
(``rayjob``, ``raycluster``, ``rayservice``) may name a template file. Rendering goes through Airflow's own code: a mapped
task through ``MappedOperator.render_template_fields``, an unmapped one through ``render_template_fields``.
The same runs for real, end to end, in tests/e2e/test_airflow_mapping.py.
"""

from __future__ import annotations

from tests.airflow_env import configure_airflow_env

configure_airflow_env()

import datetime as dt
import inspect
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jinja2
import pytest
from airflow.sdk import DAG

from kuberay_provider.airflow.operators import RayClusterCreateOperator, RayJobOperator, RayServiceOperator
from kuberay_provider.core.clusters import RayClusterRequest
from kuberay_provider.core.job_request import RAYJOB_KEYWORDS, RunIdentity
from kuberay_provider.core.services import RAYSERVICE_KEYWORDS
from kuberay_provider.core.spec import RAYCLUSTER_SPEC_FIELDS
from tests.support.airflow_fakes import FakeTaskInstance

CLUSTER = {
    "headGroupSpec": {
        "rayStartParams": {},
        "template": {"spec": {"containers": [{"name": "head", "image": "rayproject/ray:2.60.0"}]}},
    }
}
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

# (operator, core's keyword table: the one list of names, the keywords the operator passes on as spec_params;
# RayJobOperator's cluster_selector is a parameter of its own, a name or a selector, and a way to run)
OPERATORS = [
    pytest.param(RayJobOperator, RAYJOB_KEYWORDS, RAYJOB_KEYWORDS - {"cluster_selector"}, id="RayJobOperator"),
    pytest.param(
        RayClusterCreateOperator,
        frozenset(RAYCLUSTER_SPEC_FIELDS),
        frozenset(RAYCLUSTER_SPEC_FIELDS),
        id="RayClusterCreateOperator",
    ),
    pytest.param(RayServiceOperator, RAYSERVICE_KEYWORDS, RAYSERVICE_KEYWORDS, id="RayServiceOperator"),
]


def init_parameters(operator: type) -> set[str]:
    """What Airflow validates partial()/expand() names against: the operator's own __init__ signature."""
    signature = inspect.signature(operator.__init__)
    return {name for name, p in signature.parameters.items() if name != "self" and p.kind is p.KEYWORD_ONLY}


@pytest.fixture
def dag() -> Iterator[DAG]:
    with DAG("mapping", schedule=None, start_date=START) as dag:
        yield dag


@pytest.mark.parametrize(("operator", "table", "passed_on"), OPERATORS)
def test_the_operator_signature_and_the_core_keyword_table_agree(
    operator: type, table: frozenset[str], passed_on: frozenset[str]
) -> None:
    parameters = init_parameters(operator)
    missing = sorted(table - parameters)
    assert not missing, (
        f"{operator.__name__}.__init__ lacks the spec keyword(s) {missing}: declare them (partial/expand map only declared names)"
    )
    assert passed_on <= table
    # A parameter that is neither in the table nor stored by the operator would be silently dropped.
    op = operator(task_id="probe", **({"entrypoint": "python x.py"} if operator is RayJobOperator else {}))
    dropped = sorted(name for name in parameters - table if not hasattr(op, name))
    assert not dropped, (
        f"{operator.__name__}.__init__ takes {dropped}, which no core keyword table lists and the operator ignores"
    )
    given = {keyword: f"<{keyword}>" for keyword in sorted(passed_on)}
    assert operator(task_id="every_keyword", **given).spec_params == given  # each keyword reaches the manifest


def test_the_issue_example_maps_one_entrypoint_per_index(dag: DAG) -> None:
    mapped = RayJobOperator.partial(task_id="score", ray_cluster_spec=CLUSTER, cleanup="delete_cluster").expand(
        entrypoint=["python score.py --part 0", "python score.py --part 1", "python score.py --part 2"]
    )
    manifests = [
        render_index(dag, mapped, index).build_request({"ti": FakeTaskInstance(map_index=index)}).manifest()
        for index in range(3)
    ]
    assert [m["spec"]["entrypoint"] for m in manifests] == [f"python score.py --part {i}" for i in range(3)]
    assert len({m["metadata"]["name"] for m in manifests}) == 3  # one RayJob per map index
    assert all(
        m["spec"]["rayClusterSpec"] == CLUSTER and m["spec"]["shutdownAfterJobFinishes"] is True for m in manifests
    )


@pytest.mark.parametrize(("operator", "table", "passed_on"), OPERATORS)
def test_partial_expand_and_expand_kwargs_take_every_spec_keyword(
    dag: DAG, operator: type, table: frozenset[str], passed_on: frozenset[str]
) -> None:
    keywords = sorted(passed_on)
    shared, mapped = keywords[::2], keywords[1::2]
    operator.partial(task_id="by_expand", **{k: f"<{k}>" for k in shared}).expand(
        **{k: [f"<{k}-0>", f"<{k}-1>"] for k in mapped}
    )
    operator.partial(task_id="by_expand_kwargs").expand_kwargs([{k: f"<{k}>" for k in keywords}])
    assert {"by_expand", "by_expand_kwargs"} <= set(dag.task_ids)


def render_index(dag: DAG, mapped: Any, index: int, **context: Any) -> Any:
    """What a worker does for one map index: Airflow unmaps the task and renders it; returns the operator."""
    ti = FakeTaskInstance(dag_id=dag.dag_id, task_id=mapped.task_id, map_index=index)
    full = {"ti": ti, "dag": dag, "dag_run": SimpleNamespace(conf={}), "ds": "2026-01-15", **context}
    mapped.render_template_fields(full)
    return full["task"]


# --- only the manifest is a file ---------------------------------------------------------------------

RAYJOB_TEMPLATE = """\
apiVersion: ray.io/v1
kind: RayJob
metadata:
  name: from-file
  annotations:
    kuberay.test/day: "{{ ds }}"
spec:
  rayClusterSpec:
    headGroupSpec:
      rayStartParams: {}
      template:
        spec:
          containers:
          - name: head
            image: rayproject/ray:2.60.0
            volumeMounts:
            - {name: conf, mountPath: /home/ray/conf/app.yaml, subPath: app.yaml}
          volumes:
          - {name: conf, configMap: {name: app-conf}}
"""
NOT_FILES = {
    "entrypoint": "python train.py --day {{ ds }} --config conf/train.yaml",
    "runtime_env": {"conda": "env.yml", "env_vars": {"SCHEMA": "schemas/{{ ds }}.json"}},
    "metadata": {"config": "conf/app.yaml"},
}


@pytest.fixture
def templated_dag(tmp_path: Path) -> Iterator[DAG]:
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "train.yaml").write_text(RAYJOB_TEMPLATE)
    with DAG("templated", schedule=None, start_date=START, template_searchpath=[str(tmp_path)]) as dag:
        yield dag


def rendered_spec(op: RayJobOperator, map_index: int = -1) -> dict[str, Any]:
    return op.build_request({"ti": FakeTaskInstance(map_index=map_index)}).manifest()["spec"]


def test_strings_ending_in_yaml_yml_json_render_as_strings_and_the_manifest_file_is_read(templated_dag: DAG) -> None:
    op = RayJobOperator(task_id="train", rayjob="jobs/train.yaml", labels={"config": "train.yaml"}, **NOT_FILES)
    op.render_template_fields({"ds": "2026-01-15", "ti": FakeTaskInstance()})
    spec = rendered_spec(op)
    assert spec["entrypoint"] == "python train.py --day 2026-01-15 --config conf/train.yaml"
    assert "conda: env.yml" in spec["runtimeEnvYAML"] and "schemas/2026-01-15.json" in spec["runtimeEnvYAML"]
    assert spec["metadata"] == {"config": "conf/app.yaml"} and op.labels == {"config": "train.yaml"}
    assert 'kuberay.test/day: "2026-01-15"' in op.rayjob  # the file, read and rendered
    head = spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert head["volumeMounts"][0]["subPath"] == "app.yaml"


def test_a_mapped_task_reads_the_manifest_file_and_keeps_other_strings(templated_dag: DAG) -> None:
    mapped = RayJobOperator.partial(
        task_id="train", rayjob="jobs/train.yaml", runtime_env=NOT_FILES["runtime_env"]
    ).expand(entrypoint=[f"python train.py --shard {i} --config conf/shard-{i}.yaml" for i in range(2)])
    for index in range(2):
        op = render_index(templated_dag, mapped, index)
        assert op.rayjob.startswith("apiVersion: ray.io/v1") and "2026-01-15" in op.rayjob
        assert (
            rendered_spec(op, index)["entrypoint"]
            == f"python train.py --shard {index} --config conf/shard-{index}.yaml"
        )


def test_the_raycluster_manifest_file_is_read_and_nested_strings_are_not(templated_dag: DAG, tmp_path: Path) -> None:
    (tmp_path / "cluster.yml").write_text(
        "apiVersion: ray.io/v1\nkind: RayCluster\nmetadata: {name: from-file, namespace: ml}\nspec: {rayVersion: '2.60.0'}\n"
    )
    head = {**CLUSTER["headGroupSpec"], "rayStartParams": {"config": "conf/head.yaml"}}
    mapped = RayClusterCreateOperator.partial(
        task_id="cluster",
        raycluster="cluster.yml",
        head_group_spec=head,
        head_service_annotations={"config": "serve.json"},
    ).expand(
        worker_group_specs=[
            [],
            [{"groupName": "workers", "replicas": 1, "rayStartParams": {}, "template": {"spec": {}}}],
        ]
    )
    for index in range(2):
        op = render_index(templated_dag, mapped, index)
        manifest = RayClusterRequest(
            RunIdentity("templated", "cluster", "manual__1", index),
            raycluster=op.raycluster,
            spec_params=op.spec_params,
        ).manifest()
        assert manifest["metadata"]["namespace"] == "ml" and manifest["spec"]["rayVersion"] == "2.60.0"
        assert manifest["spec"]["headGroupSpec"]["rayStartParams"] == {"config": "conf/head.yaml"}
        assert manifest["spec"]["headServiceAnnotations"] == {"config": "serve.json"}
        assert len(manifest["spec"]["workerGroupSpecs"]) == index


def test_a_missing_manifest_file_says_where_it_was_looked_for(templated_dag: DAG, tmp_path: Path) -> None:
    op = RayJobOperator(task_id="train", rayjob="jobs/nightly.yaml", entrypoint="python train.py")
    with pytest.raises(jinja2.TemplateNotFound, match="jobs/nightly.yaml") as missing:
        op.render_template_fields({"ds": "2026-01-15", "ti": FakeTaskInstance()})
    assert str(tmp_path) in missing.value.message and "relative to the DAG's folder" in missing.value.message


def test_the_dag_processor_reads_the_manifest_file_at_parse_and_nothing_else(templated_dag: DAG) -> None:
    """DagBag.bag_dag calls dag.resolve_template_files(): as with Airflow's template_ext, the manifest
    file's text replaces its path (so the UI shows it before a run); no other field is touched."""
    op = RayJobOperator(
        task_id="train", rayjob="jobs/train.yaml", entrypoint="python train.py --config conf/train.yaml"
    )
    templated_dag.resolve_template_files()
    assert op.rayjob == RAYJOB_TEMPLATE and op.spec_params["entrypoint"] == "python train.py --config conf/train.yaml"


def test_the_rayservice_manifest_file_is_read_and_a_mapped_serve_config_is_not(
    templated_dag: DAG, tmp_path: Path
) -> None:
    from kuberay_provider.core.services import rayservice_manifest

    (tmp_path / "service.json").write_text(
        '{"apiVersion": "ray.io/v1", "kind": "RayService", "metadata": {"name": "{{ ds }}-svc"}}'
    )
    configs = [
        {"applications": [{"name": "app", "import_path": "serve_app:app", "runtime_env": {"conda": f"env-{i}.yml"}}]}
        for i in range(2)
    ]
    mapped = RayServiceOperator.partial(task_id="deploy", rayservice="service.json", ray_cluster_config=CLUSTER).expand(
        serve_config=configs
    )
    for index in range(2):
        op = render_index(templated_dag, mapped, index)
        manifest = rayservice_manifest(op.name, op.namespace, rayservice=op.rayservice, **op.spec_params)
        assert manifest["metadata"]["name"] == "2026-01-15-svc"  # the file, read and rendered
        assert f"conda: env-{index}.yml" in manifest["spec"]["serveConfigV2"]
