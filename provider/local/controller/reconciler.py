"""Controller: one object per control plane holding the three reconcilers and their shared pieces."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from kuberay_provider.local.ray_backend.base import RayBackend

from .api import RAYCLUSTERS, RAYJOBS, RAYSERVICES, ClusterAPI
from .clock import Clock, SystemClock
from .events import EventRecorder
from .raycluster_runtime import RayClusterRuntime
from .rayjob import RayJobSettings
from .rayjob_runtime import RayJobRuntime
from .rayservice_runtime import RayServiceRuntime


@dataclass(frozen=True)
class ControllerSettings:
    rayjob: RayJobSettings = field(default_factory=RayJobSettings)
    # How long after the Ray job ends the submitter is seen to finish (`ray job logs --follow` exiting).
    submitter_exit_delay_seconds: float = 0.0


class Controller:
    """Reconciles RayJobs, RayClusters and RayServices by kind, namespace and name."""

    def __init__(
        self,
        api: ClusterAPI,
        backend: RayBackend,
        *,
        clock: Clock | None = None,
        settings: ControllerSettings | None = None,
    ) -> None:
        self.api = api
        self.backend = backend
        self.clock = clock or SystemClock()
        self.settings = settings or ControllerSettings()
        self.recorder = EventRecorder(api, self.clock)
        self.rayjobs = RayJobRuntime(
            api, backend, self.clock, self.recorder, self.settings.rayjob,
            submitter_exit_delay_seconds=self.settings.submitter_exit_delay_seconds,
        )
        self.rayclusters = RayClusterRuntime(api, backend, self.clock, self.recorder)
        self.rayservices = RayServiceRuntime(api, backend, self.clock, self.recorder)
        self._by_kind = {
            RAYJOBS.kind: self.rayjobs,
            RAYCLUSTERS.kind: self.rayclusters,
            RAYSERVICES.kind: self.rayservices,
        }

    async def reconcile(self, kind: str, namespace: str, name: str) -> float | None:
        """One reconcile; returns the requeue delay in seconds (None: wait for a change)."""
        return await self._by_kind[kind].reconcile(namespace, name)

    async def handle_deleted(self, kind: str, obj: Mapping[str, Any]) -> None:
        await self._by_kind[kind].on_deleted(obj)
