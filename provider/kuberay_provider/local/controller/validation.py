"""validateRayJob (rayjob_controller.go): KubeRay v1.7.0's ValidateRayJobMetadata, ValidateRayJobSpec and
ValidateRayJobStatus (utils/validation.go), ported check for check with Go's error texts.

The emulated operator keeps its own copy of KubeRay's rules on purpose: it must not share the provider's
(kuberay_provider.core.validation), or a mistake in either would never show. RayCluster and RayService
rules live in validation_cluster.py and validation_service.py.

Left out: ValidateRayCronJobSpec (RayCronJob is behind an off-by-default gate and the local plane serves
no RayCronJob CRD), and the validating webhooks of pkg/webhooks/v1 (registered only with ENABLE_WEBHOOKS=true,
which a stock install leaves unset; they add unique worker group names at admission).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import yaml

from .validation_cluster import validate_raycluster_spec
from .validation_common import (
    MAX_RAYJOB_NAME_LENGTH,
    RAY_JOB_CLUSTER_SELECTOR_KEY,
    RAY_JOB_DELETION_POLICY,
    ValidationFailure,
    as_int,
    as_list,
    as_map,
    as_text,
    dig,
    feature_enabled,
    is_autoscaling_enabled,
    is_k8s_auth_enabled,
)
from .validation_go import (
    go_len,
    go_list,
    is_dns1035_label,
)
from .validation_service import validate_rayservice

__all__ = [
    "ValidationFailure",
    "unmarshal_runtime_env_yaml",
    "validate_rayjob",
    "validate_rayjob_metadata",
    "validate_rayjob_spec",
    "validate_rayjob_status",
    "validate_rayservice",
]

_INVALID_SPEC = "The RayJob spec is invalid: "
# validateTTLConsistency: lower TTL deletes earlier, so TTLs must not decrease along this order.
_DELETION_ORDER = ("DeleteWorkers", "DeleteCluster", "DeleteSelf")


def validate_rayjob_metadata(metadata: Mapping[str, Any]) -> str | None:
    """ValidateRayJobMetadata: name ≤ 47 bytes (its cluster adds "-xxxxx") and a DNS-1035 label."""
    name = as_text(metadata.get("name"))
    if go_len(name) > MAX_RAYJOB_NAME_LENGTH:
        return f"The RayJob metadata is invalid: RayJob name should be no more than {MAX_RAYJOB_NAME_LENGTH} characters"
    if errs := is_dns1035_label(name):
        return f"The RayJob metadata is invalid: RayJob name should be a valid DNS1035 label: {go_list(errs)}"
    return None


def validate_rayjob_status(rayjob: Mapping[str, Any]) -> str | None:
    """ValidateRayJobStatus: Waiting exists only in InteractiveMode."""
    if (
        dig(rayjob, "status", "jobDeploymentStatus") == "Waiting"
        and dig(rayjob, "spec", "submissionMode") != "InteractiveMode"
    ):
        return "The RayJob status is invalid: JobDeploymentStatus cannot be `Waiting` when SubmissionMode is not InteractiveMode"
    return None


def _yaml_kind(value: Any) -> str:
    """The JSON kind encoding/json names in an UnmarshalTypeError."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return "array" if isinstance(value, list) else "string"


def unmarshal_runtime_env_yaml(text: str) -> str | None:
    """dashboardclient.UnmarshalRuntimeEnvYAML's error, or None: the first YAML document must be a mapping
    (or empty). Type errors carry Go's exact text; for syntax errors the go-yaml detail after "yaml: " is
    PyYAML's wording, which can differ from go-yaml's."""
    prefix = f"failed to unmarshal RuntimeEnvYAML: {text}: "
    try:
        value = next(iter(yaml.safe_load_all(text)), None)  # go-yaml v2 reads the first document only
    except yaml.MarkedYAMLError as exc:
        where = f"line {exc.problem_mark.line + 1}: " if exc.problem_mark is not None else ""
        return f"{prefix}error converting YAML to JSON: yaml: {where}{exc.problem or exc}"
    except yaml.YAMLError as exc:
        return f"{prefix}error converting YAML to JSON: yaml: {exc}"
    if value is None or isinstance(value, dict):
        return None
    return (
        f"{prefix}error unmarshaling JSON: while decoding JSON: json: cannot unmarshal {_yaml_kind(value)} "
        "into Go value of type types.RuntimeEnvType"
    )


