"""Stand-ins for what Airflow hands an operator, for calling execute()/on_kill() outside a DAG run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class FakeTaskInstance:
    dag_id: str = "nightly"
    task_id: str = "score"
    run_id: str = "scheduled__2026-01-01"
    map_index: int = -1
    try_number: int = 1
    # Airflow's max_tries: the task's retries, plus the tries before the last clear. None: not given (then the
    # operator knows neither the first try of the series nor whether this try is the last).
    max_tries: int | None = None
    pushed: dict[str, Any] = field(default_factory=dict)

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


class RecordingKube:
    """The Kubernetes boundary of a RayJobLifecycle: nothing exists, creates succeed, every call is
    recorded ("find", "dry-run", "create")."""

    api_server_url = "https://kube.test"

    def __init__(self) -> None:
        self.calls: list[str] = []

    def find(self, *args: Any) -> None:
        self.calls.append("find")
        return None

    def create(self, manifest: dict, *, dry_run: bool = False) -> dict:
        self.calls.append("dry-run" if dry_run else "create")
        return manifest
