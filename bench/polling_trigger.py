"""The baseline for deferred waits: a trigger that reads the RayJob every 5 s, as the common providers'
triggers do (``asyncio.sleep(poll_interval)`` between GETs). Benchmarks only; never shipped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


class PollingRayJobTrigger(BaseTrigger):
    def __init__(
        self, name: str, namespace: str, kuberay_conn_id: str = "kuberay_default", poll_interval: float = 5.0
    ) -> None:
        super().__init__()
        self.name, self.namespace, self.kuberay_conn_id, self.poll_interval = (
            name,
            namespace,
            kuberay_conn_id,
            poll_interval,
        )

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "name": self.name,
                "namespace": self.namespace,
                "kuberay_conn_id": self.kuberay_conn_id,
                "poll_interval": self.poll_interval,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from kuberay_provider.airflow.hooks import AsyncKubeRayHook
        from kuberay_provider.core.resources import RAYJOB
        from kuberay_provider.core.status import RayJobState

        hook = AsyncKubeRayHook(kuberay_conn_id=self.kuberay_conn_id)
        async with hook.objects_client() as kube:
            while True:
                state = RayJobState.from_object(await kube.get(RAYJOB, self.namespace, self.name))
                if state.is_terminal:
                    yield TriggerEvent({"status": "success", "message": state.describe()})
                    return
                await asyncio.sleep(self.poll_interval)