def _validate_deletion_condition(condition: Mapping[str, Any]) -> str | None:
    """validateDeletionCondition: exactly one of jobStatus / jobDeploymentStatus, ttlSeconds ≥ 0."""
    has_job, has_deployment = condition.get("jobStatus") is not None, condition.get("jobDeploymentStatus") is not None
    if has_job and has_deployment:
        return "cannot set both JobStatus and JobDeploymentStatus at the same time"
    if not has_job and not has_deployment:
        return "exactly one of JobStatus and JobDeploymentStatus must be set"
    if (as_int(condition.get("ttlSeconds")) or 0) < 0:
        return "TTLSeconds must be non-negative"
    return None


def _validate_ttl_consistency(ttls: Mapping[str, int], condition_type: str, condition_value: str) -> list[str]:
    """validateTTLConsistency: Workers ≤ Cluster ≤ Self within one condition."""
    errors, previous = [], None
    for policy in _DELETION_ORDER:
        if policy not in ttls:
            continue
        if previous is not None and ttls[policy] < previous[1]:
            errors.append(
                f"for {condition_type} '{condition_value}': {policy} TTL ({ttls[policy]}) must be >= "
                f"{previous[0]} TTL ({previous[1]})"
            )
        previous = (policy, ttls[policy])
    return errors


def _validate_deletion_rules(spec: Mapping[str, Any], rules: list[Any]) -> str | None:
    """validateDeletionRules: every problem, joined by newlines (errors.Join). Go visits its condition maps
    in random order; here the order of first appearance is used, JobStatus groups before JobDeploymentStatus."""
    selector_mode = bool(as_map(spec.get("clusterSelector")))
    autoscaling = is_autoscaling_enabled(spec.get("rayClusterSpec"))
    groups: dict[tuple[str, str], dict[str, int]] = {}
    errors: list[str] = []
    for index, raw in enumerate(rules):
        rule, where = as_map(raw), f"deletionRules[{index}]"
        condition, policy = as_map(rule.get("condition")), as_text(rule.get("policy"))
        if error := _validate_deletion_condition(condition):
            errors.append(f"{where}: {error}")
            continue
        if selector_mode and policy in ("DeleteCluster", "DeleteWorkers"):
            errors.append(f"{where}: DeletionPolicyType '{policy}' not supported when ClusterSelector is set")
            continue
        if autoscaling and policy == "DeleteWorkers":
            errors.append(f"{where}: DeletionPolicyType 'DeleteWorkers' not supported with autoscaling enabled")
            continue
        kind = "JobStatus" if condition.get("jobStatus") is not None else "JobDeploymentStatus"
        status = as_text(condition.get("jobStatus" if kind == "JobStatus" else "jobDeploymentStatus"))
        ttls = groups.setdefault((kind, status), {})
        if policy in ttls:
            errors.append(f"{where}: duplicate rule for DeletionPolicyType '{policy}' and {kind} '{status}'")
            continue
        ttls[policy] = as_int(condition.get("ttlSeconds")) or 0
    for wanted in ("JobStatus", "JobDeploymentStatus"):
        for (kind, status), ttls in groups.items():
            if kind == wanted:
                errors += _validate_ttl_consistency(ttls, kind, status)
    return "\n".join(errors) or None


