"""validateRayJob (rayjob_controller.go): metadata, spec and status checks run before every reconcile.

The rules are KubeRay's (utils/validation.go). When ``kuberay_provider.core.validation.validate_manifest``
is available its KubeRay rules (``kuberay:*``) are used; schema rules are left to the API server, which
already enforced them on admission. Otherwise a built-in subset of KubeRay's checks runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import yaml

from . import kuberay as k

MAX_RAYJOB_NAME_LENGTH = 47  # MaxRayJobNameLength = 53 - 6
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?\Z")


@dataclass(frozen=True)
class ValidationFailure:
    event_reason: str  # InvalidRayJobMetadata | InvalidRayJobSpec | InvalidRayJobStatus
    message: str


def _external_validator() -> Callable[[Mapping[str, Any]], list[Any]] | None:
    try:
        from kuberay_provider.core.validation import validate_manifest  # type: ignore[attr-defined]
    except ImportError:
        return None
    return validate_manifest


def _check_metadata(rayjob: Mapping[str, Any]) -> str | None:
    name = rayjob["metadata"]["name"]
    if len(name) > MAX_RAYJOB_NAME_LENGTH:
        return f"The RayJob metadata is invalid: RayJob name should be no more than {MAX_RAYJOB_NAME_LENGTH} characters"
    if not _DNS1035.match(name):
        return f"The RayJob metadata is invalid: RayJob name should be a valid DNS1035 label: {name!r}"
    return None


def _check_deletion_configuration(spec: Mapping[str, Any]) -> str | None:
    """validateDeletionConfiguration (the structural rules; TTL ordering is left to the core validator)."""
    if not spec.get("shutdownAfterJobFinishes") and int(spec.get("ttlSecondsAfterFinished") or 0) > 0:
        return "The RayJob spec is invalid: a RayJob with shutdownAfterJobFinishes set to false cannot have TTLSecondsAfterFinished"
    strategy = spec.get("deletionStrategy")
    if strategy is None:
        return None
    legacy = strategy.get("onSuccess") is not None or strategy.get("onFailure") is not None
    rules = bool(strategy.get("deletionRules"))
    if rules and spec.get("shutdownAfterJobFinishes"):
        return "The RayJob spec is invalid: spec.shutdownAfterJobFinishes and spec.deletionStrategy.deletionRules are mutually exclusive"
    if rules and legacy:
        return "The RayJob spec is invalid: Cannot use both legacy onSuccess/onFailure fields and deletionRules simultaneously"
    if legacy:
        if strategy.get("onSuccess") is None or strategy.get("onFailure") is None:
            return "both DeletionStrategy.OnSuccess and DeletionStrategy.OnFailure must be set when using the legacy deletion policy fields of DeletionStrategy"
        policies = (strategy["onSuccess"].get("policy"), strategy["onFailure"].get("policy"))
        if None in policies:
            return "the DeletionPolicyType field of DeletionStrategy.OnSuccess/OnFailure cannot be unset when DeletionStrategy is enabled"
        if spec.get("shutdownAfterJobFinishes") and "DeleteNone" in policies:
            return "The RayJob spec is invalid: shutdownAfterJobFinshes is set to 'true' while deletion policy is 'DeleteNone'"
        return None
    if not rules:
        return "The RayJob spec is invalid: DeletionStrategy requires either BOTH onSuccess and onFailure, OR the deletionRules field (cannot be empty)"
    for i, rule in enumerate(strategy["deletionRules"]):
        condition = rule.get("condition") or {}
        if ("jobStatus" in condition) == ("jobDeploymentStatus" in condition):
            return f"deletionRules[{i}]: exactly one of JobStatus and JobDeploymentStatus must be set"
    return None


def _check_spec(spec: Mapping[str, Any]) -> str | None:
    """ValidateRayJobSpec, in KubeRay's order."""
    mode = spec.get("submissionMode") or "K8sJobMode"
    backoff = spec.get("backoffLimit")
    if spec.get("suspend") and not spec.get("shutdownAfterJobFinishes"):
        return "The RayJob spec is invalid: a RayJob with shutdownAfterJobFinishes set to false is not allowed to be suspended"
    if int(spec.get("ttlSecondsAfterFinished") or 0) < 0:
        return "The RayJob spec is invalid: TTLSecondsAfterFinished must be a non-negative integer"
    if error := _check_deletion_configuration(spec):
        return error
    selector = spec.get("clusterSelector") or {}
    if spec.get("suspend") and selector:
        return "The RayJob spec is invalid: the ClusterSelector mode doesn't support the suspend operation"
    if spec.get("rayClusterSpec") is None and not selector:
        return "The RayJob spec is invalid: one of RayClusterSpec or ClusterSelector must be set"
    if selector:
        if not selector.get(k.CLUSTER_SELECTOR_KEY):
            return "cluster name in ClusterSelector should not be empty"
        if mode == "SidecarMode":
            return "ClusterSelector is not supported in SidecarMode"
        if backoff is not None and backoff > 0:
            return "The RayJob spec is invalid: BackoffLimit is incompatible with ClusterSelector mode"
    if mode == "InteractiveMode" and backoff is not None and backoff > 0:
        return "The RayJob spec is invalid: BackoffLimit is incompatible with InteractiveMode"
    if mode == "SidecarMode":
        if spec.get("submitterPodTemplate") is not None:
            return "Currently, SidecarMode doesn't support SubmitterPodTemplate"
        if spec.get("submitterConfig") is not None:
            return "Currently, SidecarMode doesn't support SubmitterConfig"
    try:
        yaml.safe_load(spec.get("runtimeEnvYAML") or "")
    except yaml.YAMLError as exc:
        return f"failed to unmarshal RuntimeEnvYAML: {spec.get('runtimeEnvYAML')}: {exc}"
    for field in ("activeDeadlineSeconds", "preRunningDeadlineSeconds"):
        if spec.get(field) is not None and spec[field] <= 0:
            return f"The RayJob spec is invalid: {field} must be a positive integer"
    if backoff is not None and backoff < 0:
        return "The RayJob spec is invalid: backoffLimit must be a positive integer"
    return None


def _check_status(rayjob: Mapping[str, Any]) -> str | None:
    """ValidateRayJobStatus."""
    status = rayjob.get("status") or {}
    mode = (rayjob.get("spec") or {}).get("submissionMode") or "K8sJobMode"
    if status.get("jobDeploymentStatus") == "Waiting" and mode != "InteractiveMode":
        return "The RayJob status is invalid: JobDeploymentStatus cannot be `Waiting` when SubmissionMode is not InteractiveMode"
    return None


def validate_rayjob(rayjob: Mapping[str, Any]) -> ValidationFailure | None:
    """The first failing check, as KubeRay reports it (event reason + message), or None."""
    if error := _check_metadata(rayjob):
        return ValidationFailure("InvalidRayJobMetadata", error)
    external = _external_validator()
    if external is not None:
        errors = [e for e in external(dict(rayjob)) if str(getattr(e, "rule", "")).startswith("kuberay:")]
        if errors:
            reason = "InvalidRayJobMetadata" if errors[0].path.startswith("metadata") else "InvalidRayJobSpec"
            return ValidationFailure(reason, "; ".join(e.message for e in errors))
    elif error := _check_spec(rayjob.get("spec") or {}):
        return ValidationFailure("InvalidRayJobSpec", error)
    if error := _check_status(rayjob):
        return ValidationFailure("InvalidRayJobStatus", error)
    return None
