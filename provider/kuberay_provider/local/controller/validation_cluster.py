"""KubeRay v1.7.0's RayCluster validation (utils/validation.go), ported check for check, and how
rayClusterReconcile (raycluster_controller.go) reports it.

Each validate_* returns the first error Go would return, with Go's text, or None. Objects are the
API server's: CRD defaults (minReplicas 0, maxReplicas 2147483647, ...) already applied.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .validation_cluster_options import (
    validate_auth_options,
    validate_gcs_fault_tolerance_backend,
    validate_history_server_options,
    validate_network_policy,
    validate_tls_options,
)
from .validation_common import (
    KUBERAY_GEN_AUTOSCALER_START_CMD,
    MAX_RAYCLUSTER_NAME_LENGTH,
    RAY_CLUSTER_MTLS,
    RAY_CLUSTER_NETWORK_POLICY,
    RAY_ENABLE_AUTOSCALER_V2,
    RAY_EXTERNAL_STORAGE_NS_ANNOTATION_KEY,
    RAY_FT_ENABLED_ANNOTATION_KEY,
    RAY_JOB_DELETION_POLICY,
    RAY_ORIGINATED_FROM_CRD_LABEL_KEY,
    RAY_REDIS_ADDRESS,
    REDIS_PASSWORD,
    REDIS_USERNAME,
    as_int,
    as_list,
    as_map,
    as_text,
    containers,
    crd_type,
    dig,
    env_var_by_name,
    env_var_exists,
    feature_enabled,
    is_autoscaling_enabled,
    is_autoscaling_v1_enabled,
    is_autoscaling_v2_enabled,
    is_gcs_fault_tolerance_enabled,
    pod_spec,
    ray_container,
)
from .validation_go import (
    go_len,
    go_list,
    is_dns1035_label,
    is_qualified_name,
    is_valid_label_value,
    parse_generic_version,
    version_less_than,
)


def validate_raycluster_status(cluster: Mapping[str, Any]) -> str | None:
    """ValidateRayClusterStatus: Suspending and Suspended are never both True."""
    true = {
        as_map(c).get("type")
        for c in as_list(dig(cluster, "status", "conditions"))
        if as_map(c).get("status") == "True"
    }
    if {"RayClusterSuspending", "RayClusterSuspended"} <= true:
        return "invalid RayCluster State: rayv1.RayClusterSuspending and rayv1.RayClusterSuspended conditions should not be both true"
    return None


def validate_raycluster_metadata(metadata: Mapping[str, Any]) -> str | None:
    """ValidateRayClusterMetadata: name ≤ 53 bytes and a DNS-1035 label."""
    name = as_text(metadata.get("name"))
    if go_len(name) > MAX_RAYCLUSTER_NAME_LENGTH:
        return f"RayCluster name should be no more than {MAX_RAYCLUSTER_NAME_LENGTH} characters"
    if errs := is_dns1035_label(name):
        return f"RayCluster name should be a valid DNS1035 label: {go_list(errs)}"
    return None


def validate_raycluster_upgrade_options(cluster: Mapping[str, Any]) -> str | None:
    """ValidateRayClusterUpgradeOptions: type Recreate or None, and only on clusters a user made directly."""
    strategy_type = dig(cluster, "spec", "upgradeStrategy", "type")
    if strategy_type is None:
        return None
    if strategy_type not in ("Recreate", "None"):
        return (
            f"The RayCluster spec is invalid: Spec.UpgradeStrategy.Type value {as_text(strategy_type)} is invalid, "
            "valid options are Recreate or None"
        )
    creator = crd_type(as_text(as_map(dig(cluster, "metadata", "labels")).get(RAY_ORIGINATED_FROM_CRD_LABEL_KEY)))
    if creator in ("RayJob", "RayService"):
        return f"upgradeStrategy cannot be set when RayCluster is created by {creator}"
    return None


def _validate_group_resources(group_name: str, params: Mapping[str, Any], resources: Any) -> str | None:
    """validateRayGroupResources: resources in rayStartParams or in `resources`, not both."""
    in_params = any(as_text(params.get(key)) != "" for key in ("num-cpus", "num-gpus", "memory", "resources"))
    if in_params and as_map(resources):
        return f"resource fields should not be set in both rayStartParams and Resources for {group_name} group; please use only one"
    return None


def _validate_group_labels(group_name: str, params: Mapping[str, Any], labels: Any) -> str | None:
    """validateRayGroupLabels. Go walks the map in random order; here it is the object's key order."""
    if "labels" in params:
        return f"rayStartParams['labels'] is not supported for {group_name} group; please use the top-level Labels field instead"
    errors = []
    for key, value in as_map(labels).items():
        errors += [
            f"invalid label key for {group_name} group: '{key}', error: {e}" for e in is_qualified_name(as_text(key))
        ]
        text = as_text(value)
        errors += [
            f"invalid label value for key '{key}' in {group_name} group: '{text}', error: {e}"
            for e in is_valid_label_value(text)
        ]
    return "; ".join(errors) if errors else None


