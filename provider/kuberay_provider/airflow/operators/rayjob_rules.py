"""The rules RayJobOperator keeps beside running its job (kept apart from ``operators.rayjob`` for size):
which of its arguments go together, judged when the DAG is parsed, and what a timeout leaves behind."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowTaskTimeout

from kuberay_provider.airflow.operators.common import after_timeout
from kuberay_provider.airflow.params import check_seconds
from kuberay_provider.core.cleanup import cleanup_spec_fields
from kuberay_provider.core.errors import ConfigurationError
from kuberay_provider.core.job_request import RayJobRequest, RunMode, SubmitVia
from kuberay_provider.core.lifecycle import AdmissionTimeout, RayJobTimeout

if TYPE_CHECKING:
    from kuberay_provider.airflow.hooks import KubeRayHook


class RayJobRules:
    """Mixed into ``RayJobOperator``: its argument checks and its timeout rule, on the operator's own attributes."""

    if TYPE_CHECKING:
        rayjob: Any
        spec_params: dict[str, Any]
        submit_via: str
        cluster_selector: Any
        volcano_job: str | None
        head_service: str | None
        deferrable: bool
        cleanup: str | None
        wait_timeout: Any
        wait_for_completion: bool
        admission_timeout: float | None
        delete_on_success: bool
        delete_on_failure: bool
        delete_on_final_timeout: bool
        retries: int | None

        @property
        def hook(self) -> KubeRayHook: ...

        log: Any
        _timed_out: bool

    def _check_arguments(self) -> None:
        """What can be judged before rendering: fail at DAG parse time, not in the middle of a run."""
        if self.rayjob is None and not self.spec_params:
            raise ConfigurationError(
                "RayJobOperator needs a RayJob: rayjob= (dict or YAML/JSON file) and/or spec keywords such as entrypoint="
            )
        if self.deferrable and not self._mode_as_given().creates_rayjob:
            raise ConfigurationError(
                "deferrable=True needs a RayJob to watch; submitting straight to a Ray head "
                "(submit_via='sdk' with cluster_selector, volcano_job, head_service) creates none"
            )
        if self.cleanup is not None:
            cleanup_spec_fields(self.cleanup)
        check_seconds({"wait_timeout": self.wait_timeout})
        if not self.wait_for_completion:
            self._check_not_waiting()

    def _mode_as_given(self) -> RunMode:
        """The run mode the arguments choose, judged before rendering (a templated value counts as given)."""
        return RunMode.of(
            SubmitVia(self.submit_via),
            selected=bool(self.cluster_selector),
            bare_head=bool(self.volcano_job or self.head_service),
        )

    def _check_not_waiting(self) -> None:
        """wait_for_completion=False: what needs the task to see the job end is refused at parse time."""
        if not self._mode_as_given().creates_rayjob:
            raise ConfigurationError(
                "wait_for_completion=False leaves the wait to a RayJobSensor, which needs a RayJob to watch; "
                "submitting straight to a Ray head (submit_via='sdk' with cluster_selector, volcano_job, "
                "head_service) creates none: use submit_via='kuberay', or let the task wait"
            )
        if self.delete_on_success or self.delete_on_failure:
            raise ConfigurationError(
                "delete_on_success / delete_on_failure act when the task sees the job end, which it does not "
                "with wait_for_completion=False: let KubeRay delete the cluster (cleanup='delete_cluster_after:300', "
                "shutdown_after_job_finishes=True) or delete the RayJob later with RayJobCleanupOperator"
            )
        if self.admission_timeout is not None and self.submit_via == SubmitVia.KUBERAY.value:
            raise ConfigurationError(
                "admission_timeout needs the task to wait for Kueue's admission, which it does not with "
                "wait_for_completion=False: bound the queueing with the RayJobSensor's timeout instead"
            )

    @contextlib.contextmanager
    def _timeout_rule(self, context: Context, request: RayJobRequest) -> Iterator[None]:
        """A timeout is not a kill: before the last try the work stays for the retry to re-attach to; the
        last try removes it (``_after_timeout``). Kueue's admission timeout withdraws the RayJob itself."""
        try:
            yield
        except AirflowTaskTimeout:
            self._timed_out = True
            self._after_timeout(context, request, "execution_timeout")
            raise
        except RayJobTimeout as timeout:
            if not isinstance(timeout, AdmissionTimeout):
                self._after_timeout(context, request, "wait_timeout")
            raise

    def _timeout_event(self, context: Context, request: RayJobRequest, event: dict[str, Any] | None) -> None:
        """The trigger's wait (``wait_timeout``) timed out: the same rule as for a wait in the worker."""
        if (event or {}).get("status") == "timeout":
            self._after_timeout(context, request, "wait_timeout")

    def _after_timeout(self, context: Context, request: RayJobRequest, which: str) -> None:
        after_timeout(
            context,
            request,
            which,
            retries=self.retries,
            delete_on_final_timeout=self.delete_on_final_timeout,
            lifecycle=lambda: self.hook.lifecycle(validate_schema=False),
            log=self.log,
        )
