"""RayJobSensor: wait for a RayJob (created by another task or another system) to finish or start.
RayServiceSensor: wait until a RayService serves its latest spec. Both poke, or defer to a trigger."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any

from airflow.sdk import BaseSensorOperator, Context, conf
from airflow.sdk.exceptions import AirflowException, AirflowSensorTimeout

from kuberay_provider.airflow.hooks import DEFAULT_CONN_ID, KubeRayHook
from kuberay_provider.airflow.params import push_extra
from kuberay_provider.airflow.triggers import (
    RayJobTrigger,
    RayServiceTrigger,
    object_state_from_event,
    state_from_event,
)
from kuberay_provider.core.kube.watch import WatchEvent
from kuberay_provider.core.rayservice_state import RayServiceState
from kuberay_provider.core.rayservice_wait import (
    SETTLE_SECONDS,
    RayServiceFailed,
    RayServiceGone,
    RayServiceTimeout,
    ServiceTracker,
    SyncWatcher,
    wait_service,
)
from kuberay_provider.core.resources import RAYJOB, RAYSERVICE
from kuberay_provider.core.status import RayJobState, WaitTarget


class RayJobSensor(BaseSensorOperator):
    """Succeeds when the RayJob reaches ``wait_for``; fails when it ends without the Ray job succeeding.

    :param rayjob_name: the RayJob's name (templated; e.g. from a RayJobOperator's XCom).
    :param namespace: default: the connection's, else ``default``.
    :param kuberay_conn_id: a ``kuberay`` connection (templated).
    :param wait_for: ``"terminal"`` (default: the job ended and must have succeeded) or ``"started"``.
    :param deferrable: wait in the triggerer with ``RayJobTrigger`` (a watch) instead of poking.
    """

    template_fields: Sequence[str] = ("rayjob_name", "namespace", "kuberay_conn_id")

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
                name=self.rayjob_name,
                namespace=self._namespace(),
                kuberay_conn_id=self.kuberay_conn_id,
                wait_for=self.wait_for,
                timeout=float(self.timeout) if self.timeout else None,
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
    ``Ready`` condition is True, no upgrade is in progress and every application is RUNNING. Pushes the
    XCom ``serve_endpoint``.

    It judges by the rule of the operator's wait and the trigger (``ServiceTracker`` in
    ``core.rayservice_wait``): the write that first shows a new generation still carries the applications'
    statuses read before the new serve config was applied (KubeRay reads them, PUTs the config, then bumps
    ``observedGeneration``), so statuses are trusted only from a later write, or once a poke at least
    ``settle_seconds`` (5 s, more than KubeRay's 2 s resync) later finds the same write. It fails at once,
    saying what to do, when an application is DEPLOY_FAILED or UNHEALTHY (active or pending cluster), when
    KubeRay refused the spec (ValidationFailed) or gave up initializing it (InitializingTimeout).

    What that needs from earlier pokes (the first writes seen of the latest generation, and when) is kept
    in the sensor (``mode="poke"``: one process runs every poke of a try) and in Airflow's task state store
    (``context["task_state_store"]``, Airflow >= 3.3: per task instance, across reschedules and retries).
    With ``mode="reschedule"`` each poke runs in a new process that starts by clearing the task's XComs,
    so neither the instance nor an XCom would carry it; without a task state store such a poke watches
    the RayService itself for up to ``settle_seconds``, until the rule can judge what it sees. What is
    lost (a retry without a store, a store error) only delays success by a poke, never lets stale
    statuses through.

    With ``deferrable=True`` the wait is ``RayServiceTrigger``'s in the triggerer (a watch, the same rule),
    bounded by the sensor's ``timeout``; a RayService that does not exist yet is waited for.

    :param rayservice_name: the RayService's name (templated).
    :param namespace: default: the connection's, else ``default``.
    :param kuberay_conn_id: a ``kuberay`` connection (templated).
    :param deferrable: wait in the triggerer instead of poking.
    """

    template_fields: Sequence[str] = ("rayservice_name", "namespace", "kuberay_conn_id")
    STATE_KEY = "rayservice_sensor"  # this sensor's key in the task state store
    settle_seconds: float = SETTLE_SECONDS

    @staticmethod
    def clock() -> float:
        """The wall clock: the times kept between pokes must mean the same in the next process."""
        return time.time()

    def __init__(
        self,
        *,
        rayservice_name: str,
        namespace: str | None = None,
        kuberay_conn_id: str = DEFAULT_CONN_ID,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.rayservice_name, self.namespace, self.kuberay_conn_id = rayservice_name, namespace, kuberay_conn_id
        self.deferrable = deferrable
        self._kept: tuple[dict[str, str], dict[str, Any]] | None = None  # (object, tracker memory) of the last poke

    @cached_property
    def hook(self) -> KubeRayHook:
        return KubeRayHook(kuberay_conn_id=self.kuberay_conn_id)

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        namespace = self.namespace or self.hook.get_namespace() or "default"
        self.defer(
            trigger=RayServiceTrigger(
                self.rayservice_name,
                namespace,
                self.kuberay_conn_id,
                timeout=float(self.timeout) if self.timeout else None,
            ),
            method_name="execute_complete",
            timeout=dt.timedelta(seconds=float(self.timeout)) if self.timeout else None,
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> None:
        """Deferred: the RayService serves its latest spec; a timeout is the sensor's (``soft_fail`` applies)."""
        if (event or {}).get("status") == "timeout":
            raise AirflowSensorTimeout(f"RayService {self.rayservice_name}: {event.get('message')}")
        state = object_state_from_event(event, f"RayService {self.rayservice_name}")
        self.log.info(
            "RayService %s/%s serves its latest spec at %s",
            state.get("namespace"),
            state.get("name"),
            state.get("serve_endpoint"),
        )
        push_extra(self, context, "serve_endpoint", state["serve_endpoint"])

    def poke(self, context: Context) -> bool:
        namespace = self.namespace or self.hook.get_namespace() or "default"
        kube = self.hook.objects_client
        manifest = kube.find(RAYSERVICE, namespace, self.rayservice_name)
        if manifest is None:
            self.log.info("RayService %s/%s does not exist (yet)", namespace, self.rayservice_name)
            return False
        # The uid too: what was seen of a RayService deleted since says nothing about the new one.
        identity = {
            "namespace": namespace,
            "name": self.rayservice_name,
            "uid": str((manifest.get("metadata") or {}).get("uid", "")),
        }
        store = context.get("task_state_store")
        memory = self._kept[1] if self._kept and self._kept[0] == identity else self._recall(store, identity)
        # Nothing of this poke reaches the next one: it must see a later write, or settling, itself.
        alone = self.reschedule and memory is None
        tracker = ServiceTracker(
            namespace,
            self.rayservice_name,
            self.settle_seconds + 1 if alone else None,
            settle_seconds=self.settle_seconds,
            clock=self.clock,
        )
        tracker.recall(memory or {})
        try:
            served = tracker.observe(WatchEvent("MODIFIED", manifest))
            if served is None and alone:
                served = self._watch_until_judged(kube, tracker)
        except RayServiceFailed as failed:
            raise AirflowException(str(failed)) from failed
        finally:
            self._kept = (identity, tracker.memory())
            if store is not None and self._kept[1] != memory:
                self._keep(store, identity, self._kept[1])
        state = tracker.last
        if state is not None:
            self.log.info("%s", state.describe())
            if served is None and state.is_ready:
                self.log.info(
                    "Not trusted yet: the write that first shows generation %s carries application statuses read "
                    "before KubeRay applied it; waiting for a later write, or %s s without one",
                    state.generation,
                    self.settle_seconds,
                )
        if served is None:
            return False
        push_extra(self, context, "serve_endpoint", served.serve_endpoint)
        return True

    def _recall(self, store: Any, identity: Mapping[str, str]) -> dict[str, Any] | None:
        """What an earlier try kept of this object ({}: nothing; None: no store to keep it in)."""
        if store is None:
            return None
        try:
            kept = store.get(self.STATE_KEY)
        except Exception as exc:
            self.log.warning("Could not read what earlier pokes saw of the RayService: %s", exc)
            return None
        if isinstance(kept, dict) and all(kept.get(key) == value for key, value in identity.items()):
            return dict(kept.get("tracker") or {})
        return {}

    def _keep(self, store: Any, identity: Mapping[str, str], memory: dict[str, Any]) -> None:
        try:
            store.set(self.STATE_KEY, {**identity, "tracker": memory})
        except Exception as exc:
            self.log.warning("Could not keep what this poke saw of the RayService for the next: %s", exc)

    def _watch_until_judged(self, kube: SyncWatcher, tracker: ServiceTracker) -> RayServiceState | None:
        """The tracker's own wait, cut at its timeout (a little over ``settle_seconds``)."""
        try:
            return wait_service(kube, tracker)
        except (RayServiceTimeout, RayServiceGone):
            return None