def _validate_legacy_deletion_policies(spec: Mapping[str, Any], strategy: Mapping[str, Any]) -> str | None:
    """validateLegacyDeletionPolicies (onSuccess / onFailure)."""
    if strategy.get("onSuccess") is None or strategy.get("onFailure") is None:
        return (
            "both DeletionStrategy.OnSuccess and DeletionStrategy.OnFailure must be set when using the legacy "
            "deletion policy fields of DeletionStrategy"
        )
    on_success, on_failure = dig(strategy, "onSuccess", "policy"), dig(strategy, "onFailure", "policy")
    if on_success is None:
        return "the DeletionPolicyType field of DeletionStrategy.OnSuccess cannot be unset when DeletionStrategy is enabled"
    if on_failure is None:
        return "the DeletionPolicyType field of DeletionStrategy.OnFailure cannot be unset when DeletionStrategy is enabled"
    if as_map(spec.get("clusterSelector")):
        if on_success in ("DeleteCluster", "DeleteWorkers"):
            return f"the ClusterSelector mode doesn't support DeletionStrategy={as_text(on_success)} on success"
        if on_failure in ("DeleteCluster", "DeleteWorkers"):
            return f"the ClusterSelector mode doesn't support DeletionStrategy={as_text(on_failure)} on failure"
    if "DeleteWorkers" in (on_success, on_failure) and is_autoscaling_enabled(spec.get("rayClusterSpec")):
        return "DeletionStrategy=DeleteWorkers currently does not support RayCluster with autoscaling enabled"
    if spec.get("shutdownAfterJobFinishes") is True and "DeleteNone" in (on_success, on_failure):
        # Go's typo ("Finshes") is part of the message.
        return _INVALID_SPEC + "shutdownAfterJobFinshes is set to 'true' while deletion policy is 'DeleteNone'"
    return None


def _validate_deletion_configuration(spec: Mapping[str, Any]) -> str | None:
    """validateDeletionConfiguration: TTL needs shutdown; a deletionStrategy is legacy xor rules."""
    shutdown = spec.get("shutdownAfterJobFinishes") is True
    if not shutdown and (as_int(spec.get("ttlSecondsAfterFinished")) or 0) > 0:
        return _INVALID_SPEC + "a RayJob with shutdownAfterJobFinishes set to false cannot have TTLSecondsAfterFinished"
    if spec.get("deletionStrategy") is None:
        return None
    if not feature_enabled(RAY_JOB_DELETION_POLICY):
        return "RayJobDeletionPolicy feature gate must be enabled to use DeletionStrategy"
    strategy = as_map(spec.get("deletionStrategy"))
    legacy = strategy.get("onSuccess") is not None or strategy.get("onFailure") is not None
    rules = as_list(strategy.get("deletionRules"))
    if rules and shutdown:
        return (
            _INVALID_SPEC
            + "spec.shutdownAfterJobFinishes and spec.deletionStrategy.deletionRules are mutually exclusive"
        )
    if rules and legacy:
        return _INVALID_SPEC + "Cannot use both legacy onSuccess/onFailure fields and deletionRules simultaneously"
    if legacy:
        return _validate_legacy_deletion_policies(spec, strategy)
    if rules:
        return _validate_deletion_rules(spec, rules)
    return (
        _INVALID_SPEC
        + "DeletionStrategy requires either BOTH onSuccess and onFailure, OR the deletionRules field (cannot be empty)"
    )


def _validate_cluster_source(spec: Mapping[str, Any], mode: str, backoff: int | None) -> str | None:
    """rayClusterSpec / clusterSelector. Both set is accepted: KubeRay uses the selector and ignores the spec
    (which is still validated below)."""
    selector = as_map(spec.get("clusterSelector"))
    if spec.get("suspend") is True and selector:
        return _INVALID_SPEC + "the ClusterSelector mode doesn't support the suspend operation"
    if spec.get("rayClusterSpec") is None and not selector:
        return _INVALID_SPEC + "one of RayClusterSpec or ClusterSelector must be set"
    if selector:
        if not as_text(selector.get(RAY_JOB_CLUSTER_SELECTOR_KEY)):
            return "cluster name in ClusterSelector should not be empty"
        if mode == "SidecarMode":
            return "ClusterSelector is not supported in SidecarMode"
        if backoff is not None and backoff > 0:
            return _INVALID_SPEC + "BackoffLimit is incompatible with ClusterSelector mode"
    return None


