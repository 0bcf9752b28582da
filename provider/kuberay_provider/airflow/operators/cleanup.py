"""RayJobCleanupOperator: delete the RayJobs one DAG run's RayJobOperators created (kept apart from
``operators.rayjob`` for size; importable from there as before)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context

from kuberay_provider.airflow.hooks import DEFAULT_CONN_ID, KubeRayHook
from kuberay_provider.airflow.operators.common import connection_instance


class RayJobCleanupOperator(BaseOperator):
    """Delete every RayJob this DAG run's RayJobOperators created (found by their dag_id and run_id
    labels, and the connection's ``instance_id``: never another deployment's), and so their clusters; only
    those of ``task_ids`` when given.

    Meant as the run's last task, with ``trigger_rule="all_done"``, or as a teardown
    (``cleanup.as_teardown(setups=...)``), so failed runs are cleaned up too. Returns (XCom) the names of
    the RayJobs deleted.

    :param task_ids: only the RayJobs of these tasks (all their map indexes); default: every task's.
    :param namespace: default: the connection's, else ``default``.
    :param kuberay_conn_id: a ``kuberay`` connection.
    """

    template_fields: Sequence[str] = ("task_ids", "namespace")
    ui_color = "#e3f2fd"

    def __init__(
        self,
        *,
        task_ids: Sequence[str] | None = None,
        namespace: str | None = None,
        kuberay_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.task_ids = list(task_ids) if task_ids is not None else None
        self.namespace = namespace
        self.kuberay_conn_id = kuberay_conn_id

    def execute(self, context: Context) -> list[str]:
        ti = context["ti"]
        hook = KubeRayHook(kuberay_conn_id=self.kuberay_conn_id)
        namespace = self.namespace or hook.get_namespace() or "default"
        # Only this deployment's RayJobs: those carrying the connection's instance id (none: those without one).
        deleted = hook.lifecycle(validate_schema=False).delete_run(
            namespace, ti.dag_id, ti.run_id, self.task_ids, instance=connection_instance(hook)
        )
        self.log.info(
            "Deleted %d RayJob(s) of run %s in %s: %s", len(deleted), ti.run_id, namespace, ", ".join(deleted) or "-"
        )
        return deleted
