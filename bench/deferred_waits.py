"""The Airflow side of the triggerer-scale benchmark: a run of the bench DAG whose mapped task ``wait`` has
N instances (map indexes 0..N-1), each deferred on a trigger as Airflow's Execution API writes a deferral,
and what the triggerer did with them, read from the database and its logs.

Expanding ``wait`` goes through Airflow's own ``TaskMap.expand_mapped_task`` once the upstream
``rayjobs`` is recorded done with N values, as the scheduler does after that task returns a list.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

DAG_ID = "bench_triggerer_scale"
MAPPED_TASK = "wait"
UPSTREAM_TASK = "rayjobs"


def bench_dag_run() -> tuple[Any, str, Any]:
    """A run of the bench DAG (bench/dags/bench_triggerer_scale.py), its tasks waiting to be deferred:
    the DAG, the run id and the run, the run in a session still open (the caller's ``with``)."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
    from airflow.models.dagrun import DagRun, get_or_create_dagrun
    from airflow.sdk import timezone
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    manager = DagBundlesManager()
    manager.sync_bundles_to_db()
    bundle = manager.get_bundle("bench")
    bag = BundleDagBag(dag_folder=bundle.path, bundle_path=bundle.path, bundle_name=bundle.name)
    sync_bag_to_db(bag, bundle.name, bundle.version)
    dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(bag.dags[DAG_ID]))
    now = timezone.utcnow()
    run_id = DagRun.generate_run_id(run_type=DagRunType.MANUAL, logical_date=None, run_after=now)

    def create(session: Any) -> Any:
        return get_or_create_dagrun(
            dag=dag,
            run_id=run_id,
            logical_date=None,
            data_interval=None,
            run_after=now,
            conf=None,
            triggered_by=DagRunTriggeredByType.TEST,
            triggering_user_name="bench",
            start_date=now,
            session=session,
        )

    return dag, run_id, create


def plain_run() -> str:
    """A run of the bench DAG whose plain ``wait_NNNN`` tasks bench/hostile_output.py defers. Returns its id."""
    from airflow.utils.session import create_session

    _, run_id, create = bench_dag_run()
    with create_session() as session:
        create(session)
    return run_id


def new_run(waits: int) -> str:
    """A run of the bench DAG, ``wait`` expanded into ``waits`` instances not yet deferred. Returns the run id."""
    from airflow.models.taskmap import TaskMap
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    dag, run_id, create = bench_dag_run()
    with create_session() as session:
        run = create(session)
        upstream = run.get_task_instance(UPSTREAM_TASK, session=session)
        if upstream is None:
            raise RuntimeError(f"the run has no {UPSTREAM_TASK!r} task instance; is bench/dags up to date?")
        upstream.state = TaskInstanceState.SUCCESS
        session.add(TaskMap(DAG_ID, UPSTREAM_TASK, run_id, map_index=-1, length=waits, keys=None))
        session.flush()
        expanded, _ = TaskMap.expand_mapped_task(dag.get_task(MAPPED_TASK), run_id, session=session)
        if len(expanded) != waits:
            raise RuntimeError(f"Airflow expanded {MAPPED_TASK!r} into {len(expanded)} instances, not {waits}")
    return run_id


def defer(run_id: str, triggers: Mapping[int, Any]) -> None:
    """Each ``wait`` instance of ``triggers`` (by map index) DEFERRED on its trigger, written as Airflow's
    Execution API writes a deferral (a trigger row, then the task instance pointing at it)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.trigger import Trigger
    from airflow.sdk import timezone
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    now = timezone.utcnow()
    with create_session() as session:
        query = select(TaskInstance).where(
            TaskInstance.dag_id == DAG_ID,
            TaskInstance.run_id == run_id,
            TaskInstance.task_id == MAPPED_TASK,
            TaskInstance.map_index.in_(list(triggers)),
        )
        by_index = {ti.map_index: ti for ti in session.scalars(query)}
        for index, trigger in triggers.items():
            row = Trigger.from_object(trigger)
            session.add(row)
            session.flush()
            ti = by_index[index]
            ti.try_number, ti.state, ti.trigger_id = 1, TaskInstanceState.DEFERRED, row.id
            ti.next_method, ti.next_kwargs, ti.start_date = "execute_complete", {}, now
        session.commit()


def count_where(query: Callable[[Any], Any]) -> int:
    from airflow.utils.session import create_session

    with create_session() as session:
        return int(session.scalar(query(session)) or 0)


def assigned_triggers() -> int:
    """Trigger rows a triggerer has taken."""
    from airflow.models.trigger import Trigger
    from sqlalchemy import func, select

    return count_where(lambda _: select(func.count()).select_from(Trigger).where(Trigger.triggerer_id.is_not(None)))


def _resumed(run_id: str, column: Any, *conditions: Any) -> set[Any]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    with create_session() as session:
        query = select(column).where(
            TaskInstance.dag_id == DAG_ID,
            TaskInstance.run_id == run_id,
            TaskInstance.state == TaskInstanceState.SCHEDULED,
            *conditions,
        )
        return set(session.scalars(query))


def resumed_indexes(run_id: str) -> set[int]:
    """Map indexes of the ``wait`` instances that left DEFERRED (the triggerer stored their event)."""
    from airflow.models.taskinstance import TaskInstance

    return _resumed(run_id, TaskInstance.map_index, TaskInstance.task_id == MAPPED_TASK)


def resumed_tasks(run_id: str) -> set[str]:
    """Task ids of the plain (unmapped) tasks that left DEFERRED; bench/hostile_output.py defers those."""
    from airflow.models.taskinstance import TaskInstance

    return _resumed(run_id, TaskInstance.task_id, TaskInstance.map_index == -1)


def fired_at(home: Path) -> dict[int, float]:
    """By map index, when its trigger fired, from the triggerer's per-task logs (INFO level only)."""
    import datetime as dt

    fired: dict[int, float] = {}
    pattern = f"logs/dag_id={DAG_ID}/*/task_id={MAPPED_TASK}/map_index=*/*.trigger.*.log"
    for path in home.glob(pattern):
        for line in path.read_text(errors="replace").splitlines():
            if '"Trigger fired event"' in line:
                stamp = json.loads(line)["timestamp"].replace("Z", "+00:00")
                index = int(path.parent.name.removeprefix("map_index="))
                fired[index] = dt.datetime.fromisoformat(stamp).timestamp()
    return fired
