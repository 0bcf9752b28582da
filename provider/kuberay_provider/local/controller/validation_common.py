"""What KubeRay v1.7.0's utils/validation.go leans on, ported: feature gates, constants and util.go predicates.

Sources: ray-operator/pkg/features/features.go, ray-operator/controllers/ray/utils/{constant,util}.go.
The Go runtime and apimachinery helpers are in validation_go.py.

Objects reaching the operator have passed the CRD schema, so fields have their declared types; the
accessors below still read a wrong type as "absent" so that nothing here raises on odd input.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# --- feature gates (features.go defaultFeatureGates, v1.7.0) ----------------------------------------
RAY_CLUSTER_STATUS_CONDITIONS = "RayClusterStatusConditions"
RAY_JOB_DELETION_POLICY = "RayJobDeletionPolicy"
RAY_MULTI_HOST_INDEXING = "RayMultiHostIndexing"
RAY_SERVICE_INCREMENTAL_UPGRADE = "RayServiceIncrementalUpgrade"
RAY_CRON_JOB = "RayCronJob"
SIDECAR_SUBMITTER_RESTART = "SidecarSubmitterRestart"
RAY_CLUSTER_NETWORK_POLICY = "RayClusterNetworkPolicy"
GCS_FAULT_TOLERANCE_EMBEDDED_STORAGE = "GCSFaultToleranceEmbeddedStorage"
RAY_CLUSTER_MTLS = "RayClusterMTLS"
RAY_CLUSTER_HISTORY_SERVER = "RayClusterHistoryServer"
KUBERNETES_WAS = "KubernetesWAS"

# A stock operator (no --feature-gates flag). Tests may flip an entry to reach gated code.
FEATURE_GATES: dict[str, bool] = {
    RAY_CLUSTER_STATUS_CONDITIONS: True,
    RAY_JOB_DELETION_POLICY: True,
    RAY_MULTI_HOST_INDEXING: True,
    RAY_SERVICE_INCREMENTAL_UPGRADE: True,
    RAY_CRON_JOB: False,
    SIDECAR_SUBMITTER_RESTART: False,
    RAY_CLUSTER_NETWORK_POLICY: False,
    GCS_FAULT_TOLERANCE_EMBEDDED_STORAGE: False,
    RAY_CLUSTER_MTLS: False,
    RAY_CLUSTER_HISTORY_SERVER: False,
    KUBERNETES_WAS: False,
}


def feature_enabled(gate: str) -> bool:
    """features.Enabled."""
    return FEATURE_GATES[gate]


# --- constant.go ------------------------------------------------------------------------------------
MAX_RAYCLUSTER_NAME_LENGTH = 53
MAX_RAYSERVICE_NAME_LENGTH = MAX_RAYCLUSTER_NAME_LENGTH - 6
MAX_RAYJOB_NAME_LENGTH = MAX_RAYCLUSTER_NAME_LENGTH - 6
RAY_ORIGINATED_FROM_CRD_LABEL_KEY = "ray.io/originated-from-crd"
RAY_FT_ENABLED_ANNOTATION_KEY = "ray.io/ft-enabled"
RAY_EXTERNAL_STORAGE_NS_ANNOTATION_KEY = "ray.io/external-storage-namespace"
RAY_SERVICE_INITIALIZING_TIMEOUT_ANNOTATION = "ray.io/initializing-timeout"
RAY_JOB_CLUSTER_SELECTOR_KEY = "ray.io/cluster"
RAY_REDIS_ADDRESS = "RAY_REDIS_ADDRESS"
REDIS_PASSWORD = "REDIS_PASSWORD"
REDIS_USERNAME = "REDIS_USERNAME"
RAY_GCS_STORAGE = "RAY_gcs_storage"
RAY_GCS_STORAGE_PATH = "RAY_gcs_storage_path"
GCS_STORAGE_VOLUME_NAME = "gcs-storage"
GCS_STORAGE_MOUNT_PATH = "/data/gcs"
RAY_ENABLE_AUTOSCALER_V2 = "RAY_enable_autoscaler_v2"
KUBERAY_GEN_AUTOSCALER_START_CMD = "KUBERAY_GEN_AUTOSCALER_START_CMD"
COLLECTOR_CONTAINER_NAME = "ray-history-collector"
RAY_USE_TLS = "RAY_USE_TLS"
RAY_TLS_SERVER_CERT = "RAY_TLS_SERVER_CERT"
RAY_TLS_SERVER_KEY = "RAY_TLS_SERVER_KEY"
RAY_TLS_CA_CERT = "RAY_TLS_CA_CERT"
RAY_TLS_VOLUME_NAME = "ray-tls"
RAY_TLS_CERT_MOUNT_PATH = "/etc/ray/tls"

# CRD defaults the API server fills in; used only where Go would dereference a nil pointer.
DEFAULT_MAX_SURGE_PERCENT = 100


@dataclass(frozen=True)
class ValidationFailure:
    """A failed check as the controller reports it: the Warning event's reason and the Go error text."""

    event_reason: str
    message: str


