"""One try of a test DAG's task in its own process, as an Airflow worker would run it.

``python -m tests.support.run_task_try <dag_id> <task_id> <run_id> <try_number>``: loads the DAG from the
test DAG folder, calls the task's ``execute()`` with that run identity and try number, and prints the
outcome as one ``OUTCOME {...}`` line. The caller may SIGKILL the process mid-run, as a dead worker.
"""

from __future__ import annotations

from tests.airflow_env import configure_airflow_env

configure_airflow_env()

import json
import logging
import sys
from typing import Any

from tests.airflow_env import TEST_DAGS_FOLDER
from tests.support.airflow_fakes import FakeTaskInstance


def execute_try(dag: Any, task_id: str, run_id: str, try_number: int) -> None:
    """The try's ``execute()``, logging to stdout; its outcome as an ``OUTCOME {...}`` line."""
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s %(message)s", force=True)
    task = dag.get_task(task_id)
    # A run never cleared: Airflow's max_tries is the task's retries, so every try is of the first series.
    ti = FakeTaskInstance(
        dag_id=dag.dag_id, task_id=task_id, run_id=run_id, try_number=try_number, max_tries=task.retries
    )
    outcome = task.execute({"ti": ti})
    print("OUTCOME", json.dumps(outcome), flush=True)


def main(dag_id: str, task_id: str, run_id: str, try_number: int) -> None:
    from airflow.dag_processing.dagbag import DagBag

    execute_try(DagBag(dag_folder=str(TEST_DAGS_FOLDER)).get_dag(dag_id), task_id, run_id, try_number)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