def _autoscaler_v2_env_on(spec: Mapping[str, Any]) -> bool:
    env = env_var_by_name(RAY_ENABLE_AUTOSCALER_V2, ray_container(spec.get("headGroupSpec")).get("env"))
    return env is not None and as_text(env.get("value")) in ("1", "true")


def _validate_worker_idle_timeout(group: Mapping[str, Any], name: str, spec: Mapping[str, Any]) -> str | None:
    """validateWorkerGroupIdleTimeout: ≥ 0, and only with autoscaler v2 (option or head env)."""
    timeout = as_int(group.get("idleTimeoutSeconds"))
    if timeout is None:
        return None
    if timeout < 0:
        return f"worker group {name}: idleTimeoutSeconds must be non-negative, got {timeout}"
    if is_autoscaling_v2_enabled(spec) or _autoscaler_v2_env_on(spec):
        return None
    return (
        f"worker group {name}: idleTimeoutSeconds is set, but autoscaler v2 is not enabled. Please set "
        f".spec.autoscalerOptions.version to 'v2' (or set {RAY_ENABLE_AUTOSCALER_V2} environment variable to 'true' "
        "in the head pod if using KubeRay < 1.4.0)"
    )


def _min_ray_version(spec: Mapping[str, Any], minimum: str, what: str) -> str | None:
    """The three rayVersion messages KubeRay gives when a feature needs Ray ≥ ``minimum``."""
    text = as_text(spec.get("rayVersion"))
    if not text:
        return f"{what}, but RayVersion was not specified. Ray version {minimum} or later is required"
    try:
        version = parse_generic_version(text)
    except ValueError as exc:
        return f"{what}, but RayVersion format is invalid: {text}, {exc}"
    if version_less_than(version, parse_generic_version(minimum)):
        return f"{what}, but minimum Ray version is {minimum}, got {text}"
    return None


def _validate_worker_priority(group: Mapping[str, Any], name: str, spec: Mapping[str, Any]) -> str | None:
    """validateWorkerGroupPriority: a non-zero priority needs Ray ≥ 2.56.0 and autoscaler v2."""
    priority = as_int(group.get("priority"))
    if not priority:
        return None
    if error := _min_ray_version(spec, "2.56.0", f"worker group {name}: priority is set"):
        return error
    if is_autoscaling_v2_enabled(spec) or _autoscaler_v2_env_on(spec):
        return None
    return (
        f"worker group {name}: priority is set to {priority}, but autoscaler v2 is not enabled. Priority is only "
        "supported with autoscaler v2 enabled"
    )


def _validate_worker_group(group: Mapping[str, Any], spec: Mapping[str, Any], autoscaling: bool) -> str | None:
    """The per-group body of ValidateRayClusterSpec's worker loop."""
    name = as_text(group.get("groupName"))
    if not containers(group):
        return "workerGroupSpec should have at least one container"
    low, high = as_int(group.get("minReplicas")), as_int(group.get("maxReplicas"))
    # The CRD defaults both (0, 2147483647) and our API server applies it, so this fires only for objects
    # that skipped defaulting (the in-memory test API), as it would in KubeRay for such an object.
    if not autoscaling and (low is None or high is None):
        return f"worker group {name} must set both minReplicas and maxReplicas when autoscaling is disabled"
    if low is not None and low < 0:
        return f"worker group {name} has negative minReplicas {low}"
    if high is not None and high < 0:
        return f"worker group {name} has negative maxReplicas {high}"
    if low is not None and high is not None and low > high:
        return f"worker group {name} has minReplicas {low} greater than maxReplicas {high}"
    params = as_map(group.get("rayStartParams"))
    return (
        _validate_group_resources(name, params, group.get("resources"))
        or _validate_group_labels(name, params, group.get("labels"))
        or _validate_worker_idle_timeout(group, name, spec)
        or _validate_worker_priority(group, name, spec)
    )