# --- tolerant accessors -----------------------------------------------------------------------------
def as_map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def as_int(value: Any) -> int | None:
    """An int32 pointer field: None is nil (a wrong type reads as nil too)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def as_text(value: Any) -> str:
    """A Go string field or map value: "" when absent."""
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def dig(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def pod_spec(group: Any) -> Mapping[str, Any]:
    """<group>.template.spec."""
    return as_map(dig(group, "template", "spec"))


def containers(group: Any) -> list[Any]:
    return as_list(pod_spec(group).get("containers"))


def ray_container(group: Any) -> Mapping[str, Any]:
    """Containers[RayContainerIndex]; callers check that there is one first, as Go does."""
    found = containers(group)
    return as_map(found[0]) if found else {}


# --- util.go --------------------------------------------------------------------------------------
def env_var_by_name(name: str, env_vars: Any) -> Mapping[str, Any] | None:
    """EnvVarByName (None when absent)."""
    return next((as_map(e) for e in as_list(env_vars) if as_map(e).get("name") == name), None)


def env_var_exists(name: str, env_vars: Any) -> bool:
    """EnvVarExists."""
    return env_var_by_name(name, env_vars) is not None


def is_autoscaling_enabled(spec: Any) -> bool:
    """IsAutoscalingEnabled: enableInTreeAutoscaling is true."""
    return as_map(spec).get("enableInTreeAutoscaling") is True


def is_autoscaling_v2_enabled(spec: Any) -> bool:
    """IsAutoscalingV2Enabled: autoscalerOptions.version is v2."""
    return as_text(dig(spec, "autoscalerOptions", "version")) == "v2"


def is_autoscaling_v1_enabled(spec: Any) -> bool:
    """IsAutoscalingV1Enabled: autoscalerOptions.version is v1."""
    return as_text(dig(spec, "autoscalerOptions", "version")) == "v1"


def is_gcs_fault_tolerance_enabled(spec: Any, annotations: Mapping[str, Any]) -> bool:
    """IsGCSFaultToleranceEnabled: the ft-enabled annotation is "true" (any case) or the options are set."""
    value = annotations.get(RAY_FT_ENABLED_ANNOTATION_KEY)
    return (value is not None and as_text(value).lower() == "true") or (
        as_map(spec).get("gcsFaultToleranceOptions") is not None
    )


def gcs_fault_tolerance_backend(options: Any) -> str:
    """GetGcsFaultToleranceBackend: redis unless set."""
    return as_text(as_map(options).get("backend")) or "redis"


def is_auth_enabled(spec: Any) -> bool:
    """IsAuthEnabled: authOptions.mode is token."""
    return as_text(dig(spec, "authOptions", "mode")) == "token"


def is_k8s_auth_enabled(auth_options: Any) -> bool:
    """IsK8sAuthEnabled: authOptions.enableK8sTokenAuth is true."""
    return as_map(auth_options).get("enableK8sTokenAuth") is True


def is_tls_enabled(spec: Any) -> bool:
    """IsTLSEnabled: the RayClusterMTLS gate is on and tlsOptions.enabled is true."""
    return feature_enabled(RAY_CLUSTER_MTLS) and dig(spec, "tlsOptions", "enabled") is True


def is_incremental_upgrade_enabled(service_spec: Any) -> bool:
    """IsIncrementalUpgradeEnabled: the gate is on and upgradeStrategy.type is NewClusterWithIncrementalUpgrade."""
    if not feature_enabled(RAY_SERVICE_INCREMENTAL_UPGRADE):
        return False
    return as_text(dig(service_spec, "upgradeStrategy", "type")) == "NewClusterWithIncrementalUpgrade"


def crd_type(key: str) -> str:
    """GetCRDType: RayJob / RayService as named, anything else RayCluster."""
    return key if key in ("RayCluster", "RayJob", "RayService") else "RayCluster"
