"""RayCluster rules as a whole, and what a RayJob's/RayService's embedded cluster adds (ValidateRayCluster*).

Part of the port of KubeRay v1.7.0's validation; see ``rules.py`` for the source and the conventions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import FieldError
from ..naming import MAX_RAYCLUSTER_NAME
from .cluster_options import auth_rules, autoscaler_rules, feature_gate_rules, gcs_fault_tolerance_rules
from .cluster_spec import ClusterSpec, head_group_rules, worker_group_rules
from .common import (
    RAYCLUSTER_UPGRADE_TYPES,
    Errors,
    as_map,
    as_str,
    dig,
    name_rules,
    rule_error,
)

_CLUSTER_SPEC_RULES: tuple[Callable[[ClusterSpec], Errors], ...] = (
    head_group_rules,
    worker_group_rules,
    gcs_fault_tolerance_rules,
    autoscaler_rules,
    auth_rules,
    feature_gate_rules,
)


def cluster_spec_rules(spec: Any, path: str, annotations: Any = None) -> list[FieldError]:
    """ValidateRayClusterSpec for a spec found at ``path``; ``annotations`` are its owner's."""
    if not isinstance(spec, dict):
        return []
    cluster = ClusterSpec(spec, path, as_map(annotations))
    return [error for rule in _CLUSTER_SPEC_RULES for error in rule(cluster)]


def upgrade_type_rule(strategy_type: Any, path: str, valid: tuple[str, ...]) -> Errors:
    if isinstance(strategy_type, str) and strategy_type not in valid:
        options = ", ".join(valid)
        yield rule_error(
            path,
            "invalid-upgrade-strategy",
            f"Spec.UpgradeStrategy.Type value {strategy_type} is invalid, valid options are {options}",
        )


def embedded_cluster_rules(spec: Any, path: str, annotations: dict[str, Any], owner: str) -> Errors:
    """A RayJob's/RayService's cluster spec: the RayCluster rules plus what its generated RayCluster would hit."""
    yield from cluster_spec_rules(spec, path, annotations)
    if dig(spec, "authOptions", "enableK8sTokenAuth") is True:
        yield rule_error(
            f"{path}.authOptions.enableK8sTokenAuth",
            "k8s-auth-not-supported",
            f"K8s token auth mode is currently not supported for {owner}",
        )
    # The generated RayCluster is labelled ray.io/originated-from-crd=<owner>, which
    # ValidateRayClusterUpgradeOptions refuses together with an upgradeStrategy.
    if dig(spec, "upgradeStrategy", "type") is not None:
        yield rule_error(
            f"{path}.upgradeStrategy.type",
            "upgrade-strategy-not-allowed",
            f"upgradeStrategy cannot be set when RayCluster is created by {owner}",
        )


def split_manifest(manifest: Any) -> tuple[dict[str, Any], Any] | None:
    """(metadata, spec) of a manifest, or None when it is not even a mapping."""
    if not isinstance(manifest, dict):
        return None
    spec = manifest.get("spec")
    return as_map(manifest.get("metadata")), ({} if spec is None else spec)


def raycluster_rules(manifest: Any) -> list[FieldError]:
    """ValidateRayClusterMetadata, ValidateRayClusterSpec, ValidateRayClusterUpgradeOptions and the webhook."""
    if (parts := split_manifest(manifest)) is None:
        return []
    metadata, spec = parts
    errors = list(name_rules(metadata, "RayCluster", MAX_RAYCLUSTER_NAME))
    errors += cluster_spec_rules(spec, "spec", metadata.get("annotations"))
    strategy_type = dig(spec, "upgradeStrategy", "type")
    errors += upgrade_type_rule(strategy_type, "spec.upgradeStrategy.type", RAYCLUSTER_UPGRADE_TYPES)
    creator = as_str(as_map(metadata.get("labels")).get("ray.io/originated-from-crd"))
    if strategy_type is not None and creator in ("RayJob", "RayService"):
        errors.append(
            rule_error(
                "spec.upgradeStrategy.type",
                "upgrade-strategy-not-allowed",
                f"upgradeStrategy cannot be set when RayCluster is created by {creator}",
            ),
        )
    return errors
