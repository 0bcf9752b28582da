"""Every file in dags/ imports cleanly into Airflow's DagBag, as the scheduler would parse it."""

from __future__ import annotations

from tests.airflow_env import PROJECT_DAGS_FOLDER, configure_airflow_env

configure_airflow_env()

from airflow.dag_processing.dagbag import DagBag

from kuberay_provider.airflow.operators import RayJobOperator, RayServiceOperator

EXAMPLE_DAGS = {
    "batch_inference",
    "batch_inference_backfill",
    "batch_inference_mapped",
    "shared_cluster_jobs",
    "cluster_per_run",
    "rayservice_deploy",
    "kueue_queued_jobs",
    "volcano_ray_head",
    "taskflow_functions",
}


def test_every_example_dag_imports_without_errors():
    bag = DagBag(dag_folder=str(PROJECT_DAGS_FOLDER))
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == EXAMPLE_DAGS
    for dag_id in EXAMPLE_DAGS:
        dag = bag.dags[dag_id]
        assert "example" in dag.tags and dag.schedule is not None, dag_id  # meant to be scheduled
        # A mapped task is a MappedOperator of its operator_class.
        assert any(
            issubclass(getattr(task, "operator_class", type(task)), (RayJobOperator, RayServiceOperator))
            for task in dag.tasks
        ), dag_id


def test_backfill_dag_leaves_nothing_behind_by_construction():
    score = DagBag(dag_folder=str(PROJECT_DAGS_FOLDER)).dags["batch_inference_backfill"].get_task("score")
    assert score.cleanup == "delete_cluster" and score.delete_on_success is True


def test_the_cluster_per_run_dag_always_tears_its_cluster_down():
    dag = DagBag(dag_folder=str(PROJECT_DAGS_FOLDER)).dags["cluster_per_run"]
    create, delete = dag.get_task("create_cluster"), dag.get_task("delete_cluster")
    assert create.is_setup and delete.is_teardown and create.task_id in delete.upstream_task_ids
    assert all(task.task_id in delete.get_flat_relative_ids(upstream=True) for task in dag.tasks if task is not delete)


def test_the_mapped_example_runs_one_rayjob_per_partition_then_reads_them_all():
    dag = DagBag(dag_folder=str(PROJECT_DAGS_FOLDER)).dags["batch_inference_mapped"]
    score, summarize = dag.get_task("score"), dag.get_task("summarize")
    assert score.operator_class is RayJobOperator and score.partial_kwargs["cleanup"] == "delete_cluster"
    assert len(score.expand_input.value["entrypoint"]) == 3 and "{{ ds }}" in score.expand_input.value["entrypoint"][0]
    assert summarize.upstream_task_ids == {"score"}
