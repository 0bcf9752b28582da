"""RayCluster tasks: create (and wait until ready), scale a worker group, delete.

The per-DAG-run cluster pattern uses Airflow's setup / teardown, so the cluster is deleted even when
the work between fails::

    create = RayClusterCreateOperator(task_id="create_cluster", spec=simple_cluster_spec(image=...))
    job = RayJobOperator(task_id="job", cluster_selector=create.output["name"], entrypoint="python job.py")
    delete = RayClusterDeleteOperator(task_id="delete_cluster", name=create.output["name"])
    create >> job >> delete.as_teardown(setups=create)

The cluster's name derives from (dag_id, task_id, run_id) of the create task unless given, so a retried
create re-attaches to the cluster its first try made. So does a cleared one (a cluster is infrastructure,
not an outcome to run again), unless the spec it renders now differs from the cluster's: then the cluster
is replaced (``core.clusters.RayClusterLifecycle.create_or_attach``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from airflow.sdk import BaseOperator, Context, conf

from kuberay_provider.airflow.hooks import DEFAULT_CONN_ID, KubeRayHook
from kuberay_provider.airflow.links import RayDashboardLink, push_dashboard_link
from kuberay_provider.airflow.operators.common import (
    ManifestTemplatedOperator,
    as_airflow_errors,
    given_spec_keywords,
    run_identity,
)
from kuberay_provider.airflow.operators.deletion import DeletingLifecycle, RayObjectDeleteOperator
from kuberay_provider.airflow.params import SecondsFields, check_seconds, push_extra
from kuberay_provider.airflow.triggers import RayClusterTrigger, object_state_from_event
from kuberay_provider.core.clusters import RayClusterRequest
from kuberay_provider.core.dashboard_links import DashboardTarget
from kuberay_provider.core.spec import RAYCLUSTER_SPEC_FIELDS

RAYCLUSTER_KEYWORDS = frozenset(RAYCLUSTER_SPEC_FIELDS)


class RayClusterCreateOperator(SecondsFields, ManifestTemplatedOperator):
    """Create a RayCluster (or re-attach to the one a previous try made, if its spec is the same) and wait
    until it is ready.

    Every RayCluster spec field is a keyword in snake_case (``RAYCLUSTER_KEYWORDS``), overriding ``spec``
    and the base manifest field by field: ``head_group_spec``, ``worker_group_specs``, ``ray_version``,
    ``enable_in_tree_autoscaling``, ``autoscaler_options`` and the rest. All are templated, and
    ``partial()`` / ``expand()`` / ``expand_kwargs()`` take them like any parameter (give each map index
    its own ``name``, or let it derive one per index).

    :param raycluster: a base RayCluster: a dict, or a YAML/JSON file path rendered as a Jinja template
        (the only string read as a file).
    :param spec: a whole RayCluster spec as a dict, e.g. ``core.spec.simple_cluster_spec(image=...)``.
    :param name: the cluster's name; default derived from the run (what makes retries re-attach).
    :param namespace: default: the base manifest's, else the connection's, else ``default``.
    :param kuberay_conn_id: a ``kuberay`` connection (templated).
    :param wait_until_ready: wait for ``status.state == ready`` and the head Pod ready (False: return once
        the cluster exists).
    :param ready_timeout: seconds to wait for readiness (None: the task's own timeouts apply); templated.
    :param delete_on_failure: delete the cluster if it does not become ready (timeout, deleted).
    :param delete_on_kill: delete the cluster when the task is killed (a user's action, ``execution_timeout``;
        deferred: on Airflow >= 3.3), if this try created it. One an earlier try made and this one
        re-attached to is kept: jobs of the run may be on it, and its teardown deletes it.
    :param queue_name: a Kueue LocalQueue: the cluster is labelled ``kueue.x-k8s.io/queue-name`` and
        created suspended; the task reports that it is queued until Kueue admits it. Kueue's limits
        (no in-tree autoscaling, at most 7 worker groups) are checked before creation.
    :param admission_timeout: seconds it may stay queued on Kueue before the task fails (and, with
        ``delete_on_failure``, the cluster is deleted). None: only ``ready_timeout`` applies.
    :param volcano_queue: a Volcano Queue: sets ``ray.io/scheduler-name: volcano`` and
        ``volcano.sh/queue-name``.
    :param deferrable: wait in the triggerer (``RayClusterTrigger``) instead of a worker slot.
    :param validate_schema: also check the manifest against the CRD schema read from the cluster.

    Returns (XCom ``return_value``) namespace, name, state, head_pod_ready, ready_workers,
    desired_workers, head_service, created; ``name`` and ``namespace`` are also XComs of their own, so
    downstream tasks take ``create.output["name"]`` (none of them with ``do_xcom_push=False``: then give
    ``name=`` and use it downstream).
    """

    template_fields: Sequence[str] = (
        "raycluster",
        "spec",
        "spec_params",
        "name",
        "namespace",
        "labels",
        "annotations",
        "queue_name",
        "volcano_queue",
        "kuberay_conn_id",
        "ready_timeout",
    )
    seconds_fields = ("ready_timeout",)
    manifest_field = "raycluster"
    template_fields_renderers: ClassVar[dict[str, str]] = {"raycluster": "yaml", "spec": "json", "spec_params": "json"}
    operator_extra_links = (RayDashboardLink(),)
    ui_color = "#e8f5e9"

    def __init__(
        self,
        *,
        raycluster: Mapping[str, Any] | str | None = None,
        spec: Mapping[str, Any] | None = None,
        name: str | None = None,
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        kuberay_conn_id: str = DEFAULT_CONN_ID,
        wait_until_ready: bool = True,
        ready_timeout: float | str | None = 600,
        delete_on_failure: bool = True,
        delete_on_kill: bool = True,
        validate_schema: bool = True,
        queue_name: str | None = None,
        admission_timeout: float | None = None,
        volcano_queue: str | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        # RayCluster spec fields (RAYCLUSTER_KEYWORDS): declared one by one, since Airflow maps only declared names.
        auth_options: Mapping[str, Any] | None = None,
        autoscaler_options: Mapping[str, Any] | None = None,
        enable_in_tree_autoscaling: bool | None = None,
        gcs_fault_tolerance_options: Mapping[str, Any] | None = None,
        head_group_spec: Mapping[str, Any] | None = None,
        head_service_annotations: Mapping[str, str] | None = None,
        history_server_options: Mapping[str, Any] | None = None,
        managed_by: str | None = None,
        network_policy: Mapping[str, Any] | None = None,
        ray_version: str | None = None,
        suspend: bool | None = None,
        tls_options: Mapping[str, Any] | None = None,
        upgrade_strategy: Mapping[str, Any] | None = None,
        worker_group_specs: Sequence[Mapping[str, Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        spec_params = given_spec_keywords(RAYCLUSTER_KEYWORDS, locals())
        super().__init__(**kwargs)
        self.raycluster, self.spec, self.spec_params = raycluster, spec, spec_params
        self.name, self.namespace = name, namespace
        self.labels, self.annotations = dict(labels or {}), dict(annotations or {})
        self.kuberay_conn_id = kuberay_conn_id
        self.wait_until_ready, self.ready_timeout = wait_until_ready, ready_timeout
        self.delete_on_failure, self.delete_on_kill, self.validate_schema = (
            delete_on_failure,
            delete_on_kill,
            validate_schema,
        )
        self.queue_name, self.admission_timeout, self.volcano_queue = queue_name, admission_timeout, volcano_queue
        self.deferrable = deferrable
        self._created: tuple[str, str] | None = (
            None  # (namespace, name) of the cluster this try created: what on_kill deletes
        )
        check_seconds({"ready_timeout": ready_timeout})

    def execute(self, context: Context) -> dict[str, Any]:
        hook = KubeRayHook(kuberay_conn_id=self.kuberay_conn_id)
        with as_airflow_errors():
            request = RayClusterRequest(
                run_identity(context, hook.instance_id),
                raycluster=self.raycluster,
                spec=self.spec,
                spec_params=self.spec_params,
                name=self.name,
                namespace=self.namespace,
                labels=self.labels,
                annotations=self.annotations,
                queue_name=self.queue_name or None,
                volcano_queue=self.volcano_queue or None,
            )
            if not self.namespace and not request.manifest_namespace:
                request = dataclasses.replace(request, namespace=hook.get_namespace() or "default")
            manifest = request.manifest()
            namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
            clusters = hook.cluster_lifecycle(validate_schema=self.validate_schema)
            clusters.validate(manifest)
            _, created = clusters.create_or_attach(manifest)
            push_dashboard_link(context, hook, DashboardTarget(namespace, cluster=name))
            self._created = (namespace, name) if created else None
            state = clusters.state(namespace, name)
            if self.wait_until_ready and self.deferrable:
                self._defer_wait(
                    namespace, name, "admitted" if self.admission_timeout is not None else "ready", created
                )
            if self.wait_until_ready:
                try:
                    state = clusters.wait_ready(
                        namespace,
                        name,
                        timeout=self.rendered_seconds("ready_timeout"),
                        admission_timeout=self.admission_timeout,
                        on_change=lambda s: self.log.info("%s", s.describe()),
                    )
                except Exception:
                    if self.delete_on_failure:
                        self.log.info("RayCluster %s/%s did not become ready: deleting it", namespace, name)
                        clusters.delete(namespace, name, wait=False)
                    raise
        return self._result(context, namespace, name, state.to_dict() if state else None, created)

    def _defer_wait(self, namespace: str, name: str, target: str, created: bool) -> None:
        timeout = self.admission_timeout if target == "admitted" else self.rendered_seconds("ready_timeout")
        # Whether this try created the cluster travels with the trigger: its on_kill, and the return value.
        self.defer(
            trigger=RayClusterTrigger(
                name,
                namespace,
                self.kuberay_conn_id,
                timeout=timeout,
                wait_for=target,
                carry={"created": created},
                delete_on_kill=self.delete_on_kill and created,
            ),
            method_name="execute_after_admission" if target == "admitted" else "execute_complete",
        )

    def execute_after_admission(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Deferred: Kueue admitted the cluster; now wait until it is ready."""
        state = self._state_or_cleanup(event)
        self.log.info(
            "RayCluster %s/%s admitted by Kueue; waiting until it is ready", state["namespace"], state["name"]
        )
        self._defer_wait(state["namespace"], state["name"], "ready", _created_by_this_try(event))
        return {}  # unreachable: defer() raises TaskDeferred

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Deferred: the cluster is ready, or the wait failed (then, with delete_on_failure, it is deleted)."""
        state = self._state_or_cleanup(event)
        return self._result(context, state["namespace"], state["name"], state, _created_by_this_try(event))

    def _state_or_cleanup(self, event: dict[str, Any]) -> dict[str, Any]:
        namespace, name = (event or {}).get("namespace") or "default", (event or {}).get("name") or ""
        if (event or {}).get("status") != "success" and self.delete_on_failure and name:
            self.log.info("RayCluster %s/%s did not become ready: deleting it", namespace, name)
            KubeRayHook(kuberay_conn_id=self.kuberay_conn_id).cluster_lifecycle(validate_schema=False).delete(
                namespace, name, wait=False
            )
        return object_state_from_event(event, "the RayCluster")

    def _result(
        self, context: Context, namespace: str, name: str, state: dict[str, Any] | None, created: bool
    ) -> dict[str, Any]:
        # Own XComs for the two values downstream tasks template from: ``create.output["name"]``.
        push_extra(self, context, "name", name)
        push_extra(self, context, "namespace", namespace)
        return {**(state or {"namespace": namespace, "name": name}), "created": created}

    def on_kill(self) -> None:
        """The task was killed (by a user, or ``execution_timeout``) while creating or waiting: delete the
        cluster if this try created it; a re-attached one is left to the run's teardown."""
        if not self.delete_on_kill or self._created is None:
            return
        namespace, name = self._created
        self.log.info("Task killed: deleting RayCluster %s/%s, which this try created", namespace, name)
        KubeRayHook(kuberay_conn_id=self.kuberay_conn_id).cluster_lifecycle(validate_schema=False).delete(
            namespace, name, wait=False
        )


def _created_by_this_try(event: dict[str, Any] | None) -> bool:
    return bool(((event or {}).get("carry") or {}).get("created"))


class RayClusterScaleOperator(SecondsFields, BaseOperator):
    """Set a worker group's ``replicas`` and (by default) wait until the workers are ready.

    :param name: the RayCluster (templated; e.g. ``create.output["name"]``).
    :param group: the worker group's ``groupName``.
    :param replicas: the new count; refused outside the group's minReplicas..maxReplicas.
    :param wait: wait until ready workers == desired workers.
    :param timeout: seconds to wait (templated).
    :param deferrable: wait in the triggerer (``RayClusterTrigger``, ``wait_for="workers"``).
    """

    template_fields: Sequence[str] = ("name", "namespace", "group", "replicas", "kuberay_conn_id", "timeout")
    seconds_fields = ("timeout",)
    ui_color = "#e8f5e9"

    def __init__(
        self,
        *,
        name: str,
        group: str,
        replicas: int | str,
        namespace: str | None = None,
        kuberay_conn_id: str = DEFAULT_CONN_ID,
        wait: bool = True,
        timeout: float | str | None = 600,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.name, self.group, self.replicas, self.namespace = name, group, replicas, namespace
        self.kuberay_conn_id, self.wait, self.timeout, self.deferrable = kuberay_conn_id, wait, timeout, deferrable
        check_seconds({"timeout": timeout})

    def execute(self, context: Context) -> dict[str, Any]:
        hook = KubeRayHook(kuberay_conn_id=self.kuberay_conn_id)
        namespace = self.namespace or hook.get_namespace() or "default"
        clusters = hook.cluster_lifecycle(validate_schema=False)
        with as_airflow_errors():
            clusters.scale(namespace, self.name, self.group, int(self.replicas))
            if not self.wait:
                state = clusters.state(namespace, self.name)
                return state.to_dict() if state else {}
            if self.deferrable:
                self.defer(
                    trigger=RayClusterTrigger(
                        self.name,
                        namespace,
                        self.kuberay_conn_id,
                        timeout=self.rendered_seconds("timeout"),
                        wait_for="workers",
                    ),
                    method_name="execute_complete",
                )
            state = clusters.wait_workers(
                namespace,
                self.name,
                timeout=self.rendered_seconds("timeout"),
                on_change=lambda s: self.log.info("%s", s.describe()),
            )
        return state.to_dict() if state else {}

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Deferred: the workers are ready, or the wait failed."""
        return object_state_from_event(
            event, f"RayCluster {self.name} to reach {self.replicas} worker(s) in group {self.group}"
        )


class RayClusterDeleteOperator(RayObjectDeleteOperator):
    """Delete a RayCluster and wait until it is gone. Use it as a teardown (``.as_teardown(setups=...)``)
    so it runs however the work in between ended. A cluster already gone is not an error.

    :param name: the RayCluster (templated; e.g. ``create.output["name"]``).
    :param wait: wait until the cluster (and, foreground, its Pods) is gone.
    :param timeout: seconds to wait (templated).
    :param deferrable: wait in the triggerer (``RayObjectDeletedTrigger``).
    """

    kind = "RayCluster"

    def lifecycle(self, hook: KubeRayHook) -> DeletingLifecycle:
        return hook.cluster_lifecycle(validate_schema=False)
