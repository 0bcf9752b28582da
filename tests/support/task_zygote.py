"""Forks task tries of one DAG, as Airflow's supervisor forks its task process, so a test can SIGKILL them.

``python -m tests.support.task_zygote <dag_file> <dag_id>`` imports Airflow and the provider and loads the
DAG once, then reads one JSON command per line on stdin: ``{"task_id", "run_id", "try_number", "log"}``.
For each it forks a child that runs that try as run_task_try.py does (its output in ``log``) and answers ``{"pid": N}`` at once, then ``{"pid": N, "exit": code}`` when the child
ends (``-9`` when killed). Forking after the imports makes a try start in milliseconds instead of seconds.
"""

from __future__ import annotations

from tests.airflow_env import configure_airflow_env

configure_airflow_env()

import json
import os
import sys
import traceback
from typing import Any

from tests.support.run_task_try import execute_try


def run_try(dag: Any, command: dict[str, Any]) -> int:
    """In the forked child: one try's execute(), its output into the command's log file."""
    descriptor = os.open(command["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(descriptor, 1)
    os.dup2(descriptor, 2)
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = sys.stdout
    try:
        execute_try(dag, command["task_id"], command["run_id"], int(command["try_number"]))
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


def main(dag_file: str, dag_id: str) -> None:
    import kubernetes.client  # noqa: F401
    from airflow.dag_processing.dagbag import DagBag

    import kuberay_provider.core.lifecycle  # noqa: F401 - imported once here, not in every child

    dag = DagBag(dag_folder=dag_file).dags.get(dag_id)  # not get_dag(): that falls back to the DB
    print(json.dumps({"ready": dag is not None}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = run_try(dag, command)
            finally:
                sys.stdout.flush()
                os._exit(code)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"pid": pid, "exit": os.waitstatus_to_exitcode(status)}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
