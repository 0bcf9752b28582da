"""The KubeRay kinds the provider manages and where the Kubernetes API serves them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

RAY_GROUP = "ray.io"
RAY_VERSION = "v1"
RAY_API_VERSION = f"{RAY_GROUP}/{RAY_VERSION}"


@dataclass(frozen=True)
class RayKind:
    kind: str
    plural: str
    crd_name: str

    @property
    def group(self) -> str:
        return RAY_GROUP

    @property
    def version(self) -> str:
        return RAY_VERSION

    @property
    def api_version(self) -> str:
        return RAY_API_VERSION


RAYJOB = RayKind("RayJob", "rayjobs", "rayjobs.ray.io")
RAYCLUSTER = RayKind("RayCluster", "rayclusters", "rayclusters.ray.io")
RAYSERVICE = RayKind("RayService", "rayservices", "rayservices.ray.io")
RAY_KINDS: dict[str, RayKind] = {k.kind: k for k in (RAYJOB, RAYCLUSTER, RAYSERVICE)}


def kind_of(manifest: Mapping[str, Any]) -> RayKind | None:
    """The RayKind of a manifest, or None when it is not a ray.io/v1 object we manage."""
    if manifest.get("apiVersion") != RAY_API_VERSION:
        return None
    return RAY_KINDS.get(manifest.get("kind", ""))
