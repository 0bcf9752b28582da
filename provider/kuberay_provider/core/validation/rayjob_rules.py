"""RayJob rules: cluster source, submission mode, lifecycle and deletion strategy (ValidateRayJobMetadata/Spec).

Part of the port of KubeRay v1.7.0's validation; see ``rules.py`` for the source and the conventions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml

from ..errors import FieldError
from ..naming import MAX_RAYJOB_NAME
from .cluster_rules import embedded_cluster_rules, split_manifest
from .common import (
    CLUSTER_SELECTOR_KEY,
    DELETION_ORDER,
    FEATURE_GATES,
    SUBMISSION_MODES,
    Errors,
    as_int,
    as_list,
    as_map,
    as_str,
    dig,
    name_rules,
    rule_error,
)

# --- RayJob ---------------------------------------------------------------------------------------


def _selector_mode(spec: dict[str, Any]) -> bool:
    return bool(as_map(spec.get("clusterSelector")))


def _job_lifecycle_rules(spec: dict[str, Any]) -> Errors:
    if spec.get("suspend") is True and spec.get("shutdownAfterJobFinishes") is not True:
        yield rule_error(
            "spec.suspend",
            "suspend-requires-shutdown",
            "a RayJob with shutdownAfterJobFinishes set to false is not allowed to be suspended",
        )
    ttl = as_int(spec.get("ttlSecondsAfterFinished"))
    if ttl is not None and ttl < 0:
        yield rule_error(
            "spec.ttlSecondsAfterFinished",
            "negative-ttl",
            "TTLSecondsAfterFinished must be a non-negative integer",
        )
    if ttl is not None and ttl > 0 and spec.get("shutdownAfterJobFinishes") is not True:
        yield rule_error(
            "spec.ttlSecondsAfterFinished",
            "ttl-requires-shutdown",
            "a RayJob with shutdownAfterJobFinishes set to false cannot have TTLSecondsAfterFinished",
        )
    for field in ("activeDeadlineSeconds", "preRunningDeadlineSeconds"):
        value = as_int(spec.get(field))
        if value is not None and value <= 0:
            yield rule_error(f"spec.{field}", "deadline-not-positive", f"{field} must be a positive integer")
    backoff = as_int(spec.get("backoffLimit"))
    if backoff is not None and backoff < 0:
        yield rule_error("spec.backoffLimit", "negative-backoff-limit", "backoffLimit must be a positive integer")
    runtime_env = spec.get("runtimeEnvYAML")
    if isinstance(runtime_env, str) and not _is_yaml_mapping(runtime_env):
        yield rule_error(
            "spec.runtimeEnvYAML",
            "invalid-runtime-env-yaml",
            "failed to unmarshal RuntimeEnvYAML: it must be a YAML mapping",
        )


def _is_yaml_mapping(text: str) -> bool:
    """dashboardclient.UnmarshalRuntimeEnvYAML decodes into a map: empty text and mappings pass."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return False
    return value is None or isinstance(value, dict)


def _cluster_source_rules(spec: dict[str, Any]) -> Errors:
    has_cluster_spec = spec.get("rayClusterSpec") is not None
    if not has_cluster_spec and not _selector_mode(spec):
        yield rule_error(
            "spec.rayClusterSpec",
            "cluster-spec-or-selector-required",
            "one of RayClusterSpec or ClusterSelector must be set",
        )
    if not _selector_mode(spec):
        return
    # Stricter than KubeRay, which runs in clusterSelector mode and silently ignores the spec.
    if has_cluster_spec:
        yield rule_error(
            "spec.rayClusterSpec",
            "cluster-selector-with-cluster-spec",
            "rayClusterSpec and clusterSelector are mutually exclusive; KubeRay would ignore rayClusterSpec",
        )
    if not as_str(as_map(spec.get("clusterSelector")).get(CLUSTER_SELECTOR_KEY)):
        yield rule_error(
            "spec.clusterSelector",
            "cluster-selector-without-cluster",
            f"cluster name in ClusterSelector should not be empty (set {CLUSTER_SELECTOR_KEY})",
        )
    if spec.get("suspend") is True:
        yield rule_error(
            "spec.suspend",
            "cluster-selector-with-suspend",
            "the ClusterSelector mode doesn't support the suspend operation",
        )
    if spec.get("submissionMode") == "SidecarMode":
        yield rule_error(
            "spec.submissionMode",
            "cluster-selector-with-sidecar-mode",
            "ClusterSelector is not supported in SidecarMode",
        )
    if (as_int(spec.get("backoffLimit")) or 0) > 0:
        yield rule_error(
            "spec.backoffLimit",
            "cluster-selector-with-backoff-limit",
            "BackoffLimit is incompatible with ClusterSelector mode",
        )


