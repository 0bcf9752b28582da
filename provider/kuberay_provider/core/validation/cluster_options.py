"""A RayCluster spec's optional features: GCS fault tolerance, autoscaler, auth, feature gates (ValidateRayClusterSpec, part 2).

Part of the port of KubeRay v1.7.0's validation; see ``rules.py`` for the source and the conventions.
"""

from __future__ import annotations

from typing import Any

from .cluster_spec import ClusterSpec, min_ray_version_problem
from .common import (
    EXTERNAL_STORAGE_NS_ANNOTATION,
    FEATURE_GATES,
    FT_ENABLED_ANNOTATION,
    KUBERAY_GEN_AUTOSCALER_START_CMD,
    RAY_ENABLE_AUTOSCALER_V2,
    RAY_REDIS_ADDRESS,
    REDIS_PASSWORD,
    REDIS_USERNAME,
    Errors,
    as_int,
    as_map,
    as_str,
    dig,
    find_env,
    rule_error,
)


def gcs_fault_tolerance_rules(c: ClusterSpec) -> Errors:
    options = c.spec.get("gcsFaultToleranceOptions")
    options_path = c.at("gcsFaultToleranceOptions")
    head_params = as_map(c.head.get("rayStartParams"))
    ft_annotation = as_str(c.annotations.get(FT_ENABLED_ANNOTATION))
    if ft_annotation and options is not None:
        yield rule_error(
            options_path,
            "ft-annotation-with-gcs-ft-options",
            f"{FT_ENABLED_ANNOTATION} annotation and GcsFaultToleranceOptions are both set. Please use only "
            "GcsFaultToleranceOptions to configure GCS fault tolerance",
        )
    has_redis_address_env = find_env(c.head_env, RAY_REDIS_ADDRESS) is not None
    if ft_annotation.lower() != "true" and options is None and has_redis_address_env:
        yield rule_error(
            c.head_env_path,
            "redis-address-without-gcs-ft",
            f"{RAY_REDIS_ADDRESS} is set which implicitly enables GCS fault tolerance, but "
            "GcsFaultToleranceOptions is not set. Please set GcsFaultToleranceOptions to enable GCS fault tolerance",
        )
    if isinstance(options, dict):
        yield from _gcs_fault_tolerance_option_rules(c, options, options_path, head_params, has_redis_address_env)
    if head_params.get("redis-username") or find_env(c.head_env, REDIS_USERNAME) is not None:
        yield rule_error(
            c.at("headGroupSpec.rayStartParams"),
            "redis-username",
            "cannot set redis username in rayStartParams or environment variables - use "
            "GcsFaultToleranceOptions.RedisUsername instead",
        )


def _gcs_fault_tolerance_option_rules(
    c: ClusterSpec, options: dict[str, Any], path: str, head_params: dict[str, Any], has_redis_address_env: bool
) -> Errors:
    def use_instead(what: str, field: str) -> str:
        return (
            f"cannot set {what} when GcsFaultToleranceOptions is enabled - use GcsFaultToleranceOptions.{field} instead"
        )

    if head_params.get("redis-password"):
        yield rule_error(
            c.at("headGroupSpec.rayStartParams.redis-password"),
            "redis-password-with-gcs-ft",
            use_instead("`redis-password` in rayStartParams", "RedisPassword"),
        )
    if find_env(c.head_env, REDIS_PASSWORD) is not None:
        yield rule_error(
            c.head_env_path,
            "redis-password-with-gcs-ft",
            use_instead("`REDIS_PASSWORD` env var in head Pod", "RedisPassword"),
        )
    if has_redis_address_env:
        yield rule_error(
            c.head_env_path,
            "redis-address-with-gcs-ft",
            use_instead("`RAY_REDIS_ADDRESS` env var in head Pod", "RedisAddress"),
        )
    if as_str(c.annotations.get(EXTERNAL_STORAGE_NS_ANNOTATION)):
        yield rule_error(
            "metadata.annotations",
            "external-storage-namespace-with-gcs-ft",
            use_instead("`ray.io/external-storage-namespace` annotation", "ExternalStorageNamespace"),
        )
    backend = as_str(options.get("backend")) or "redis"
    # The embedded backend's own checks only run once its (default off) gate is on, so they are unreachable.
    if backend == "rocksdb" and not FEATURE_GATES["GCSFaultToleranceEmbeddedStorage"]:
        yield rule_error(
            f"{path}.backend",
            "feature-gate-disabled",
            "the embedded RocksDB GCS fault tolerance backend (GcsFaultToleranceOptions.Backend: 'rocksdb') "
            "requires the GCSFaultToleranceEmbeddedStorage feature gate to be enabled",
        )
    elif backend != "rocksdb" and options.get("storage") is not None:
        yield rule_error(
            f"{path}.storage",
            "gcs-ft-storage-with-redis",
            "cannot set GcsFaultToleranceOptions.Storage when backend is 'redis' - it only applies to the "
            "'rocksdb' backend",
        )