def _validate_gcs_fault_tolerance(spec: Mapping[str, Any], annotations: Mapping[str, Any]) -> str | None:
    """The GCS fault tolerance block of ValidateRayClusterSpec."""
    options = spec.get("gcsFaultToleranceOptions")
    head = as_map(spec.get("headGroupSpec"))
    head_container, params = ray_container(head), as_map(head.get("rayStartParams"))
    env = head_container.get("env")
    if as_text(annotations.get(RAY_FT_ENABLED_ANNOTATION_KEY)) and options is not None:
        return (
            f"{RAY_FT_ENABLED_ANNOTATION_KEY} annotation and GcsFaultToleranceOptions are both set. "
            "Please use only GcsFaultToleranceOptions to configure GCS fault tolerance"
        )
    if not is_gcs_fault_tolerance_enabled(spec, annotations) and env_var_exists(RAY_REDIS_ADDRESS, env):
        return (
            f"{RAY_REDIS_ADDRESS} is set which implicitly enables GCS fault tolerance, but GcsFaultToleranceOptions "
            "is not set. Please set GcsFaultToleranceOptions to enable GCS fault tolerance"
        )
    if options is not None:
        if as_text(params.get("redis-password")):
            return (
                "cannot set `redis-password` in rayStartParams when GcsFaultToleranceOptions is enabled - use "
                "GcsFaultToleranceOptions.RedisPassword instead"
            )
        if env_var_exists(REDIS_PASSWORD, env):
            return (
                "cannot set `REDIS_PASSWORD` env var in head Pod when GcsFaultToleranceOptions is enabled - use "
                "GcsFaultToleranceOptions.RedisPassword instead"
            )
        if env_var_exists(RAY_REDIS_ADDRESS, env):
            return (
                "cannot set `RAY_REDIS_ADDRESS` env var in head Pod when GcsFaultToleranceOptions is enabled - use "
                "GcsFaultToleranceOptions.RedisAddress instead"
            )
        if as_text(annotations.get(RAY_EXTERNAL_STORAGE_NS_ANNOTATION_KEY)):
            return (
                "cannot set `ray.io/external-storage-namespace` annotation when GcsFaultToleranceOptions is enabled - "
                "use GcsFaultToleranceOptions.ExternalStorageNamespace instead"
            )
        if error := validate_gcs_fault_tolerance_backend(options, head_container, pod_spec(head).get("volumes")):
            return error
    if as_text(params.get("redis-username")) or env_var_exists(REDIS_USERNAME, env):
        return (
            "cannot set redis username in rayStartParams or environment variables - use "
            "GcsFaultToleranceOptions.RedisUsername instead"
        )
    return None


def _validate_autoscaler(spec: Mapping[str, Any], autoscaling: bool) -> str | None:
    """Suspended groups, autoscaler v1/v2 settings and autoscalerOptions, in ValidateRayClusterSpec's order."""
    workers = [as_map(g) for g in as_list(spec.get("workerGroupSpecs"))]
    suspended = [as_text(g.get("groupName")) for g in workers if g.get("suspend") is True]
    if not feature_enabled(RAY_JOB_DELETION_POLICY) and suspended:
        return (
            f"worker group {suspended[0]} can be suspended only when the RayJobDeletionPolicy feature gate is enabled"
        )
    head = as_map(spec.get("headGroupSpec"))
    head_env = ray_container(head).get("env")
    v2_env = env_var_by_name(RAY_ENABLE_AUTOSCALER_V2, head_env)
    if not autoscaling and v2_env is not None and as_text(v2_env.get("value")) in ("1", "true"):
        return (
            f"environment variable {RAY_ENABLE_AUTOSCALER_V2} cannot be set to '{as_text(v2_env.get('value'))}' when "
            "enableInTreeAutoscaling is false. Please set enableInTreeAutoscaling: true to use autoscaler v2"
        )
    options = spec.get("autoscalerOptions")
    if autoscaling:
        if suspended:
            return f"worker group {suspended[0]} cannot be suspended with Autoscaler enabled"
        if options is not None and as_map(options).get("version") is not None and v2_env is not None:
            return (
                f"both .spec.autoscalerOptions.version and head Pod env var {RAY_ENABLE_AUTOSCALER_V2} are set, "
                "please only use the former"
            )
        if is_autoscaling_v2_enabled(spec):
            if as_text(pod_spec(head).get("restartPolicy")) not in ("", "Never"):
                return "restartPolicy for head Pod should be Never or unset when using autoscaler V2"
            for group in workers:
                if as_text(pod_spec(group).get("restartPolicy")) not in ("", "Never"):
                    return f"restartPolicy for worker group {as_text(group.get('groupName'))} should be Never or unset when using autoscaler V2"
    idle = as_int(as_map(options).get("idleTimeoutSeconds"))
    if idle is not None and idle < 0:
        return f"autoscalerOptions.idleTimeoutSeconds must be non-negative, got {idle}"
    if options is not None and env_var_exists(KUBERAY_GEN_AUTOSCALER_START_CMD, as_map(options).get("env")):
        return (
            f"autoscalerOptions.env must not contain {KUBERAY_GEN_AUTOSCALER_START_CMD}: it is managed by KubeRay "
            "and injected automatically into the autoscaler container"
        )
    return None


