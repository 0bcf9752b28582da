"""Controller: one object per control plane holding the three reconcilers and their shared pieces."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from kuberay_provider.local.ray_backend.base import RayBackend

from .api import RAYCLUSTERS, RAYJOBS, RAYSERVICES, ClusterAPI
from .clock import Clock, SystemClock
from .events import EventRecorder
from .raycluster_runtime import RayClusterRuntime
from .rayjob_model import RayJobSettings
from .rayjob_runtime import RayJobRuntime
from .rayservice_runtime import RayServiceRuntime

DEFAULT_SUBMITTER_START_DELAY_SECONDS = 3.0
DEFAULT_SUBMITTER_EXIT_DELAY_SECONDS = 1.0


@dataclass(frozen=True)
class ControllerSettings:
    rayjob: RayJobSettings = field(default_factory=RayJobSettings)
    # K8sJobMode / SidecarMode: how long after Running the submitter submits the Ray job. A real
    # submitter Pod is scheduled, starts the head image and waits for the GCS first, so Ray answers 404
    # for the job id for a while; never zero by default, so clients meet that race here too.
    submitter_start_delay_seconds: float = DEFAULT_SUBMITTER_START_DELAY_SECONDS
    # How long after the Ray job ends the submitter is seen to finish (`ray job logs --follow` exiting,
    # the Pod terminating, the Job controller writing its condition).
    submitter_exit_delay_seconds: float = DEFAULT_SUBMITTER_EXIT_DELAY_SECONDS


class KindRuntime(Protocol):
    """What the controller asks of the reconciler of one kind."""

    async def reconcile(self, namespace: str, name: str) -> float | None: ...

    async def on_deleted(self, obj: Mapping[str, Any], /) -> None: ...


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
            api,
            backend,
            self.clock,
            self.recorder,
            self.settings.rayjob,
            submitter_start_delay_seconds=self.settings.submitter_start_delay_seconds,
            submitter_exit_delay_seconds=self.settings.submitter_exit_delay_seconds,
        )
        self.rayclusters = RayClusterRuntime(api, backend, self.clock, self.recorder)
        self.rayservices = RayServiceRuntime(api, backend, self.clock, self.recorder)
        self._by_kind: dict[str, KindRuntime] = {
            RAYJOBS.kind: self.rayjobs,
            RAYCLUSTERS.kind: self.rayclusters,
            RAYSERVICES.kind: self.rayservices,
        }

    async def reconcile(self, kind: str, namespace: str, name: str) -> float | None:
        """One reconcile; returns the requeue delay in seconds (None: wait for a change)."""
        return await self._by_kind[kind].reconcile(namespace, name)

    async def handle_deleted(self, kind: str, obj: Mapping[str, Any]) -> None:
        await self._by_kind[kind].on_deleted(obj)
