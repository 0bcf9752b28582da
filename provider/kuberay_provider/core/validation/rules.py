"""KubeRay's own semantic rules, ported from KubeRay v1.7.0.

Source: ray-operator/controllers/ray/utils/validation.go (ValidateRayJobMetadata/Spec,
ValidateRayClusterMetadata/Spec/UpgradeOptions, ValidateRayServiceMetadata/Spec) and the RayCluster
webhook (unique worker group names). KubeRay stops at the first problem; these functions report every
problem they find. Input is untrusted: a value of the wrong type is left for the schema layer to report
and the rule that needed it is skipped, so nothing here raises.

Feature gates are applied at their v1.7.0 defaults (ray-operator/pkg/features/features.go), as a stock
KubeRay install would: a manifest cannot tell us how the operator was started.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import FieldError
from .cluster_rules import cluster_spec_rules, raycluster_rules
from .common import (
    dns1035_label_errors,
    dns1123_label_errors,
    dns1123_subdomain_errors,
    go_duration_seconds,
    label_value_errors,
    parse_ray_version,
    qualified_name_errors,
)
from .rayjob_rules import rayjob_rules
from .rayservice_rules import rayservice_rules

__all__ = [
    "RULES_BY_KIND",
    "cluster_spec_rules",
    "dns1035_label_errors",
    "dns1123_label_errors",
    "dns1123_subdomain_errors",
    "go_duration_seconds",
    "label_value_errors",
    "parse_ray_version",
    "qualified_name_errors",
    "raycluster_rules",
    "rayjob_rules",
    "rayservice_rules",
]

# The modules, in the order of validation.go: common (metadata, names, values), cluster_spec (groups),
# cluster_options (GCS FT, autoscaler, auth, gates), cluster_rules, rayjob_rules, rayservice_rules.
RULES_BY_KIND: dict[str, Callable[[Any], list[FieldError]]] = {
    "RayJob": rayjob_rules,
    "RayCluster": raycluster_rules,
    "RayService": rayservice_rules,
}
