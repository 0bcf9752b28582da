"""Python functions as Ray jobs with ``@task.kuberay``: a DAG to copy and adapt.

``summarize`` is plain Python that uses Ray inside: it runs as a Ray job on a cluster of its own (a
RayJob the task submits to through the Ray Jobs SDK, deleted a minute after the job), and the dict it
returns is its XCom, which ``report`` reads like any other task's. Its arguments come rendered
(``"{{ ds }}"``) and from an upstream task (``sizes``). ``score_shard`` is mapped over the shards, one Ray
job each. Nothing here is an entrypoint string: the functions and their arguments are pickled with
Ray's cloudpickle and uploaded with the submission.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import dag, task

from kuberay_provider.core.spec import simple_cluster_spec

CLUSTER = simple_cluster_spec(image="rayproject/ray:2.60.0", ray_version="2.60.0", head_memory="1Gi")


@dag(
    schedule="@daily", start_date=dt.datetime(2026, 1, 1), catchup=False, tags=["ray", "kuberay", "taskflow", "example"]
)
def taskflow_functions() -> None:
    @task
    def shard_sizes() -> list[int]:
        return [3, 4, 5]

    @task.kuberay(ray_cluster_spec=CLUSTER, deferrable=True)
    def summarize(day: str, sizes: list[int]) -> dict:
        import ray

        @ray.remote
        def square(value: int) -> int:
            return value * value

        squares = ray.get([square.remote(size) for size in sizes])
        return {"day": day, "shards": len(sizes), "sum_of_squares": sum(squares)}

    @task
    def report(summary: dict) -> str:
        line = f"{summary['day']}: {summary['shards']} shards, sum of squares {summary['sum_of_squares']}"
        print(line)
        return line

    @task.kuberay(ray_cluster_spec=CLUSTER)
    def score_shard(size: int) -> int:
        import ray

        return sum(ray.get([ray.remote(lambda i: i + 1).remote(i) for i in range(size)]))

    sizes = shard_sizes()
    report(summarize("{{ ds }}", sizes))
    score_shard.expand(size=sizes)


taskflow_functions()