def validate_raycluster_spec(spec: Any, annotations: Any) -> str | None:
    """ValidateRayClusterSpec(spec, annotations): ``annotations`` are those of the object holding the spec."""
    spec, annotations = as_map(spec), as_map(annotations)
    head = as_map(spec.get("headGroupSpec"))
    if not containers(head):
        return "headGroupSpec should have at least one container"
    head_params = as_map(head.get("rayStartParams"))
    if error := _validate_group_resources("Head", head_params, head.get("resources")):
        return error
    if error := _validate_group_labels("Head", head_params, head.get("labels")):
        return error
    autoscaling = is_autoscaling_enabled(spec)
    for group in as_list(spec.get("workerGroupSpecs")):
        if error := _validate_worker_group(as_map(group), spec, autoscaling):
            return error
    if error := _validate_gcs_fault_tolerance(spec, annotations):
        return error
    if error := _validate_autoscaler(spec, autoscaling):
        return error
    if error := validate_history_server_options(spec):
        return error
    if error := validate_auth_options(spec):
        return error
    if spec.get("networkPolicy") is not None and not feature_enabled(RAY_CLUSTER_NETWORK_POLICY):
        return "spec.networkPolicy requires the RayClusterNetworkPolicy feature gate to be enabled"
    if error := validate_network_policy(spec):
        return error
    if spec.get("tlsOptions") is not None and not feature_enabled(RAY_CLUSTER_MTLS):
        return "spec.tlsOptions requires the RayClusterMTLS feature gate to be enabled"
    return validate_tls_options(spec)


def autoscaler_v1_restart_policy_warning(spec: Any) -> str | None:
    """rayClusterReconcile's non-fatal check: autoscaler v1 worker groups should restart Never (or unset)."""
    if not (is_autoscaling_enabled(spec) and is_autoscaling_v1_enabled(spec)):
        return None
    names = [
        as_text(as_map(g).get("groupName"))
        for g in as_list(as_map(spec).get("workerGroupSpecs"))
        if as_text(pod_spec(g).get("restartPolicy")) not in ("", "Never")
    ]
    if not names:
        return None
    return f"restartPolicy for worker groups [{', '.join(names)}] should be Never or unset when using autoscaler V1"


@dataclass(frozen=True)
class RayClusterCheck:
    """A failed rayClusterReconcile validation: the Warning event to record, whether the pass is retried
    (only the status check returns an error, so only it is requeued; the others wait for a change), and
    whether metadata and spec had passed (the autoscaler-v1 warning is recorded between those and the rest)."""

    event_reason: str
    message: str  # the Go error
    event_message: str
    requeue: bool = False
    spec_validated: bool = False


def check_raycluster(cluster: Mapping[str, Any]) -> RayClusterCheck | None:
    """rayClusterReconcile's validation steps in order (the cert-manager check needs the off-by-default
    RayClusterMTLS gate and is left out: the local plane has no cert-manager to ask about)."""
    meta = as_map(cluster.get("metadata"))
    ref = f"{as_text(meta.get('namespace'))}/{as_text(meta.get('name'))}"
    if error := validate_raycluster_metadata(meta):
        return RayClusterCheck("InvalidRayClusterMetadata", error, f"The RayCluster metadata is invalid {ref}: {error}")
    if error := validate_raycluster_spec(cluster.get("spec"), meta.get("annotations")):
        return RayClusterCheck("InvalidRayClusterSpec", error, f"The RayCluster spec is invalid {ref}: {error}")
    if error := validate_raycluster_upgrade_options(cluster):
        message = f"The RayCluster UpgradeStrategy is invalid {ref}: {error}"
        return RayClusterCheck("InvalidRayClusterSpec", error, message, spec_validated=True)
    if error := validate_raycluster_status(cluster):
        message = f"The RayCluster status is invalid {ref}, {error}"
        return RayClusterCheck("InvalidRayClusterStatus", error, message, requeue=True, spec_validated=True)
    return None
