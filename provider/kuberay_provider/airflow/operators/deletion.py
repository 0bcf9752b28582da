"""Deleting one KubeRay object by name and waiting until it is gone, in the worker or the triggerer: the
shared body of ``RayClusterDeleteOperator`` and ``RayServiceDeleteOperator``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from airflow.sdk import BaseOperator, Context, conf

from kuberay_provider.airflow.hooks import DEFAULT_CONN_ID, KubeRayHook
from kuberay_provider.airflow.operators.common import as_airflow_errors
from kuberay_provider.airflow.params import SecondsFields, check_seconds
from kuberay_provider.airflow.triggers import (
    RayObjectDeletedTrigger,
    deleted_from_event,
)


class DeletingLifecycle(Protocol):
    def delete(self, namespace: str, name: str, *, wait: bool = True, timeout: float | None = ...) -> bool: ...


class RayObjectDeleteOperator(SecondsFields, BaseOperator):
    """Delete the ``kind`` object ``name`` and, with ``wait``, wait until it is gone (deferred with
    ``deferrable``). Gone already is not an error. Subclasses name the kind and its lifecycle."""

    kind: str = ""
    template_fields: Sequence[str] = ("name", "namespace", "kuberay_conn_id", "timeout")
    seconds_fields = ("timeout",)
    ui_color = "#ffebee"

    def __init__(
        self,
        *,
        name: str,
        namespace: str | None = None,
        kuberay_conn_id: str = DEFAULT_CONN_ID,
        wait: bool = True,
        timeout: float | str | None = 300,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.name, self.namespace, self.kuberay_conn_id = name, namespace, kuberay_conn_id
        self.wait, self.timeout, self.deferrable = wait, timeout, deferrable
        check_seconds({"timeout": timeout})

    def lifecycle(self, hook: KubeRayHook) -> DeletingLifecycle:
        """The core lifecycle that deletes a ``kind``."""
        raise NotImplementedError

    def execute(self, context: Context) -> bool:
        hook = KubeRayHook(kuberay_conn_id=self.kuberay_conn_id)
        namespace = self.namespace or hook.get_namespace() or "default"
        defer = self.wait and self.deferrable
        with as_airflow_errors():
            deleted = self.lifecycle(hook).delete(
                namespace, self.name, wait=self.wait and not defer, timeout=self.rendered_seconds("timeout")
            )
        if deleted and defer:
            self.log.info(
                "%s %s/%s is being deleted; waiting in the triggerer until it is gone", self.kind, namespace, self.name
            )
            self.defer(
                trigger=RayObjectDeletedTrigger(
                    self.kind, self.name, namespace, self.kuberay_conn_id, self.rendered_seconds("timeout")
                ),
                method_name="execute_complete",
            )
        self.log.info("%s %s/%s %s", self.kind, namespace, self.name, "deleted" if deleted else "was already gone")
        return deleted

    def execute_complete(self, context: Context, event: dict[str, Any]) -> bool:
        """Deferred: the object is gone (True), or the wait failed."""
        return deleted_from_event(event, self.kind)