_SIDECAR_REFUSED_FIELDS = (
    ("submitterPodTemplate", "SubmitterPodTemplate", "sidecar-mode-with-submitter-pod-template"),
    ("submitterConfig", "SubmitterConfig", "sidecar-mode-with-submitter-config"),
)


def _submission_mode_rules(spec: dict[str, Any]) -> Errors:
    mode = spec.get("submissionMode")
    # Stricter than KubeRay: its CRD has no enum here and an unknown mode just never submits.
    if isinstance(mode, str) and mode not in SUBMISSION_MODES:
        yield rule_error(
            "spec.submissionMode",
            "unknown-submission-mode",
            f"unsupported value {mode!r}: supported values are {', '.join(SUBMISSION_MODES)}",
        )
    if mode == "InteractiveMode" and (as_int(spec.get("backoffLimit")) or 0) > 0:
        yield rule_error(
            "spec.backoffLimit",
            "interactive-mode-with-backoff-limit",
            "BackoffLimit is incompatible with InteractiveMode",
        )
    if mode != "SidecarMode":
        return
    for field, name, rule in _SIDECAR_REFUSED_FIELDS:
        if spec.get(field) is not None:
            yield rule_error(f"spec.{field}", rule, f"Currently, SidecarMode doesn't support {name}")
    restart = dig(spec, "rayClusterSpec", "headGroupSpec", "template", "spec", "restartPolicy")
    if restart not in (None, "", "Never"):
        yield rule_error(
            "spec.rayClusterSpec.headGroupSpec.template.spec.restartPolicy",
            "sidecar-mode-restart-policy",
            "restartPolicy for head Pod should be Never or unset when using SidecarMode",
        )


# --- RayJob deletion strategy (validateDeletionConfiguration and friends) ---------------------------

_DELETION_PATH = "spec.deletionStrategy"


def _deletion_rules(spec: dict[str, Any]) -> Errors:
    strategy = spec.get("deletionStrategy")
    if not isinstance(strategy, dict):
        return
    if not FEATURE_GATES["RayJobDeletionPolicy"]:
        yield rule_error(
            _DELETION_PATH,
            "feature-gate-disabled",
            "RayJobDeletionPolicy feature gate must be enabled to use DeletionStrategy",
        )
        return
    legacy = strategy.get("onSuccess") is not None or strategy.get("onFailure") is not None
    rules = as_list(strategy.get("deletionRules"))
    if rules and spec.get("shutdownAfterJobFinishes") is True:
        yield rule_error(
            f"{_DELETION_PATH}.deletionRules",
            "deletion-rules-with-shutdown",
            "spec.shutdownAfterJobFinishes and spec.deletionStrategy.deletionRules are mutually exclusive",
        )
    if rules and legacy:
        yield rule_error(
            _DELETION_PATH,
            "deletion-rules-with-legacy-policies",
            "Cannot use both legacy onSuccess/onFailure fields and deletionRules simultaneously",
        )
    elif legacy:
        yield from _legacy_deletion_rules(spec, strategy)
    elif rules:
        yield from _deletion_rule_list_rules(spec, rules)
    else:
        yield rule_error(
            _DELETION_PATH,
            "deletion-strategy-empty",
            "DeletionStrategy requires either BOTH onSuccess and onFailure, OR the deletionRules field "
            "(cannot be empty)",
        )


def _policy_context_rules(spec: dict[str, Any], policy: Any, path: str, when: str) -> Errors:
    """Policies the cluster cannot honour: none to delete in selector mode, no workers to drop when autoscaling."""
    if _selector_mode(spec) and policy in ("DeleteCluster", "DeleteWorkers"):
        yield rule_error(
            path,
            "deletion-policy-with-cluster-selector",
            f"DeletionPolicyType '{policy}' not supported when ClusterSelector is set{when}",
        )
    elif policy == "DeleteWorkers" and dig(spec, "rayClusterSpec", "enableInTreeAutoscaling") is True:
        yield rule_error(
            path,
            "delete-workers-with-autoscaling",
            "DeletionPolicyType 'DeleteWorkers' not supported with autoscaling enabled",
        )


def _legacy_deletion_rules(spec: dict[str, Any], strategy: dict[str, Any]) -> Errors:
    for field, when in (("onSuccess", " (on success)"), ("onFailure", " (on failure)")):
        path = f"{_DELETION_PATH}.{field}"
        if strategy.get(field) is None:
            yield rule_error(
                path,
                "legacy-deletion-policy-incomplete",
                "both DeletionStrategy.OnSuccess and DeletionStrategy.OnFailure must be set when using the legacy "
                "deletion policy fields of DeletionStrategy",
            )
            continue
        policy = dig(strategy, field, "policy")
        if policy is None:
            yield rule_error(
                f"{path}.policy",
                "legacy-deletion-policy-unset",
                f"the DeletionPolicyType field of DeletionStrategy.{field[0].upper() + field[1:]} cannot be unset "
                "when DeletionStrategy is enabled",
            )
            continue
        yield from _policy_context_rules(spec, policy, f"{path}.policy", when)
        if spec.get("shutdownAfterJobFinishes") is True and policy == "DeleteNone":
            yield rule_error(
                f"{path}.policy",
                "shutdown-with-delete-none",
                "shutdownAfterJobFinishes is set to 'true' while deletion policy is 'DeleteNone'",
            )


