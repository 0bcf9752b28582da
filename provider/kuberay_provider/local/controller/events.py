"""Events as KubeRay records them (events.k8s.io recorder), written through core v1 so kubectl shows them."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from typing import Any

from .actions import EventSpec
from .api import EVENTS, ApiError, ClusterAPI
from .clock import Clock

log = logging.getLogger(__name__)

COMPONENT = {
    "RayJob": "rayjob-controller",
    "RayCluster": "raycluster-controller",
    "RayService": "rayservice-controller",
}


class EventRecorder:
    def __init__(self, api: ClusterAPI, clock: Clock) -> None:
        self._api = api
        self._clock = clock

    async def record(self, regarding: Mapping[str, Any], event: EventSpec, component: str | None = None) -> None:
        """Best effort, like client-go's recorder: a failed write is logged, never raised."""
        meta = regarding.get("metadata") or {}
        now = self._clock.now()
        component = component or COMPONENT.get(regarding.get("kind", ""), "kuberay-operator")
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta.get('name')}.{secrets.token_hex(8)}", "namespace": meta.get("namespace")},
            "involvedObject": {
                "apiVersion": regarding.get("apiVersion"),
                "kind": regarding.get("kind"),
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": event.type,
            "reason": event.reason,
            "action": event.action,
            "message": event.message,
            "reportingComponent": component,
            "reportingInstance": component,
            "source": {"component": component},
            "eventTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            await self._api.create(EVENTS, meta.get("namespace"), body)
        except (ApiError, OSError) as exc:
            log.warning(
                "could not record event %s on %s/%s: %s", event.reason, meta.get("namespace"), meta.get("name"), exc
            )
