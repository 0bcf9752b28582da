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
    pushed: dict[str, Any] = field(default_factory=dict)

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value