def autoscaler_rules(c: ClusterSpec) -> Errors:
    env_v2 = find_env(c.head_env, RAY_ENABLE_AUTOSCALER_V2)
    options = as_map(c.spec.get("autoscalerOptions"))
    if not c.autoscaling and env_v2 is not None and env_v2.get("value") in ("1", "true"):
        yield rule_error(
            c.head_env_path,
            "autoscaler-v2-env-without-autoscaling",
            f"environment variable {RAY_ENABLE_AUTOSCALER_V2} cannot be set to '{env_v2.get('value')}' when "
            "enableInTreeAutoscaling is false. Please set enableInTreeAutoscaling: true to use autoscaler v2",
        )
    if c.autoscaling and options.get("version") is not None and env_v2 is not None:
        yield rule_error(
            c.at("autoscalerOptions.version"),
            "autoscaler-version-and-env",
            f"both .spec.autoscalerOptions.version and head Pod env var {RAY_ENABLE_AUTOSCALER_V2} are set, "
            "please only use the former",
        )
    head_restart = dig(c.head, "template", "spec", "restartPolicy")
    if c.autoscaling and c.autoscaler_v2 and head_restart not in (None, "", "Never"):
        yield rule_error(
            c.at("headGroupSpec.template.spec.restartPolicy"),
            "autoscaler-v2-restart-policy",
            "restartPolicy for head Pod should be Never or unset when using autoscaler V2",
        )
    idle = as_int(options.get("idleTimeoutSeconds"))
    if idle is not None and idle < 0:
        yield rule_error(
            c.at("autoscalerOptions.idleTimeoutSeconds"),
            "negative-idle-timeout",
            f"autoscalerOptions.idleTimeoutSeconds must be non-negative, got {idle}",
        )
    if find_env(options.get("env"), KUBERAY_GEN_AUTOSCALER_START_CMD) is not None:
        yield rule_error(
            c.at("autoscalerOptions.env"),
            "autoscaler-env-managed",
            f"autoscalerOptions.env must not contain {KUBERAY_GEN_AUTOSCALER_START_CMD}: it is managed by "
            "KubeRay and injected automatically into the autoscaler container",
        )


def auth_rules(c: ClusterSpec) -> Errors:
    auth = as_map(c.spec.get("authOptions"))
    k8s_auth = auth.get("enableK8sTokenAuth") is True
    k8s_path = c.at("authOptions.enableK8sTokenAuth")
    if auth.get("mode") != "token":
        if k8s_auth:
            yield rule_error(
                k8s_path,
                "k8s-auth-without-token-mode",
                "authOptions.enableK8sTokenAuth is enabled but authOptions.mode not set to 'token'",
            )
        return
    if (problem := min_ray_version_problem(c, (2, 52, 0), "authOptions.mode is 'token'")) or (
        k8s_auth and (problem := min_ray_version_problem(c, (2, 55, 0), "authOptions.enableK8sTokenAuth is enabled"))
    ):
        yield rule_error(c.at("rayVersion"), "auth-ray-version", problem)
    if k8s_auth and as_str(auth.get("secretName")):
        yield rule_error(
            k8s_path,
            "k8s-auth-with-secret-name",
            "authOptions.enableK8sTokenAuth is enabled and authOptions.secretName is also set",
        )


# Optional features whose (default off) gate refuses them outright; their detailed checks are unreachable.
_GATED_FIELDS = (
    ("historyServerOptions", "RayClusterHistoryServer", "RayClusterHistoryServer feature gate is not enabled"),
    (
        "networkPolicy",
        "RayClusterNetworkPolicy",
        "spec.networkPolicy requires the RayClusterNetworkPolicy feature gate to be enabled",
    ),
    ("tlsOptions", "RayClusterMTLS", "spec.tlsOptions requires the RayClusterMTLS feature gate to be enabled"),
)


def feature_gate_rules(c: ClusterSpec) -> Errors:
    for field, gate, message in _GATED_FIELDS:
        if c.spec.get(field) is not None and not FEATURE_GATES[gate]:
            yield rule_error(c.at(field), "feature-gate-disabled", message)
