"""The waiting step of ``RayJobLifecycle`` for asyncio code (deferrable triggers, async flows)."""

from __future__ import annotations

from typing import Callable

from kuberay_provider.core.kube.async_client import AsyncRayObjectsClient
from kuberay_provider.core.lifecycle import StateTracker
from kuberay_provider.core.resources import RAYJOB
from kuberay_provider.core.status import RayJobState, WaitTarget


async def wait_for_rayjob(
    kube: AsyncRayObjectsClient,
    namespace: str,
    name: str,
    target: WaitTarget = WaitTarget.TERMINAL,
    *,
    timeout: float | None = None,
    on_change: Callable[[RayJobState], None] | None = None,
) -> RayJobState:
    """Await ``target`` by watching the RayJob (no polling); raises RayJobTimeout after ``timeout`` s."""
    tracker = StateTracker(namespace, name, target.reached, timeout, on_change)
    async for event in kube.watch(RAYJOB, namespace, name=name, timeout_seconds=timeout):
        if (done := tracker.observe(event)) is not None:
            return done
    raise tracker.timed_out()
