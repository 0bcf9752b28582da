"""RayJobSensor: wait for a RayJob (created by another task or another system) to finish or start.
RayServiceSensor: wait until a RayService serves its latest spec."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from functools import cached_property
from typing import Any

from airflow.sdk import BaseSensorOperator, Context, conf
from airflow.sdk.exceptions import AirflowException

from kuberay_provider.airflow.hooks import DEFAULT_CONN_ID, KubeRayHook
from kuberay_provider.airflow.triggers import RayJobTrigger, state_from_event
from kuberay_provider.core.status import WaitTarget
from kuberay_provider.core.resources import RAYJOB, RAYSERVICE
from kuberay_provider.core.status import RayJobState


class RayJobSensor(BaseSensorOperator):
    """Succeeds when the RayJob reaches ``wait_for``; fails when it ends without the Ray job succeeding.

    :param rayjob_name: the RayJob's name (templated; e.g. from a RayJobOperator's XCom).
    :param namespace: default: the connection's, else ``default``.
    :param wait_for: ``"terminal"`` (default: the job ended and must have succeeded) or ``"started"``.
    :param deferrable: wait in the triggerer with ``RayJobTrigger`` (a watch) instead of poking.
    """

    template_fields: Sequence[str] = ("rayjob_name", "namespace")

    def __init__(
        self,
        *,
        rayjob_name: str,
        namespace: str | None = None,
        kuberay_conn_id: str = DEFAULT_CONN_ID,
        wait_for: str = WaitTarget.TERMINAL.value,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.rayjob_name = rayjob_name
        self.namespace = namespace
        self.kuberay_conn_id = kuberay_conn_id
        self.wait_for = WaitTarget(wait_for).value
        self.deferrable = deferrable

    @cached_property
    def hook(self) -> KubeRayHook:
        return KubeRayHook(kuberay_conn_id=self.kuberay_conn_id)

    def _namespace(self) -> str:
        return self.namespace or self.hook.get_namespace() or "default"

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        self.defer(
            trigger=RayJobTrigger(
                name=self.rayjob_name, namespace=self._namespace(), kuberay_conn_id=self.kuberay_conn_id,
                wait_for=self.wait_for, timeout=float(self.timeout) if self.timeout else None,
            ),
            method_name="execute_complete",
            timeout=dt.timedelta(seconds=float(self.timeout)) if self.timeout else None,
        )

    def poke(self, context: Context) -> bool:
        manifest = self.hook.objects_client.find(RAYJOB, self._namespace(), self.rayjob_name)
        if manifest is None:
            self.log.info("RayJob %s/%s does not exist (yet)", self._namespace(), self.rayjob_name)
            return False
        state = RayJobState.from_object(manifest)
        self.log.info("%s", state.describe())
        return self._judge(state)

    def _judge(self, state: RayJobState) -> bool:
        if state.is_terminal and not state.succeeded_job:
            raise AirflowException(state.failure_summary())
        return WaitTarget(self.wait_for).reached(state)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> None:
        state = state_from_event(event, f"RayJob {self.rayjob_name}")
        self.log.info("%s", state.describe())
        if not self._judge(state):
            raise AirflowException(f"RayJob {self.rayjob_name} has not reached {self.wait_for}: {state.describe()}")


class RayServiceSensor(BaseSensorOperator):
    """Succeeds once the RayService serves its latest spec: KubeRay applied the current generation, the
    ``Ready`` condition is True, no upgrade is in progress and every application is RUNNING. Fails when
    an application failed to deploy.

    :param rayservice_name: the RayService's name (templated).
    :param namespace: default: the connection's, else ``default``.
    """

    template_fields: Sequence[str] = ("rayservice_name", "namespace")

    def __init__(self, *, rayservice_name: str, namespace: str | None = None, kuberay_conn_id: str = DEFAULT_CONN_ID,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rayservice_name, self.namespace, self.kuberay_conn_id = rayservice_name, namespace, kuberay_conn_id

    def poke(self, context: Context) -> bool:
        from kuberay_provider.core.services import RayServiceState

        hook = KubeRayHook(kuberay_conn_id=self.kuberay_conn_id)
        namespace = self.namespace or hook.get_namespace() or "default"
        manifest = hook.objects_client.find(RAYSERVICE, namespace, self.rayservice_name)
        if manifest is None:
            self.log.info("RayService %s/%s does not exist (yet)", namespace, self.rayservice_name)
            return False
        state = RayServiceState.from_object(manifest)
        self.log.info("%s", state.describe())
        if state.caught_up and state.failed_applications:
            raise AirflowException(f"RayService {namespace}/{self.rayservice_name}: applications failed: {state.failed_applications}")
        if state.is_ready:
            context["ti"].xcom_push(key="serve_endpoint", value=state.serve_endpoint)
        return state.is_ready
