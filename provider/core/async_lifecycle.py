"""The waiting step of ``RayJobLifecycle`` for asyncio code (deferrable triggers, async flows).

A trigger must hand its result back as plain data, so RayJobState travels as a payload dict too.
"""

from __future__ import annotations

import dataclasses
from enum import Enum
from typing import Any, Callable, Mapping

from kuberay_provider.core.kube.async_client import AsyncRayObjectsClient
from kuberay_provider.core.lifecycle import StateTracker, WaitTarget
from kuberay_provider.core.resources import RAYJOB
from kuberay_provider.core.status import RayJobState


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


def state_to_payload(state: RayJobState) -> dict[str, Any]:
    """JSON-safe: enum members become their wire strings."""
    return {
        key: value.value if isinstance(value, Enum) else value for key, value in dataclasses.asdict(state).items()
    }


def state_from_payload(payload: Mapping[str, Any]) -> RayJobState:
    """Inverse of ``state_to_payload`` (wire strings back to the status enums)."""
    status = {
        "jobStatus": payload.get("job_status", ""),
        "jobDeploymentStatus": payload.get("deployment_status", ""),
    }
    rebuilt = RayJobState.from_object({"metadata": {}, "status": status})
    known = {f.name for f in dataclasses.fields(RayJobState)}
    fields = {key: value for key, value in payload.items() if key in known}
    fields.update(job_status=rebuilt.job_status, deployment_status=rebuilt.deployment_status)
    return RayJobState(**fields)
