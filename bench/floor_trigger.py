"""Airflow's floor for a deferred wait: a trigger that fires at a given instant, to the millisecond.

Airflow's own ``DateTimeTrigger`` checks the clock once a second once under 20 s remain, so it fires up to
1 s after its moment; this one sleeps exactly until it. What is left between its moment and the task
instance leaving DEFERRED is Airflow's hand-over (the triggerer's sync loop and the database), which every
trigger pays. Benchmarks only; never shipped.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator
from typing import Any

from airflow.providers.standard.triggers.temporal import DateTimeTrigger
from airflow.triggers.base import TriggerEvent


class ExactMomentTrigger(DateTimeTrigger):
    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}", {"moment": self.moment})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        now = datetime.datetime.now(datetime.UTC)
        await asyncio.sleep(max(0.0, (self.moment - now).total_seconds()))
        yield TriggerEvent(self.moment.isoformat())