def _validate_submission_mode(spec: Mapping[str, Any], mode: str, backoff: int | None) -> str | None:
    if mode == "InteractiveMode" and backoff is not None and backoff > 0:
        return _INVALID_SPEC + "BackoffLimit is incompatible with InteractiveMode"
    if mode != "SidecarMode":
        return None
    if spec.get("submitterPodTemplate") is not None:
        return "Currently, SidecarMode doesn't support SubmitterPodTemplate"
    if spec.get("submitterConfig") is not None:
        return "Currently, SidecarMode doesn't support SubmitterConfig"
    restart = as_text(dig(spec, "rayClusterSpec", "headGroupSpec", "template", "spec", "restartPolicy"))
    if restart not in ("", "Never"):
        return "restartPolicy for head Pod should be Never or unset when using SidecarMode"
    return None


def validate_rayjob_spec(rayjob: Mapping[str, Any]) -> str | None:
    """ValidateRayJobSpec, in KubeRay's order."""
    spec = as_map(rayjob.get("spec"))
    if spec.get("suspend") is True and spec.get("shutdownAfterJobFinishes") is not True:
        return _INVALID_SPEC + "a RayJob with shutdownAfterJobFinishes set to false is not allowed to be suspended"
    if (as_int(spec.get("ttlSecondsAfterFinished")) or 0) < 0:
        return _INVALID_SPEC + "TTLSecondsAfterFinished must be a non-negative integer"
    if error := _validate_deletion_configuration(spec):
        return error
    mode, backoff = as_text(spec.get("submissionMode")), as_int(spec.get("backoffLimit"))
    if error := _validate_cluster_source(spec, mode, backoff) or _validate_submission_mode(spec, mode, backoff):
        return error
    cluster_spec = spec.get("rayClusterSpec")
    if cluster_spec is not None:
        if is_k8s_auth_enabled(as_map(cluster_spec).get("authOptions")):
            return _INVALID_SPEC + "K8s token auth mode is currently not supported for RayJob"
        if error := validate_raycluster_spec(cluster_spec, dig(rayjob, "metadata", "annotations")):
            return _INVALID_SPEC + error
    if error := unmarshal_runtime_env_yaml(as_text(spec.get("runtimeEnvYAML"))):
        return error
    for field in ("activeDeadlineSeconds", "preRunningDeadlineSeconds"):
        value = as_int(spec.get(field))
        if value is not None and value <= 0:
            return _INVALID_SPEC + f"{field} must be a positive integer"
    if backoff is not None and backoff < 0:
        return _INVALID_SPEC + "backoffLimit must be a positive integer"
    return None


def validate_rayjob(rayjob: Mapping[str, Any]) -> ValidationFailure | None:
    """validateRayJob: metadata, spec, status in that order; the first failure with its event reason
    (InvalidRayJobMetadata / InvalidRayJobSpec / InvalidRayJobStatus), or None."""
    checks: tuple[tuple[Callable[[], str | None], str], ...] = (
        (lambda: validate_rayjob_metadata(as_map(rayjob.get("metadata"))), "InvalidRayJobMetadata"),
        (lambda: validate_rayjob_spec(rayjob), "InvalidRayJobSpec"),
        (lambda: validate_rayjob_status(rayjob), "InvalidRayJobStatus"),
    )
    for check, reason in checks:
        if (error := check()) is not None:
            return ValidationFailure(reason, error)
    return None
