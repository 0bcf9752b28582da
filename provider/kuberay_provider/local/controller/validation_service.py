"""KubeRay v1.7.0's RayService validation (utils/validation.go ValidateRayServiceMetadata,
ValidateRayServiceSpec, ValidateClusterUpgradeOptions), as validateRayService (rayservice_controller.go)
runs it: metadata first, then spec; the first error wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .validation_cluster import validate_raycluster_spec
from .validation_common import (
    DEFAULT_MAX_SURGE_PERCENT,
    MAX_RAYSERVICE_NAME_LENGTH,
    RAY_SERVICE_INITIALIZING_TIMEOUT_ANNOTATION,
    ValidationFailure,
    as_int,
    as_map,
    as_text,
    dig,
    is_autoscaling_enabled,
    is_incremental_upgrade_enabled,
    is_k8s_auth_enabled,
)
from .validation_go import (
    go_atoi,
    go_len,
    go_list,
    is_dns1035_label,
    parse_go_duration,
)

_UPGRADE_TYPES = ("None", "NewCluster", "NewClusterWithIncrementalUpgrade")


def _validate_initializing_timeout(annotations: Any) -> str | None:
    """validateInitializingTimeout: a positive Go duration or a positive integer number of seconds."""
    key = RAY_SERVICE_INITIALIZING_TIMEOUT_ANNOTATION
    value = as_map(annotations).get(key)
    if value is None or as_text(value) == "":
        return None
    text = as_text(value)
    try:
        if parse_go_duration(text) <= 0:
            return f"annotation {key} must be a positive duration, got: {text}"
        return None
    except ValueError:
        pass
    try:
        if go_atoi(text) <= 0:
            return f"annotation {key} must be a positive integer (seconds), got: {text}"
        return None
    except ValueError:
        pass
    return (
        f"annotation {key} has invalid format: {text}. Expected Go duration format (e.g., '5m', '1h') "
        "or positive integer seconds"
    )


def validate_rayservice_metadata(metadata: Mapping[str, Any]) -> str | None:
    """ValidateRayServiceMetadata: name ≤ 47 bytes, DNS-1035, and a valid ray.io/initializing-timeout."""
    name = as_text(metadata.get("name"))
    if go_len(name) > MAX_RAYSERVICE_NAME_LENGTH:
        return (
            "The RayService metadata is invalid: RayService name should be no more than "
            f"{MAX_RAYSERVICE_NAME_LENGTH} characters"
        )
    if errs := is_dns1035_label(name):
        return f"The RayService metadata is invalid: RayService name should be a valid DNS1035 label: {go_list(errs)}"
    if error := _validate_initializing_timeout(metadata.get("annotations")):
        return f"The RayService metadata is invalid: RayService annotations is invalid: {error}"
    return None


def validate_cluster_upgrade_options(rayservice: Mapping[str, Any]) -> str | None:
    """ValidateClusterUpgradeOptions (NewClusterWithIncrementalUpgrade)."""
    spec = as_map(rayservice.get("spec"))
    if not is_autoscaling_enabled(spec.get("rayClusterConfig")):
        return "Ray Autoscaler is required for NewClusterWithIncrementalUpgrade"
    options = dig(spec, "upgradeStrategy", "clusterUpgradeOptions")
    if options is None:
        return "ClusterUpgradeOptions are required for NewClusterWithIncrementalUpgrade"
    options = as_map(options)
    # Go dereferences maxSurgePercent unchecked: the CRD default (100) is always there.
    max_surge = as_int(options.get("maxSurgePercent"))
    max_surge = DEFAULT_MAX_SURGE_PERCENT if max_surge is None else max_surge
    if not 0 <= max_surge <= 100:
        return "maxSurgePercent must be between 0 and 100"
    step = as_int(options.get("stepSizePercent"))
    if step is None or not 0 <= step <= 100:
        return "stepSizePercent must be between 0 and 100"
    if step > max_surge:
        return "stepSizePercent must be less than or equal to maxSurgePercent"
    interval = as_int(options.get("intervalSeconds"))
    if interval is None or interval <= 0:
        return "intervalSeconds must be greater than 0"
    if not as_text(options.get("gatewayClassName")):
        return "gatewayClassName is required for NewClusterWithIncrementalUpgrade"
    return None


def validate_rayservice_spec(rayservice: Mapping[str, Any]) -> str | None:
    """ValidateRayServiceSpec."""
    spec = as_map(rayservice.get("spec"))
    cluster_spec = as_map(spec.get("rayClusterConfig"))
    if is_k8s_auth_enabled(cluster_spec.get("authOptions")):
        return "The RayService spec is invalid: K8s token auth mode is currently not supported for RayService"
    if error := validate_raycluster_spec(cluster_spec, dig(rayservice, "metadata", "annotations")):
        return f"The RayService spec is invalid: {error}"
    head_service = dig(cluster_spec, "headGroupSpec", "headService")
    if head_service is not None and as_text(dig(head_service, "metadata", "name")):
        return "The RayService spec is invalid: spec.rayClusterConfig.headGroupSpec.headService.metadata.name should not be set"
    strategy_type = dig(spec, "upgradeStrategy", "type")
    if strategy_type is not None and strategy_type not in _UPGRADE_TYPES:
        return (
            f"The RayService spec is invalid: Spec.UpgradeStrategy.Type value {as_text(strategy_type)} is invalid, "
            "valid options are NewClusterWithIncrementalUpgrade, NewCluster, or None"
        )
    delay = as_int(spec.get("rayClusterDeletionDelaySeconds"))
    if delay is not None and delay < 0:
        return f"The RayService spec is invalid: Spec.RayClusterDeletionDelaySeconds should be a non-negative integer, got {delay}"
    if is_incremental_upgrade_enabled(spec) and (error := validate_cluster_upgrade_options(rayservice)):
        return f"The RayService spec is invalid: {error}"
    return None


def check_rayservice(rayservice: Mapping[str, Any]) -> ValidationFailure | None:
    """validateRayService: the first failure with its event reason (InvalidRayServiceMetadata/Spec)."""
    if error := validate_rayservice_metadata(as_map(rayservice.get("metadata"))):
        return ValidationFailure("InvalidRayServiceMetadata", error)
    if error := validate_rayservice_spec(rayservice):
        return ValidationFailure("InvalidRayServiceSpec", error)
    return None


def validate_rayservice(rayservice: Mapping[str, Any]) -> str | None:
    """The message of the first check validateRayService fails (the Ready=False/ValidationFailed message), or None."""
    failure = check_rayservice(rayservice)
    return failure.message if failure else None
