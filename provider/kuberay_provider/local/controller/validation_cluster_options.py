"""The optional-feature parts of KubeRay v1.7.0 ValidateRayClusterSpec (utils/validation.go), ported:
validateGcsFaultToleranceBackend, validateCollectorOptions, validateNetworkPolicy, validateTLSOptions,
validateNoConflictingTLSVolumeMount, and its historyServerOptions and authOptions blocks. Each returns
Go's error text, or None.

Only the GCS backend and auth checks are reachable with the default feature gates; the rest sits behind alpha gates
that a stock operator leaves off (ValidateRayClusterSpec refuses those fields before calling them). They
are ported anyway so that turning a gate on in FEATURE_GATES gives KubeRay's answer, not silence.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .validation_common import (
    COLLECTOR_CONTAINER_NAME,
    GCS_FAULT_TOLERANCE_EMBEDDED_STORAGE,
    GCS_STORAGE_MOUNT_PATH,
    GCS_STORAGE_VOLUME_NAME,
    RAY_CLUSTER_HISTORY_SERVER,
    RAY_GCS_STORAGE,
    RAY_GCS_STORAGE_PATH,
    RAY_TLS_CA_CERT,
    RAY_TLS_CERT_MOUNT_PATH,
    RAY_TLS_SERVER_CERT,
    RAY_TLS_SERVER_KEY,
    RAY_TLS_VOLUME_NAME,
    RAY_USE_TLS,
    as_list,
    as_map,
    as_text,
    containers,
    env_var_exists,
    feature_enabled,
    gcs_fault_tolerance_backend,
    is_auth_enabled,
    is_k8s_auth_enabled,
    is_tls_enabled,
    ray_container,
)
from .validation_go import (
    go_list,
    go_quote,
    is_dns1123_label,
    parse_generic_version,
    version_less_than,
)

# constant.go: env vars the collector sidecar gets from KubeRay, and the storage backends' settings.
_COLLECTOR_MANAGED_ENV = (
    "POD_IP",
    "FQ_RAY_IP",
    "RAY_CLUSTER_NAME",
    "RAY_CLUSTER_NAMESPACE",
    "RAY_ROLE",
    "OWNER_KIND",
    "OWNER_NAME",
    "EVENTS_PORT",
)
STORAGE_BACKEND = "STORAGE_BACKEND"
GCS_BUCKET = "GCS_BUCKET"
S3_REGION = "S3_REGION"
AZURE_STORAGE_CONNECTION_STRING = "AZURE_STORAGE_CONNECTION_STRING"
AZURE_STORAGE_ACCOUNT_URL = "AZURE_STORAGE_ACCOUNT_URL"
AZURE_STORAGE_AUTH_MODE = "AZURE_STORAGE_AUTH_MODE"
ALIYUN_BUCKET = "OSS_BUCKET"
ALIYUN_ENDPOINT = "OSS_ENDPOINT"
ALIYUN_REGION = "OSS_REGION"
_TLS_MANAGED_ENV = (RAY_USE_TLS, RAY_TLS_SERVER_CERT, RAY_TLS_SERVER_KEY, RAY_TLS_CA_CERT)
_TLS_HINT = "- the operator manages TLS configuration automatically"


def validate_gcs_fault_tolerance_backend(
    options: Any, head_container: Mapping[str, Any], head_volumes: Any
) -> str | None:
    """validateGcsFaultToleranceBackend: rocksdb refuses redis-only fields and operator-managed env/mounts."""
    opts = as_map(options)
    if gcs_fault_tolerance_backend(opts) != "rocksdb":  # Go's `default:` case is any non-rocksdb value
        if options is not None and opts.get("storage") is not None:
            return "cannot set GcsFaultToleranceOptions.Storage when backend is 'redis' - it only applies to the 'rocksdb' backend"
        return None
    if not feature_enabled(GCS_FAULT_TOLERANCE_EMBEDDED_STORAGE):
        return (
            "the embedded RocksDB GCS fault tolerance backend (GcsFaultToleranceOptions.Backend: 'rocksdb') "
            f"requires the {GCS_FAULT_TOLERANCE_EMBEDDED_STORAGE} feature gate to be enabled"
        )
    if as_text(opts.get("redisAddress")):
        return "cannot set GcsFaultToleranceOptions.RedisAddress when backend is 'rocksdb'"
    if opts.get("redisUsername") is not None:
        return "cannot set GcsFaultToleranceOptions.RedisUsername when backend is 'rocksdb'"
    if opts.get("redisPassword") is not None:
        return "cannot set GcsFaultToleranceOptions.RedisPassword when backend is 'rocksdb'"
    if as_text(opts.get("externalStorageNamespace")):
        return "cannot set GcsFaultToleranceOptions.ExternalStorageNamespace when backend is 'rocksdb'"
    storage = opts.get("storage")
    if (
        storage is not None
        and as_text(as_map(storage).get("claimName"))
        and (
            any(as_map(storage).get(f) is not None for f in ("size", "storageClassName"))
            or as_list(as_map(storage).get("accessModes"))
        )
    ):
        return "GcsFaultToleranceOptions.Storage.ClaimName is mutually exclusive with size, storageClassName, and accessModes"
    env = head_container.get("env")
    if env_var_exists(RAY_GCS_STORAGE, env) or env_var_exists(RAY_GCS_STORAGE_PATH, env):
        return (
            f"cannot set `{RAY_GCS_STORAGE}` or `{RAY_GCS_STORAGE_PATH}` env var in head Pod when the embedded GCS FT "
            "backend is used - these are managed by KubeRay"
        )
    for mount in as_list(head_container.get("volumeMounts")):
        if (
            as_map(mount).get("mountPath") == GCS_STORAGE_MOUNT_PATH
            or as_map(mount).get("name") == GCS_STORAGE_VOLUME_NAME
        ):
            return (
                f"cannot set a volume mount named {go_quote(GCS_STORAGE_VOLUME_NAME)} or mounted at {GCS_STORAGE_MOUNT_PATH} "
                "in the head container when the embedded GCS FT backend is used - it is managed by KubeRay"
            )
    for volume in as_list(head_volumes):
        if as_map(volume).get("name") == GCS_STORAGE_VOLUME_NAME:
            return (
                f"cannot set a volume named {go_quote(GCS_STORAGE_VOLUME_NAME)} in the head Pod when the embedded GCS FT "
                "backend is used - it is managed by KubeRay"
            )
    return None


def validate_collector_options(options: Any) -> str | None:
    """validateCollectorOptions (history server collector sidecar)."""
    if options is None:
        return None
    opts = as_map(options)
    if not as_text(opts.get("image")):
        return "historyServerOptions.collectorOptions.image must be set"
    env = {as_text(as_map(e).get("name")): as_map(e) for e in as_list(opts.get("env"))}  # last one wins, as in Go

    def has_value(name: str) -> bool:
        return name in env and (as_text(env[name].get("value")) != "" or env[name].get("valueFrom") is not None)

    for name in _COLLECTOR_MANAGED_ENV:
        if name in env:
            return (
                f"historyServerOptions.collectorOptions.env must not contain {name}: it is managed by KubeRay and "
                "injected automatically into the collector container"
            )
    backend = as_text(env.get(STORAGE_BACKEND, {}).get("value"))
    if not backend:
        return f"{STORAGE_BACKEND} environment variable must be set with a literal string value in historyServerOptions.collectorOptions.env"
    kind = backend.upper()
    if kind == "GCS" and not has_value(GCS_BUCKET):
        return f"{GCS_BUCKET} environment variable must be set when {STORAGE_BACKEND} is GCS"
    if kind == "S3" and not has_value(S3_REGION):
        return f"{S3_REGION} environment variable must be set when {STORAGE_BACKEND} is S3"
    if kind == "AZUREBLOB":
        mode = as_text(env.get(AZURE_STORAGE_AUTH_MODE, {}).get("value")).strip().lower()
        if mode == "connection_string":
            if not has_value(AZURE_STORAGE_CONNECTION_STRING):
                return (
                    f"{AZURE_STORAGE_CONNECTION_STRING} environment variable must be set when {STORAGE_BACKEND} is "
                    f"AZUREBLOB and {AZURE_STORAGE_AUTH_MODE} is connection_string"
                )
        elif mode in ("workload_identity", "default"):
            if not has_value(AZURE_STORAGE_ACCOUNT_URL):
                return (
                    f"{AZURE_STORAGE_ACCOUNT_URL} environment variable must be set when {STORAGE_BACKEND} is AZUREBLOB "
                    f"and {AZURE_STORAGE_AUTH_MODE} is {mode}"
                )
        elif not has_value(AZURE_STORAGE_CONNECTION_STRING) and not has_value(AZURE_STORAGE_ACCOUNT_URL):
            return (
                f"either {AZURE_STORAGE_CONNECTION_STRING} or {AZURE_STORAGE_ACCOUNT_URL} environment variable must be "
                f"set when {STORAGE_BACKEND} is AZUREBLOB"
            )
    if kind == "ALIYUNOSS":
        for name in (ALIYUN_BUCKET, ALIYUN_ENDPOINT, ALIYUN_REGION):
            if not has_value(name):
                return f"{name} environment variable must be set when {STORAGE_BACKEND} is ALIYUNOSS"
    return None


def _rules_against_mode(rules: Any, mode: str, where: str) -> str | None:
    """Ingress rules only when ingress is denied, egress rules only when egress is."""
    rules_map = as_map(rules)
    if mode == "DenyAllEgress" and as_list(rules_map.get("ingressRules")):
        return f"networkPolicy.{where}.ingressRules cannot be set when mode is {go_quote(mode)} (ingress is not restricted)"
    if mode == "DenyAllIngress" and as_list(rules_map.get("egressRules")):
        return (
            f"networkPolicy.{where}.egressRules cannot be set when mode is {go_quote(mode)} (egress is not restricted)"
        )
    return None


def validate_network_policy(spec: Mapping[str, Any]) -> str | None:
    """validateNetworkPolicy: rules consistent with the mode, groups that exist and are DNS-1123 labels."""
    policy = spec.get("networkPolicy")
    if policy is None:
        return None
    policy = as_map(policy)
    mode = as_text(policy.get("mode")) if policy.get("mode") is not None else "DenyAll"
    for where in ("head", "worker"):
        if policy.get(where) is not None and (error := _rules_against_mode(policy[where], mode, where)):
            return error
    group_names = set()
    for group in as_list(spec.get("workerGroupSpecs")):
        name = as_text(as_map(group).get("groupName"))
        if errs := is_dns1123_label(name):
            return (
                f"worker group name {go_quote(name)} must be a valid DNS1123 label when networkPolicy is enabled "
                f"(it is embedded in the NetworkPolicy name): {go_list(errs)}"
            )
        group_names.add(name)
    for entry in as_list(policy.get("workerGroups")):
        name = as_text(as_map(entry).get("groupName"))
        if error := _rules_against_mode(entry, mode, f"workerGroups[{go_quote(name)}]"):
            return error
        if name not in group_names:
            return f"networkPolicy.workerGroups[{go_quote(name)}] does not match any group name in workerGroupSpecs"
    return None


def _tls_mount_conflict(mounts: Any, location: str, hint: str = _TLS_HINT) -> str | None:
    for mount in as_list(mounts):
        if as_map(mount).get("name") == RAY_TLS_VOLUME_NAME:
            return f"cannot use volume mount named {go_quote(RAY_TLS_VOLUME_NAME)} in {location} when tlsOptions is set {hint}"
        if as_map(mount).get("mountPath") == RAY_TLS_CERT_MOUNT_PATH:
            return f"cannot use volume mount at path {go_quote(RAY_TLS_CERT_MOUNT_PATH)} in {location} when tlsOptions is set {hint}"
    return None


def validate_no_conflicting_tls_volume_mount(container: Mapping[str, Any], location: str) -> str | None:
    """validateNoConflictingTLSVolumeMount."""
    return _tls_mount_conflict(container.get("volumeMounts"), location)


def validate_tls_options(spec: Mapping[str, Any]) -> str | None:
    """validateTLSOptions: no operator-managed TLS env vars or mounts once TLS is on."""
    if not is_tls_enabled(spec):
        return None
    head = as_map(spec.get("headGroupSpec"))
    if containers(head):
        head_container = ray_container(head)
        for name in _TLS_MANAGED_ENV:
            if env_var_exists(name, head_container.get("env")):
                return f"cannot set {name} environment variable in head Pod when tlsOptions is set {_TLS_HINT}"
        if error := validate_no_conflicting_tls_volume_mount(head_container, "head Pod"):
            return error
    for group in as_list(spec.get("workerGroupSpecs")):
        if not containers(group):
            continue
        worker_container, group_name = ray_container(group), go_quote(as_text(as_map(group).get("groupName")))
        for name in _TLS_MANAGED_ENV:
            if env_var_exists(name, worker_container.get("env")):
                return f"cannot set {name} environment variable in worker group {group_name} when tlsOptions is set {_TLS_HINT}"
        if error := validate_no_conflicting_tls_volume_mount(worker_container, f"worker group {group_name}"):
            return error
    autoscaler = spec.get("autoscalerOptions")
    if autoscaler is not None:
        options = as_map(autoscaler)
        for name in _TLS_MANAGED_ENV:
            if env_var_exists(name, options.get("env")):
                return (
                    f"cannot set {name} environment variable in autoscalerOptions.env when tlsOptions is set "
                    "- the operator manages TLS configuration for the autoscaler automatically"
                )
        if error := _tls_mount_conflict(options.get("volumeMounts"), "autoscalerOptions.volumeMounts"):
            return error
    return None


def validate_history_server_options(spec: Mapping[str, Any]) -> str | None:
    """The historyServerOptions block of ValidateRayClusterSpec (alpha gate, off by default)."""
    options = spec.get("historyServerOptions")
    if options is None:
        return None
    if not feature_enabled(RAY_CLUSTER_HISTORY_SERVER):
        return "RayClusterHistoryServer feature gate is not enabled"
    collector = as_map(options).get("collectorOptions")
    if collector is None:
        return "historyServerOptions.collectorOptions must be set"
    if error := validate_collector_options(collector):
        return error
    if any(as_map(c).get("name") == COLLECTOR_CONTAINER_NAME for c in containers(spec.get("headGroupSpec"))):
        return f"head pod template must not define a container with name '{COLLECTOR_CONTAINER_NAME}' when history server collector options are enabled"
    for group in as_list(spec.get("workerGroupSpecs")):
        if any(as_map(c).get("name") == COLLECTOR_CONTAINER_NAME for c in containers(group)):
            return (
                f"worker group {as_text(as_map(group).get('groupName'))} pod template must not define a container with "
                f"name '{COLLECTOR_CONTAINER_NAME}' when history server collector options are enabled"
            )
    return None


def validate_auth_options(spec: Mapping[str, Any]) -> str | None:
    """The authOptions block of ValidateRayClusterSpec: token mode needs Ray ≥ 2.52.0, K8s token auth ≥ 2.55.0."""
    auth = spec.get("authOptions")
    if not is_auth_enabled(spec):
        if is_k8s_auth_enabled(auth):
            return "authOptions.enableK8sTokenAuth is enabled but authOptions.mode not set to 'token'"
        return None
    version_text = as_text(spec.get("rayVersion"))
    if not version_text:
        return "authOptions.mode is 'token' but RayVersion was not specified. Ray version 2.52.0 or later is required"
    try:
        version = parse_generic_version(version_text)
    except ValueError as exc:
        return f"authOptions.mode is 'token' but RayVersion format is invalid: {version_text}, {exc}"
    if version_less_than(version, (2, 52, 0)):
        return f"authOptions.mode is 'token' but minimum Ray version is 2.52.0, got {version_text}"
    if is_k8s_auth_enabled(auth):
        if version_less_than(version, (2, 55, 0)):
            return f"authOptions.enableK8sTokenAuth is enabled but minimum Ray version is 2.55.0, got {version_text}"
        if as_text(as_map(auth).get("secretName")):
            return "authOptions.enableK8sTokenAuth is enabled and authOptions.secretName is also set"
    return None
