"""Task start to RayJob created: ``python -m bench.task_start --tasks 50`` prints one JSON line.

From ``RayJobOperator.execute()`` being entered to the RayJob existing, for ``tasks`` tasks one after another
in one process (each a new operator, so a new hook, connection and API client, as a task's process has),
against a bare ``create`` of the same RayJob from the same process. The API server stamps
creationTimestamp to the second, too coarse here, so "created" is when the RayJob's ADDED event arrives
on a watch this process holds on the namespace (the same clock and the same delivery for both). The
operator runs with ``wait_for_completion=False`` on the API server alone (no controller): it returns once
the RayJob exists, and what it does after the create is not measured. Run in a process of its own: Airflow
reads its configuration once per process.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kuberay_provider.core.kube.sync_client import RayObjectsClient
from kuberay_provider.core.resources import RAYJOB
from kuberay_provider.core.spec import simple_cluster_spec
from kuberay_provider.local.plane import LocalControlPlane

PROJECT_ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = "bench-start"
ENTRYPOINT = "python -c 'print(1)'"


@dataclass
class TaskInstanceStub:
    """What RayJobOperator.execute() reads of Airflow's task instance, for a run outside a DAG."""

    run_id: str
    dag_id: str = "bench_task_start"
    task_id: str = "job"
    map_index: int = -1
    try_number: int = 1

    def xcom_push(self, key: str, value: object) -> None:
        pass


class ArrivalClock:
    """When each RayJob's ADDED event arrived on a watch of the namespace (perf_counter seconds)."""

    def __init__(self, plane: LocalControlPlane) -> None:
        self.arrived: dict[str, float] = {}
        self.condition = threading.Condition()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, args=(plane,), daemon=True)

    def _watch(self, plane: LocalControlPlane) -> None:
        with plane.api_client() as api_client:
            for event in RayObjectsClient(api_client).watch(RAYJOB, NAMESPACE, timeout_seconds=3600):
                if event.type == "ADDED":
                    with self.condition:
                        self.arrived.setdefault(event.object["metadata"]["name"], time.perf_counter())
                        self.condition.notify_all()
                if self.stop.is_set():
                    return

    def wait_for(self, name: str, timeout: float = 30) -> float:
        with self.condition:
            if not self.condition.wait_for(lambda: name in self.arrived, timeout):
                raise TimeoutError(f"RayJob {NAMESPACE}/{name} was not seen created within {timeout} s")
            return self.arrived[name]


def operator_starts(
    plane: LocalControlPlane, clock: ArrivalClock, tasks: int, server_dry_run: bool, run: str
) -> list[float]:
    from kuberay_provider.airflow.operators import RayJobOperator

    latencies = []
    for index in range(tasks):
        operator = RayJobOperator(
            task_id="job",
            namespace=NAMESPACE,
            entrypoint=ENTRYPOINT,
            ray_cluster_spec=simple_cluster_spec(image="rayproject/ray:2.60.0"),
            wait_for_completion=False,
            server_dry_run=server_dry_run,
        )
        run_id = f"start-{run}-{index}"  # a run of its own: a RayJob of its own
        started = time.perf_counter()
        outcome = operator.execute({"ti": TaskInstanceStub(run_id=run_id)})  # type: ignore[arg-type]  # a stub context
        latencies.append(clock.wait_for(outcome["rayjob_name"]) - started)
    return latencies


def bare_creates(plane: LocalControlPlane, clock: ArrivalClock, tasks: int) -> list[float]:
    from kuberay_provider.core.spec import rayjob

    latencies = []
    with plane.api_client() as api_client:
        kube = RayObjectsClient(api_client)
        for index in range(tasks):
            name = f"bare-{index}"
            manifest = rayjob(
                name,
                NAMESPACE,
                entrypoint=ENTRYPOINT,
                ray_cluster_spec=simple_cluster_spec(image="rayproject/ray:2.60.0"),
            )
            started = time.perf_counter()
            kube.create(manifest)
            latencies.append(clock.wait_for(name) - started)
    return latencies


def run(tasks: int) -> dict[str, Any]:
    from kubernetes import client

    from bench.benchmarks import crds_dir
    from kuberay_provider.airflow.devenv import configure_airflow_home, kuberay_connection_env

    # Airflow reads its configuration at first import: a throwaway home before the operator is imported.
    configure_airflow_home(Path(tempfile.mkdtemp(prefix="bench-airflow-")), {"bench": PROJECT_ROOT / "dags"})
    with LocalControlPlane(crds_dir=crds_dir(), controller=False) as plane:
        kuberay_connection_env(Path(plane.kubeconfig_path))
        with plane.api_client() as api_client:
            client.CoreV1Api(api_client).create_namespace({"metadata": {"name": NAMESPACE}})
        clock = ArrivalClock(plane)
        clock.thread.start()
        time.sleep(1)  # the watch is established
        # The first task of the process imports and loads what every later one reuses: reported apart.
        first = operator_starts(plane, clock, 1, server_dry_run=False, run="first")[0]
        ours = operator_starts(plane, clock, tasks, server_dry_run=False, run="plain")
        dry = operator_starts(plane, clock, tasks, server_dry_run=True, run="dry")
        bare = bare_creates(plane, clock, tasks)
        clock.stop.set()
    return {"first": first, "latencies": sorted(ours), "dry_run_latencies": sorted(dry), "bare_latencies": sorted(bare)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=50)
    args = parser.parse_args()
    print("RESULT " + json.dumps(run(args.tasks)))


if __name__ == "__main__":
    main()
