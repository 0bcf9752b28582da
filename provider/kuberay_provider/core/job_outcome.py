"""What a finished task reports: a ``RayJobOutcome``, or a ``RayJobFailed`` with the log's last lines."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from kuberay_provider.core.errors import KubeRayProviderError
from kuberay_provider.core.status import RayJobState


@dataclass(frozen=True)
class RayJobOutcome:
    """What a finished task reports (an Airflow XCom, a Prefect result): plain, JSON-safe values."""

    namespace: str
    rayjob_name: str
    job_id: str
    cluster_name: str
    deployment_status: str
    job_status: str
    succeeded: bool
    reason: str = ""
    message: str = ""
    dashboard_url: str = ""

    @classmethod
    def from_state(cls, state: RayJobState, dashboard_url: str = "") -> RayJobOutcome:
        return cls(
            namespace=state.namespace,
            rayjob_name=state.name,
            job_id=state.job_id,
            cluster_name=state.cluster_name,
            deployment_status=_wire(state.deployment_status),
            job_status=_wire(state.job_status),
            succeeded=state.succeeded_job,
            reason=state.reason,
            message=state.message,
            dashboard_url=dashboard_url,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _wire(value: Any) -> str:
    return str(getattr(value, "value", value) or "")


class RayJobFailed(KubeRayProviderError):
    """The Ray job ended without succeeding: KubeRay's reason and message, and the log's last lines."""

    def __init__(self, summary: str, outcome: RayJobOutcome, log_tail: str = "") -> None:
        text = summary
        if log_tail:
            text += f"\n--- last lines of the Ray job's log ({outcome.job_id}) ---\n{log_tail}"
        super().__init__(text)
        self.outcome = outcome
        self.log_tail = log_tail
