"""RayService tasks: deploy (create or update, then wait until the new spec is served) and delete.

An update of ``serveConfigV2`` is redeployed in place by KubeRay; an update of ``rayClusterConfig``
is an upgrade (a new cluster comes up, then traffic moves): the task waits for it to finish, i.e. until
KubeRay has applied the new generation and its applications run (as read after the change:
``core.rayservice_state``), ``Ready`` is True and ``UpgradeInProgress`` False. A failed application, a
spec KubeRay refused or an initializing timeout fails the task at once, saying what to do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from airflow.sdk import Context, conf

from kuberay_provider.airflow.hooks import DEFAULT_CONN_ID, KubeRayHook
from kuberay_provider.airflow.links import RayDashboardLink, push_dashboard_link
from kuberay_provider.airflow.operators.common import ManifestTemplatedOperator, as_airflow_errors, given_spec_keywords
from kuberay_provider.airflow.operators.deletion import DeletingLifecycle, RayObjectDeleteOperator
from kuberay_provider.airflow.params import SecondsFields, check_seconds, push_extra
from kuberay_provider.airflow.triggers import RayServiceTrigger, object_state_from_event
from kuberay_provider.core.dashboard_links import DashboardTarget
from kuberay_provider.core.services import RAYSERVICE_KEYWORDS, rayservice_manifest


class RayServiceOperator(SecondsFields, ManifestTemplatedOperator):
    """Create or update a RayService and wait until it serves the new spec.

    Every RayService spec field is a keyword in snake_case (``core.services.RAYSERVICE_KEYWORDS``),
    overriding the base manifest's field: ``serve_config`` (the Serve config as a dict, written as
    ``serveConfigV2`` YAML), ``ray_cluster_config``, ``upgrade_strategy={"type": "NewCluster"}`` and the
    rest. All are templated, and ``partial()`` / ``expand()`` / ``expand_kwargs()`` take them like any
    parameter.

    :param rayservice: a base RayService: a dict, or a YAML/JSON file path rendered as a Jinja template
        (the only string read as a file).
    :param name: the RayService's name (default: the manifest's).
    :param namespace: default: the manifest's, else the connection's, else ``default``.
    :param kuberay_conn_id: a ``kuberay`` connection (templated).
    :param wait: wait until the new generation's applications run, Ready with no upgrade in progress
        (False: return once the spec is written; a ``RayServiceSensor`` can wait later).
    :param ready_timeout: seconds to wait (None: the task's own timeouts apply); templated.
    :param validate_schema: also check the manifest against the CRD schema read from the cluster.
    :param queue_name: a Kueue LocalQueue: labels the RayService ``kueue.x-k8s.io/queue-name``; it is
        created with ``rayClusterConfig.suspend: true`` for Kueue to admit, and an update keeps the
        suspend flag Kueue set. Kueue's limits are checked before anything is written.
    :param volcano_queue: a Volcano Queue (``ray.io/scheduler-name: volcano`` and ``volcano.sh/queue-name``).
    :param deferrable: wait in the triggerer (``RayServiceTrigger``) instead of a worker slot.

    Returns (XCom ``return_value``) namespace, name, ready, upgrading, active_cluster, pending_cluster,
    applications and pending_applications (name -> status), serve_service (``spec.serveService``'s name,
    else ``<name>-serve-svc``), serve_endpoint (its in-cluster URL on the head's ``serve`` port), and
    ``change``: created, updated or unchanged. ``serve_endpoint`` is also an XCom of its own (not with
    ``do_xcom_push=False``).
    """

    template_fields: Sequence[str] = (
        "rayservice",
        "name",
        "namespace",
        "spec_params",
        "labels",
        "annotations",
        "queue_name",
        "volcano_queue",
        "kuberay_conn_id",
        "ready_timeout",
    )
    seconds_fields = ("ready_timeout",)
    manifest_field = "rayservice"
    template_fields_renderers: ClassVar[dict[str, str]] = {"rayservice": "yaml", "spec_params": "json"}
    operator_extra_links = (RayDashboardLink(),)
    ui_color = "#fff3e0"

    def __init__(
        self,
        *,
        rayservice: Mapping[str, Any] | str | None = None,
        name: str | None = None,
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        kuberay_conn_id: str = DEFAULT_CONN_ID,
        wait: bool = True,
        ready_timeout: float | str | None = 900,
        validate_schema: bool = True,
        queue_name: str | None = None,
        volcano_queue: str | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        # RayService spec fields (RAYSERVICE_KEYWORDS): declared one by one, since Airflow maps only declared names.
        deployment_unhealthy_second_threshold: int | None = None,
        exclude_head_pod_from_serve_svc: bool | None = None,
        managed_by: str | None = None,
        ray_cluster_config: Mapping[str, Any] | None = None,
        ray_cluster_deletion_delay_seconds: int | None = None,
        serve_config: Mapping[str, Any] | None = None,
        serve_config_v2: str | None = None,
        serve_service: Mapping[str, Any] | None = None,
        service_unhealthy_second_threshold: int | None = None,
        suspend: bool | None = None,
        upgrade_strategy: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        spec_params = given_spec_keywords(RAYSERVICE_KEYWORDS, locals())
        super().__init__(**kwargs)
        self.rayservice, self.name, self.namespace, self.spec_params = rayservice, name, namespace, spec_params
        self.labels, self.annotations = dict(labels or {}), dict(annotations or {})
        self.kuberay_conn_id, self.wait, self.ready_timeout, self.validate_schema = (
            kuberay_conn_id,
            wait,
            ready_timeout,
            validate_schema,
        )
        self.queue_name, self.volcano_queue = queue_name, volcano_queue
        self.deferrable = deferrable
        check_seconds({"ready_timeout": ready_timeout})

    def execute(self, context: Context) -> dict[str, Any]:
        hook = KubeRayHook(kuberay_conn_id=self.kuberay_conn_id)
        with as_airflow_errors():
            base_namespace = _manifest_namespace(self.rayservice) if self.rayservice is not None else None
            manifest = rayservice_manifest(
                self.name,
                self.namespace or base_namespace or hook.get_namespace() or "default",
                rayservice=self.rayservice,
                labels=self.labels or None,
                annotations=self.annotations or None,
                queue_name=self.queue_name or None,
                volcano_queue=self.volcano_queue or None,
                **self.spec_params,
            )
            namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
            services = hook.service_lifecycle(validate_schema=self.validate_schema)
            services.validate(manifest)
            _, change = services.apply(manifest)
            self.log.info("RayService %s/%s %s", namespace, name, change)
            state = services.state(namespace, name)
            _push_link(context, hook, namespace, state.to_dict() if state else {})
            if self.wait and self.deferrable:
                self.defer(
                    trigger=RayServiceTrigger(
                        name,
                        namespace,
                        self.kuberay_conn_id,
                        timeout=self.rendered_seconds("ready_timeout"),
                        carry={"change": change},
                    ),
                    method_name="execute_complete",
                )
            if self.wait:
                state = services.wait_ready(
                    namespace,
                    name,
                    timeout=self.rendered_seconds("ready_timeout"),
                    on_change=lambda s: self.log.info("%s", s.describe()),
                )
        assert state is not None
        _push_link(context, hook, namespace, state.to_dict())
        push_extra(self, context, "serve_endpoint", state.serve_endpoint)
        return {**state.to_dict(), "change": change}

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Deferred: the RayService serves its latest spec (or the wait failed)."""
        state = object_state_from_event(event, "the RayService")
        _push_link(context, KubeRayHook(kuberay_conn_id=self.kuberay_conn_id), state["namespace"], state)
        push_extra(self, context, "serve_endpoint", state["serve_endpoint"])
        return {**state, "change": str(((event or {}).get("carry") or {}).get("change") or "")}


def _push_link(context: Context, hook: KubeRayHook, namespace: str, state: Mapping[str, Any]) -> None:
    """The link to the Serve page of the cluster serving the RayService (the new one while it upgrades)."""
    cluster = state.get("pending_cluster") or state.get("active_cluster") or ""
    push_dashboard_link(context, hook, DashboardTarget(namespace, cluster=cluster, page="serve"))


def _manifest_namespace(rayservice: Mapping[str, Any] | str) -> str | None:
    from kuberay_provider.core.manifests import load_manifest

    return (load_manifest(rayservice, kind="RayService").get("metadata") or {}).get("namespace") or None


class RayServiceDeleteOperator(RayObjectDeleteOperator):
    """Delete a RayService (its clusters and Services go with it) and wait until it is gone (KubeRay's
    finalizer holds it until its clusters are deleted). Gone already is not an error.

    :param wait: wait until it is gone; ``timeout``: for how many seconds (templated).
    :param deferrable: wait in the triggerer (``RayObjectDeletedTrigger``).
    """

    kind = "RayService"

    def lifecycle(self, hook: KubeRayHook) -> DeletingLifecycle:
        return hook.service_lifecycle(validate_schema=False)
