"""RayService rules: upgrade options and the spec (ValidateRayServiceMetadata/Spec).

Part of the port of KubeRay v1.7.0's validation; see ``rules.py`` for the source and the conventions.
"""

from __future__ import annotations

from typing import Any

from ..errors import FieldError
from ..naming import MAX_RAYSERVICE_NAME
from .cluster_rules import embedded_cluster_rules, split_manifest, upgrade_type_rule
from .common import (
    DEFAULT_MAX_SURGE_PERCENT,
    FEATURE_GATES,
    RAYSERVICE_UPGRADE_TYPES,
    Errors,
    as_int,
    as_map,
    as_str,
    dig,
    initializing_timeout_rules,
    name_rules,
    rule_error,
)

# --- RayService -----------------------------------------------------------------------------------


def _cluster_upgrade_option_rules(spec: dict[str, Any]) -> Errors:
    """ValidateClusterUpgradeOptions, for the NewClusterWithIncrementalUpgrade strategy."""
    path = "spec.upgradeStrategy.clusterUpgradeOptions"
    if dig(spec, "rayClusterConfig", "enableInTreeAutoscaling") is not True:
        yield rule_error(
            "spec.rayClusterConfig.enableInTreeAutoscaling",
            "incremental-upgrade-requires-autoscaler",
            "Ray Autoscaler is required for NewClusterWithIncrementalUpgrade",
        )
    options = dig(spec, "upgradeStrategy", "clusterUpgradeOptions")
    if not isinstance(options, dict):
        if options is None:
            yield rule_error(
                path,
                "cluster-upgrade-options-required",
                "ClusterUpgradeOptions are required for NewClusterWithIncrementalUpgrade",
            )
        return
    max_surge = as_int(options.get("maxSurgePercent")) if "maxSurgePercent" in options else DEFAULT_MAX_SURGE_PERCENT
    step = as_int(options.get("stepSizePercent"))
    interval = as_int(options.get("intervalSeconds"))
    if max_surge is not None and not 0 <= max_surge <= 100:
        yield rule_error(f"{path}.maxSurgePercent", "percent-out-of-range", "maxSurgePercent must be between 0 and 100")
    if step is None or not 0 <= step <= 100:
        yield rule_error(f"{path}.stepSizePercent", "percent-out-of-range", "stepSizePercent must be between 0 and 100")
    elif max_surge is not None and step > max_surge:
        yield rule_error(
            f"{path}.stepSizePercent",
            "step-exceeds-max-surge",
            "stepSizePercent must be less than or equal to maxSurgePercent",
        )
    if interval is None or interval <= 0:
        yield rule_error(f"{path}.intervalSeconds", "interval-not-positive", "intervalSeconds must be greater than 0")
    if not as_str(options.get("gatewayClassName")):
        yield rule_error(
            f"{path}.gatewayClassName",
            "gateway-class-name-required",
            "gatewayClassName is required for NewClusterWithIncrementalUpgrade",
        )


def _rayservice_spec_rules(spec: dict[str, Any], annotations: dict[str, Any]) -> Errors:
    cluster_path = "spec.rayClusterConfig"
    yield from embedded_cluster_rules(spec.get("rayClusterConfig"), cluster_path, annotations, "RayService")
    if as_str(dig(spec, "rayClusterConfig", "headGroupSpec", "headService", "metadata", "name")):
        yield rule_error(
            f"{cluster_path}.headGroupSpec.headService.metadata.name",
            "head-service-name-set",
            "spec.rayClusterConfig.headGroupSpec.headService.metadata.name should not be set",
        )
    strategy_type = dig(spec, "upgradeStrategy", "type")
    yield from upgrade_type_rule(strategy_type, "spec.upgradeStrategy.type", RAYSERVICE_UPGRADE_TYPES)
    delay = as_int(spec.get("rayClusterDeletionDelaySeconds"))
    if delay is not None and delay < 0:
        yield rule_error(
            "spec.rayClusterDeletionDelaySeconds",
            "negative-deletion-delay",
            f"Spec.RayClusterDeletionDelaySeconds should be a non-negative integer, got {delay}",
        )
    if FEATURE_GATES["RayServiceIncrementalUpgrade"] and strategy_type == "NewClusterWithIncrementalUpgrade":
        yield from _cluster_upgrade_option_rules(spec)


def rayservice_rules(manifest: Any) -> list[FieldError]:
    """ValidateRayServiceMetadata and ValidateRayServiceSpec."""
    if (parts := split_manifest(manifest)) is None:
        return []
    metadata, spec = parts
    annotations = as_map(metadata.get("annotations"))
    errors = list(name_rules(metadata, "RayService", MAX_RAYSERVICE_NAME))
    errors += initializing_timeout_rules(annotations)
    if isinstance(spec, dict):
        errors += _rayservice_spec_rules(spec, annotations)
    return errors