def _deletion_condition_rules(condition: dict[str, Any], path: str) -> Errors:
    """validateDeletionCondition: exactly one status, non-negative TTL."""
    has_job_status = condition.get("jobStatus") is not None
    has_deployment_status = condition.get("jobDeploymentStatus") is not None
    if has_job_status and has_deployment_status:
        yield rule_error(
            path,
            "deletion-condition-both-statuses",
            "cannot set both JobStatus and JobDeploymentStatus at the same time",
        )
    elif not has_job_status and not has_deployment_status:
        yield rule_error(
            path,
            "deletion-condition-without-status",
            "exactly one of JobStatus and JobDeploymentStatus must be set",
        )
    ttl = as_int(condition.get("ttlSeconds"))
    if ttl is not None and ttl < 0:
        yield rule_error(f"{path}.ttlSeconds", "deletion-condition-negative-ttl", "TTLSeconds must be non-negative")


def _deletion_rule_list_rules(spec: dict[str, Any], rules: list[Any]) -> Errors:
    """validateDeletionRules: per-rule checks, uniqueness of (status, policy), then TTL ordering."""
    # (condition type, status) -> policy -> (ttl, index of the rule that set it)
    groups: dict[tuple[str, str], dict[str, tuple[int, int]]] = {}
    for index, rule in enumerate(rules):
        path = f"{_DELETION_PATH}.deletionRules[{index}]"
        condition, policy = as_map(as_map(rule).get("condition")), as_map(rule).get("policy")
        # Like KubeRay, a rule with a broken condition or an unusable policy takes no part in later checks.
        problems = list(_deletion_condition_rules(condition, f"{path}.condition"))
        problems = problems or list(_policy_context_rules(spec, policy, f"{path}.policy", ""))
        yield from problems
        if problems or not isinstance(policy, str):
            continue
        field = "jobStatus" if condition.get("jobStatus") is not None else "jobDeploymentStatus"
        status_type, status = field[0].upper() + field[1:], str(condition[field])
        policies = groups.setdefault((status_type, status), {})
        if policy in policies:
            yield rule_error(
                path,
                "deletion-rule-duplicate",
                f"duplicate rule for DeletionPolicyType '{policy}' and {status_type} '{status}'",
            )
            continue
        policies[policy] = (as_int(condition.get("ttlSeconds")) or 0, index)
    for (condition_type, status), policies in groups.items():
        yield from _ttl_order_rules(policies, condition_type, status)


def _ttl_order_rules(policies: dict[str, tuple[int, int]], condition_type: str, status: str) -> Errors:
    """validateTTLConsistency: Workers <= Cluster <= Self, reported on the rule that breaks the order."""
    previous: tuple[str, int] | None = None
    for policy in DELETION_ORDER:
        if policy not in policies:
            continue
        ttl, index = policies[policy]
        if previous is not None and ttl < previous[1]:
            yield rule_error(
                f"{_DELETION_PATH}.deletionRules[{index}].condition.ttlSeconds",
                "deletion-ttl-order",
                f"for {condition_type} '{status}': {policy} TTL ({ttl}) must be >= {previous[0]} TTL ({previous[1]})",
            )
        previous = (policy, ttl)


_RAYJOB_SPEC_RULES: tuple[Callable[[dict[str, Any]], Errors], ...] = (
    _job_lifecycle_rules,
    _deletion_rules,
    _cluster_source_rules,
    _submission_mode_rules,
)


def rayjob_rules(manifest: Any) -> list[FieldError]:
    """ValidateRayJobMetadata and ValidateRayJobSpec, the embedded cluster spec checked as a RayCluster's."""
    if (parts := split_manifest(manifest)) is None:
        return []
    metadata, spec = parts
    errors = list(name_rules(metadata, "RayJob", MAX_RAYJOB_NAME))
    if not isinstance(spec, dict):
        return errors
    errors += [error for rule in _RAYJOB_SPEC_RULES for error in rule(spec)]
    annotations = as_map(metadata.get("annotations"))
    errors += embedded_cluster_rules(spec.get("rayClusterSpec"), "spec.rayClusterSpec", annotations, "RayJob")
    return errors
