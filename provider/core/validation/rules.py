"""KubeRay's own semantic rules, ported from KubeRay v1.7.0.

Source: ray-operator/controllers/ray/utils/validation.go (ValidateRayJobMetadata/Spec,
ValidateRayClusterMetadata/Spec/UpgradeOptions, ValidateRayServiceMetadata/Spec) and the RayCluster
webhook (unique worker group names). KubeRay stops at the first problem; these functions report every
problem they find. Input is untrusted: a value of the wrong type is left for the schema layer to report
and the rule that needed it is skipped, so nothing here raises.

Feature gates are applied at their v1.7.0 defaults (ray-operator/pkg/features/features.go), as a stock
KubeRay install would: a manifest cannot tell us how the operator was started.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import yaml

from ..errors import FieldError

# ray-operator/controllers/ray/utils/constant.go
MAX_RAYCLUSTER_NAME_LENGTH = 53
# The RayJob/RayService cluster is named "<name>-<5 random chars>", which must fit the RayCluster limit.
MAX_RAYJOB_NAME_LENGTH = MAX_RAYCLUSTER_NAME_LENGTH - 6
MAX_RAYSERVICE_NAME_LENGTH = MAX_RAYCLUSTER_NAME_LENGTH - 6
GENERATED_SUFFIX_LENGTH = 5  # the API server appends 5 random characters to generateName

CLUSTER_SELECTOR_KEY = "ray.io/cluster"
FT_ENABLED_ANNOTATION = "ray.io/ft-enabled"
EXTERNAL_STORAGE_NS_ANNOTATION = "ray.io/external-storage-namespace"
INITIALIZING_TIMEOUT_ANNOTATION = "ray.io/initializing-timeout"
RAY_REDIS_ADDRESS = "RAY_REDIS_ADDRESS"
REDIS_PASSWORD = "REDIS_PASSWORD"
REDIS_USERNAME = "REDIS_USERNAME"
RAY_ENABLE_AUTOSCALER_V2 = "RAY_enable_autoscaler_v2"
KUBERAY_GEN_AUTOSCALER_START_CMD = "KUBERAY_GEN_AUTOSCALER_START_CMD"

# ray-operator/pkg/features/features.go, v1.7.0 defaults.
FEATURE_GATES: dict[str, bool] = {
    "RayJobDeletionPolicy": True,
    "RayServiceIncrementalUpgrade": True,
    "RayClusterNetworkPolicy": False,
    "GCSFaultToleranceEmbeddedStorage": False,
    "RayClusterMTLS": False,
    "RayClusterHistoryServer": False,
}

SUBMISSION_MODES = ("K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode")
RAYSERVICE_UPGRADE_TYPES = ("NewClusterWithIncrementalUpgrade", "NewCluster", "None")
RAYCLUSTER_UPGRADE_TYPES = ("Recreate", "None")
# Lower TTL deletes earlier; TTLs must not decrease along this order (validateTTLConsistency).
DELETION_ORDER = ("DeleteWorkers", "DeleteCluster", "DeleteSelf")
# CRD defaults the API server fills in before KubeRay ever sees the object.
DEFAULT_MAX_REPLICAS = 2147483647
DEFAULT_MAX_SURGE_PERCENT = 100

Errors = Iterator[FieldError]


def _error(path: str, rule: str, message: str) -> FieldError:
    return FieldError(path, f"kuberay:{rule}", message)


# --- tolerant accessors: a wrong type reads as "absent" -------------------------------------------


def _map(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _seq(value: Any) -> list:
    return value if isinstance(value, list) else []


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _dig(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _find_env(envs: Any, name: str) -> dict | None:
    return next((e for e in _seq(envs) if isinstance(e, dict) and e.get("name") == name), None)


# --- Kubernetes name syntax (k8s.io/apimachinery/pkg/util/validation) ----------------------------

_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED_NAME_PART = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")


def dns1035_label_errors(value: str) -> list[str]:
    errors = []
    if len(value) > 63:
        errors.append("must be no more than 63 characters")
    if not _DNS1035_LABEL.fullmatch(value):
        errors.append(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
            "alphabetic character, and end with an alphanumeric character"
        )
    return errors


def dns1123_label_errors(value: str) -> list[str]:
    errors = []
    if len(value) > 63:
        errors.append("must be no more than 63 characters")
    if not _DNS1123_LABEL.fullmatch(value):
        errors.append(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
            "must start and end with an alphanumeric character"
        )
    return errors


def dns1123_subdomain_errors(value: str) -> list[str]:
    errors = []
    if len(value) > 253:
        errors.append("must be no more than 253 characters")
    if not _DNS1123_SUBDOMAIN.fullmatch(value):
        errors.append(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
            "'.', and must start and end with an alphanumeric character"
        )
    return errors


def qualified_name_errors(value: str) -> list[str]:
    prefix, slash, name = value.rpartition("/")
    errors = []
    if slash and not prefix:
        errors.append("prefix part must be non-empty")
    elif slash:
        errors += [f"prefix part {e}" for e in dns1123_subdomain_errors(prefix)]
    if not name:
        errors.append("name part must be non-empty")
    elif len(name) > 63:
        errors.append("name part must be no more than 63 characters")
    elif not _QUALIFIED_NAME_PART.fullmatch(name):
        errors.append(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
            "with an alphanumeric character"
        )
    return errors


def label_value_errors(value: str) -> list[str]:
    if len(value) > 63:
        return ["must be no more than 63 characters"]
    if value and not _QUALIFIED_NAME_PART.fullmatch(value):
        return [
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
            "'.', and must start and end with an alphanumeric character"
        ]
    return []


# --- value parsers matching the Go functions KubeRay calls -----------------------------------------

# Go's version.ParseGeneric pattern, anchored: "." never matches a newline, so "2.52.0\n" is refused.
_GENERIC_VERSION = re.compile(r"[\t\n\f\r ]*v?([0-9]+(?:\.[0-9]+)+)(.*)\Z")
_GO_DURATION = re.compile(r"(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:ns|us|µs|μs|ms|s|m|h))+")
_GO_DURATION_PART = re.compile(r"([0-9]*)(?:\.([0-9]*))?(ns|us|µs|μs|ms|s|m|h)")
_GO_DURATION_UNIT_NS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_MAX_DURATION_NS = (1 << 63) - 1


def _ray_version(text: str) -> tuple[int, ...] | None:
    """k8s.io/apimachinery version.ParseGeneric: at least "major.minor", optional leading "v", no
    zero-prefixed major ("02.52.0" is refused, as in Go)."""
    match = _GENERIC_VERSION.match(text)
    if not match:
        return None
    components = match.group(1).split(".")
    if components[0].startswith("0") and components[0] != "0":
        return None
    parts = tuple(int(p) for p in components)
    return parts + (0,) * (3 - len(parts))  # "2.52" compares equal to "2.52.0", as in Go


def _go_duration_seconds(text: str) -> float | None:
    """time.ParseDuration, returning seconds, or None when Go would refuse the text. Counted in whole
    nanoseconds as Go does, so "0.5ns" is 0 and a duration past int64 nanoseconds is refused."""
    sign = -1 if text[:1] == "-" else 1
    body = text[1:] if text[:1] in "+-" else text
    if body == "0":
        return 0.0
    if not _GO_DURATION.fullmatch(body):
        return None
    total = 0
    for whole, fraction, unit in _GO_DURATION_PART.findall(body):
        scale = _GO_DURATION_UNIT_NS[unit]
        total += int(whole or 0) * scale
        if fraction:
            total += int(int(fraction) * scale / 10 ** len(fraction))
        if total > _MAX_DURATION_NS + (sign < 0):
            return None
    return sign * total / 1e9


# --- metadata -----------------------------------------------------------------------------------


def _name_rules(metadata: dict, kind: str, max_length: int) -> Errors:
    """Validate<Kind>Metadata: length and DNS-1035. A generateName is checked as the name it yields."""
    name, path = _str(metadata.get("name")), "metadata.name"
    if not name and _str(metadata.get("generateName")):
        name, path = _str(metadata["generateName"]) + "a" * GENERATED_SUFFIX_LENGTH, "metadata.generateName"
    if not name:
        return  # a missing name is the schema layer's to report
    if len(name) > max_length:
        yield _error(path, "name-too-long", f"{kind} name should be no more than {max_length} characters")
    if problems := dns1035_label_errors(name):
        yield _error(path, "name-not-dns1035", f"{kind} name should be a valid DNS1035 label: {'; '.join(problems)}")


def _initializing_timeout_rules(annotations: dict) -> Errors:
    value = annotations.get(INITIALIZING_TIMEOUT_ANNOTATION)
    if not isinstance(value, str) or not value:
        return
    path, key = "metadata.annotations", INITIALIZING_TIMEOUT_ANNOTATION
    if (seconds := _go_duration_seconds(value)) is None and re.fullmatch(r"[+-]?[0-9]+", value):
        seconds = float(int(value))
    if seconds is None:
        yield _error(
            path,
            "initializing-timeout-format",
            f"annotation {key} has invalid format: {value}. Expected Go duration format (e.g., '5m', "
            "'1h') or positive integer seconds",
        )
    elif seconds <= 0:
        yield _error(path, "initializing-timeout-not-positive", f"annotation {key} must be positive, got: {value}")


# --- RayCluster spec (also embedded in RayJob and RayService) --------------------------------------


@dataclass(frozen=True)
class _Cluster:
    """A RayClusterSpec with the path it sits at and the annotations of the object that owns it."""

    spec: dict
    path: str
    annotations: dict

    def at(self, *parts: str) -> str:
        return ".".join((self.path, *parts))

    @property
    def autoscaling(self) -> bool:
        return self.spec.get("enableInTreeAutoscaling") is True

    @property
    def autoscaler_v2(self) -> bool:
        return _dig(self.spec, "autoscalerOptions", "version") == "v2"

    @property
    def head(self) -> dict:
        return _map(self.spec.get("headGroupSpec"))

    @property
    def head_container(self) -> dict | None:
        """The Ray container (index 0); None when there is none, since KubeRay cannot go on then."""
        containers = _seq(_dig(self.head, "template", "spec", "containers"))
        return containers[0] if containers and isinstance(containers[0], dict) else None

    @property
    def head_env(self) -> list:
        return _seq(_map(self.head_container).get("env"))

    @property
    def head_env_path(self) -> str:
        return self.at("headGroupSpec.template.spec.containers[0].env")

    def workers(self) -> Iterator[tuple[str, dict]]:
        for index, group in enumerate(_seq(self.spec.get("workerGroupSpecs"))):
            if isinstance(group, dict):
                yield self.at(f"workerGroupSpecs[{index}]"), group

    def autoscaler_v2_via_env(self) -> bool:
        env = _find_env(self.head_env, RAY_ENABLE_AUTOSCALER_V2)
        return env is not None and env.get("value") in ("1", "true")


def _group_start_params_rules(group: dict, path: str, name: str) -> Errors:
    """validateRayGroupResources and validateRayGroupLabels."""
    params = _map(group.get("rayStartParams"))
    if any(params.get(k) for k in ("num-cpus", "num-gpus", "memory", "resources")) and _map(group.get("resources")):
        yield _error(
            f"{path}.resources",
            "group-resources-conflict",
            f"resource fields should not be set in both rayStartParams and Resources for {name} group; "
            "please use only one",
        )
    if "labels" in params:
        yield _error(
            f"{path}.rayStartParams.labels",
            "ray-start-params-labels",
            f"rayStartParams['labels'] is not supported for {name} group; please use the top-level Labels "
            "field instead",
        )
    for key, value in _map(group.get("labels")).items():
        problems = qualified_name_errors(key) + label_value_errors(value) if isinstance(value, str) else []
        if problems:
            yield _error(
                f"{path}.labels",
                "invalid-group-label",
                f"invalid label '{key}: {value}' for {name} group: {'; '.join(problems)}",
            )


def _lacks_containers(group: Any) -> bool:
    """True when the pod template has no container; a wrong type on the way is the schema's to report."""
    node: Any = group
    for key in ("template", "spec", "containers"):
        if node is None:
            return True
        if not isinstance(node, dict):
            return False
        node = node.get(key)
    return node is None or node == []


def _head_group_rules(c: _Cluster) -> Errors:
    path = c.at("headGroupSpec")
    if _lacks_containers(c.spec.get("headGroupSpec")):
        yield _error(
            f"{path}.template.spec.containers",
            "head-containers-required",
            "headGroupSpec should have at least one container",
        )
    yield from _group_start_params_rules(c.head, path, "Head")


def _replica_rules(group: dict, path: str, name: str) -> Errors:
    # Missing min/maxReplicas take their CRD defaults (0, MaxInt32), so KubeRay's "must set both" never fires.
    min_replicas = _int(group.get("minReplicas")) if "minReplicas" in group else 0
    max_replicas = _int(group.get("maxReplicas")) if "maxReplicas" in group else DEFAULT_MAX_REPLICAS
    if min_replicas is not None and min_replicas < 0:
        yield _error(
            f"{path}.minReplicas",
            "negative-min-replicas",
            f"worker group {name} has negative minReplicas {min_replicas}",
        )
    if max_replicas is not None and max_replicas < 0:
        yield _error(
            f"{path}.maxReplicas",
            "negative-max-replicas",
            f"worker group {name} has negative maxReplicas {max_replicas}",
        )
    if min_replicas is not None and max_replicas is not None and min_replicas > max_replicas:
        yield _error(
            f"{path}.minReplicas",
            "min-replicas-exceeds-max",
            f"worker group {name} has minReplicas {min_replicas} greater than maxReplicas {max_replicas}",
        )


def _needs_autoscaler_v2(c: _Cluster) -> bool:
    return not (c.autoscaler_v2 or c.autoscaler_v2_via_env())


def _idle_timeout_rules(c: _Cluster, group: dict, path: str, name: str) -> Errors:
    timeout = _int(group.get("idleTimeoutSeconds"))
    if timeout is None:
        return
    if timeout < 0:
        yield _error(
            f"{path}.idleTimeoutSeconds",
            "negative-idle-timeout",
            f"worker group {name}: idleTimeoutSeconds must be non-negative, got {timeout}",
        )
    elif _needs_autoscaler_v2(c):
        yield _error(
            f"{path}.idleTimeoutSeconds",
            "idle-timeout-requires-autoscaler-v2",
            f"worker group {name}: idleTimeoutSeconds is set, but autoscaler v2 is not enabled. Please set "
            ".spec.autoscalerOptions.version to 'v2'",
        )


def _min_ray_version_problem(c: _Cluster, minimum: tuple[int, ...], what: str) -> str | None:
    """The message KubeRay gives when spec.rayVersion is missing, unparsable or below ``minimum``."""
    wanted = ".".join(map(str, minimum))
    text = _str(c.spec.get("rayVersion"))
    if not text:
        return f"{what} but RayVersion was not specified. Ray version {wanted} or later is required"
    version = _ray_version(text)
    if version is None:
        return f"{what} but RayVersion format is invalid: {text}"
    if version < minimum:
        return f"{what} but minimum Ray version is {wanted}, got {text}"
    return None


def _priority_rules(c: _Cluster, group: dict, path: str, name: str) -> Errors:
    priority = _int(group.get("priority"))
    if not priority:
        return
    if problem := _min_ray_version_problem(c, (2, 56, 0), f"worker group {name}: priority is set,"):
        yield _error(f"{path}.priority", "priority-ray-version", problem)
    elif _needs_autoscaler_v2(c):
        yield _error(
            f"{path}.priority",
            "priority-requires-autoscaler-v2",
            f"worker group {name}: priority is set to {priority}, but autoscaler v2 is not enabled. Priority "
            "is only supported with autoscaler v2 enabled",
        )


def _worker_group_rules(c: _Cluster) -> Errors:
    seen: set[Any] = set()
    for path, group in c.workers():
        name = _str(group.get("groupName"))
        if _lacks_containers(group):
            yield _error(
                f"{path}.template.spec.containers",
                "worker-containers-required",
                "workerGroupSpec should have at least one container",
            )
        yield from _replica_rules(group, path, name)
        yield from _group_start_params_rules(group, path, name)
        yield from _idle_timeout_rules(c, group, path, name)
        yield from _priority_rules(c, group, path, name)
        # From the RayCluster validating webhook (pkg/webhooks/v1/raycluster_webhook.go).
        if isinstance(group.get("groupName"), str):
            if name in seen:
                yield _error(f"{path}.groupName", "worker-group-name-duplicate", "worker group names must be unique")
            seen.add(name)
        if group.get("suspend") is True and c.autoscaling:
            yield _error(
                f"{path}.suspend",
                "worker-suspend-with-autoscaling",
                f"worker group {name} cannot be suspended with Autoscaler enabled",
            )
        restart = _dig(group, "template", "spec", "restartPolicy")
        if c.autoscaling and c.autoscaler_v2 and restart not in (None, "", "Never"):
            yield _error(
                f"{path}.template.spec.restartPolicy",
                "autoscaler-v2-restart-policy",
                f"restartPolicy for worker group {name} should be Never or unset when using autoscaler V2",
            )


def _gcs_fault_tolerance_rules(c: _Cluster) -> Errors:
    options = c.spec.get("gcsFaultToleranceOptions")
    options_path = c.at("gcsFaultToleranceOptions")
    head_params = _map(c.head.get("rayStartParams"))
    ft_annotation = _str(c.annotations.get(FT_ENABLED_ANNOTATION))
    if ft_annotation and options is not None:
        yield _error(
            options_path,
            "ft-annotation-with-gcs-ft-options",
            f"{FT_ENABLED_ANNOTATION} annotation and GcsFaultToleranceOptions are both set. Please use only "
            "GcsFaultToleranceOptions to configure GCS fault tolerance",
        )
    has_redis_address_env = _find_env(c.head_env, RAY_REDIS_ADDRESS) is not None
    if ft_annotation.lower() != "true" and options is None and has_redis_address_env:
        yield _error(
            c.head_env_path,
            "redis-address-without-gcs-ft",
            f"{RAY_REDIS_ADDRESS} is set which implicitly enables GCS fault tolerance, but "
            "GcsFaultToleranceOptions is not set. Please set GcsFaultToleranceOptions to enable GCS fault tolerance",
        )
    if isinstance(options, dict):
        yield from _gcs_fault_tolerance_option_rules(c, options, options_path, head_params, has_redis_address_env)
    if head_params.get("redis-username") or _find_env(c.head_env, REDIS_USERNAME) is not None:
        yield _error(
            c.at("headGroupSpec.rayStartParams"),
            "redis-username",
            "cannot set redis username in rayStartParams or environment variables - use "
            "GcsFaultToleranceOptions.RedisUsername instead",
        )


def _gcs_fault_tolerance_option_rules(
    c: _Cluster, options: dict, path: str, head_params: dict, has_redis_address_env: bool
) -> Errors:
    def use_instead(what: str, field: str) -> str:
        return (
            f"cannot set {what} when GcsFaultToleranceOptions is enabled - "
            f"use GcsFaultToleranceOptions.{field} instead"
        )

    if head_params.get("redis-password"):
        yield _error(
            c.at("headGroupSpec.rayStartParams.redis-password"),
            "redis-password-with-gcs-ft",
            use_instead("`redis-password` in rayStartParams", "RedisPassword"),
        )
    if _find_env(c.head_env, REDIS_PASSWORD) is not None:
        yield _error(
            c.head_env_path,
            "redis-password-with-gcs-ft",
            use_instead("`REDIS_PASSWORD` env var in head Pod", "RedisPassword"),
        )
    if has_redis_address_env:
        yield _error(
            c.head_env_path,
            "redis-address-with-gcs-ft",
            use_instead("`RAY_REDIS_ADDRESS` env var in head Pod", "RedisAddress"),
        )
    if _str(c.annotations.get(EXTERNAL_STORAGE_NS_ANNOTATION)):
        yield _error(
            "metadata.annotations",
            "external-storage-namespace-with-gcs-ft",
            use_instead("`ray.io/external-storage-namespace` annotation", "ExternalStorageNamespace"),
        )
    backend = _str(options.get("backend")) or "redis"
    # The embedded backend's own checks only run once its (default off) gate is on, so they are unreachable.
    if backend == "rocksdb" and not FEATURE_GATES["GCSFaultToleranceEmbeddedStorage"]:
        yield _error(
            f"{path}.backend",
            "feature-gate-disabled",
            "the embedded RocksDB GCS fault tolerance backend (GcsFaultToleranceOptions.Backend: 'rocksdb') "
            "requires the GCSFaultToleranceEmbeddedStorage feature gate to be enabled",
        )
    elif backend != "rocksdb" and options.get("storage") is not None:
        yield _error(
            f"{path}.storage",
            "gcs-ft-storage-with-redis",
            "cannot set GcsFaultToleranceOptions.Storage when backend is 'redis' - it only applies to the "
            "'rocksdb' backend",
        )


def _autoscaler_rules(c: _Cluster) -> Errors:
    env_v2 = _find_env(c.head_env, RAY_ENABLE_AUTOSCALER_V2)
    options = _map(c.spec.get("autoscalerOptions"))
    if not c.autoscaling and env_v2 is not None and env_v2.get("value") in ("1", "true"):
        yield _error(
            c.head_env_path,
            "autoscaler-v2-env-without-autoscaling",
            f"environment variable {RAY_ENABLE_AUTOSCALER_V2} cannot be set to '{env_v2.get('value')}' when "
            "enableInTreeAutoscaling is false. Please set enableInTreeAutoscaling: true to use autoscaler v2",
        )
    if c.autoscaling and options.get("version") is not None and env_v2 is not None:
        yield _error(
            c.at("autoscalerOptions.version"),
            "autoscaler-version-and-env",
            f"both .spec.autoscalerOptions.version and head Pod env var {RAY_ENABLE_AUTOSCALER_V2} are set, "
            "please only use the former",
        )
    head_restart = _dig(c.head, "template", "spec", "restartPolicy")
    if c.autoscaling and c.autoscaler_v2 and head_restart not in (None, "", "Never"):
        yield _error(
            c.at("headGroupSpec.template.spec.restartPolicy"),
            "autoscaler-v2-restart-policy",
            "restartPolicy for head Pod should be Never or unset when using autoscaler V2",
        )
    idle = _int(options.get("idleTimeoutSeconds"))
    if idle is not None and idle < 0:
        yield _error(
            c.at("autoscalerOptions.idleTimeoutSeconds"),
            "negative-idle-timeout",
            f"autoscalerOptions.idleTimeoutSeconds must be non-negative, got {idle}",
        )
    if _find_env(options.get("env"), KUBERAY_GEN_AUTOSCALER_START_CMD) is not None:
        yield _error(
            c.at("autoscalerOptions.env"),
            "autoscaler-env-managed",
            f"autoscalerOptions.env must not contain {KUBERAY_GEN_AUTOSCALER_START_CMD}: it is managed by "
            "KubeRay and injected automatically into the autoscaler container",
        )


def _auth_rules(c: _Cluster) -> Errors:
    auth = _map(c.spec.get("authOptions"))
    k8s_auth = auth.get("enableK8sTokenAuth") is True
    k8s_path = c.at("authOptions.enableK8sTokenAuth")
    if auth.get("mode") != "token":
        if k8s_auth:
            yield _error(
                k8s_path,
                "k8s-auth-without-token-mode",
                "authOptions.enableK8sTokenAuth is enabled but authOptions.mode not set to 'token'",
            )
        return
    if problem := _min_ray_version_problem(c, (2, 52, 0), "authOptions.mode is 'token'"):
        yield _error(c.at("rayVersion"), "auth-ray-version", problem)
    elif k8s_auth and (problem := _min_ray_version_problem(c, (2, 55, 0), "authOptions.enableK8sTokenAuth is enabled")):
        yield _error(c.at("rayVersion"), "auth-ray-version", problem)
    if k8s_auth and _str(auth.get("secretName")):
        yield _error(
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


def _feature_gate_rules(c: _Cluster) -> Errors:
    for field, gate, message in _GATED_FIELDS:
        if c.spec.get(field) is not None and not FEATURE_GATES[gate]:
            yield _error(c.at(field), "feature-gate-disabled", message)


_CLUSTER_SPEC_RULES: tuple[Callable[[_Cluster], Errors], ...] = (
    _head_group_rules,
    _worker_group_rules,
    _gcs_fault_tolerance_rules,
    _autoscaler_rules,
    _auth_rules,
    _feature_gate_rules,
)


def cluster_spec_rules(spec: Any, path: str, annotations: Any = None) -> list[FieldError]:
    """ValidateRayClusterSpec for a spec found at ``path``; ``annotations`` are its owner's."""
    if not isinstance(spec, dict):
        return []
    cluster = _Cluster(spec, path, _map(annotations))
    return [error for rule in _CLUSTER_SPEC_RULES for error in rule(cluster)]


def _upgrade_type_rule(strategy_type: Any, path: str, valid: tuple[str, ...]) -> Errors:
    if isinstance(strategy_type, str) and strategy_type not in valid:
        options = ", ".join(valid)
        yield _error(
            path,
            "invalid-upgrade-strategy",
            f"Spec.UpgradeStrategy.Type value {strategy_type} is invalid, valid options are {options}",
        )


def _embedded_cluster_rules(spec: Any, path: str, annotations: dict, owner: str) -> Errors:
    """A RayJob's/RayService's cluster spec: the RayCluster rules plus what its generated RayCluster would hit."""
    yield from cluster_spec_rules(spec, path, annotations)
    if _dig(spec, "authOptions", "enableK8sTokenAuth") is True:
        yield _error(
            f"{path}.authOptions.enableK8sTokenAuth",
            "k8s-auth-not-supported",
            f"K8s token auth mode is currently not supported for {owner}",
        )
    # The generated RayCluster is labelled ray.io/originated-from-crd=<owner>, which
    # ValidateRayClusterUpgradeOptions refuses together with an upgradeStrategy.
    if _dig(spec, "upgradeStrategy", "type") is not None:
        yield _error(
            f"{path}.upgradeStrategy.type",
            "upgrade-strategy-not-allowed",
            f"upgradeStrategy cannot be set when RayCluster is created by {owner}",
        )


def _split(manifest: Any) -> tuple[dict, Any] | None:
    """(metadata, spec) of a manifest, or None when it is not even a mapping."""
    if not isinstance(manifest, dict):
        return None
    spec = manifest.get("spec")
    return _map(manifest.get("metadata")), ({} if spec is None else spec)


def raycluster_rules(manifest: Any) -> list[FieldError]:
    """ValidateRayClusterMetadata, ValidateRayClusterSpec, ValidateRayClusterUpgradeOptions and the webhook."""
    if (parts := _split(manifest)) is None:
        return []
    metadata, spec = parts
    errors = list(_name_rules(metadata, "RayCluster", MAX_RAYCLUSTER_NAME_LENGTH))
    errors += cluster_spec_rules(spec, "spec", metadata.get("annotations"))
    strategy_type = _dig(spec, "upgradeStrategy", "type")
    errors += _upgrade_type_rule(strategy_type, "spec.upgradeStrategy.type", RAYCLUSTER_UPGRADE_TYPES)
    creator = _str(_map(metadata.get("labels")).get("ray.io/originated-from-crd"))
    if strategy_type is not None and creator in ("RayJob", "RayService"):
        errors.append(_error(
            "spec.upgradeStrategy.type",
            "upgrade-strategy-not-allowed",
            f"upgradeStrategy cannot be set when RayCluster is created by {creator}"),
        )
    return errors


# --- RayJob ---------------------------------------------------------------------------------------


def _selector_mode(spec: dict) -> bool:
    return bool(_map(spec.get("clusterSelector")))


def _job_lifecycle_rules(spec: dict) -> Errors:
    if spec.get("suspend") is True and spec.get("shutdownAfterJobFinishes") is not True:
        yield _error(
            "spec.suspend",
            "suspend-requires-shutdown",
            "a RayJob with shutdownAfterJobFinishes set to false is not allowed to be suspended",
        )
    ttl = _int(spec.get("ttlSecondsAfterFinished"))
    if ttl is not None and ttl < 0:
        yield _error(
            "spec.ttlSecondsAfterFinished",
            "negative-ttl",
            "TTLSecondsAfterFinished must be a non-negative integer",
        )
    if ttl is not None and ttl > 0 and spec.get("shutdownAfterJobFinishes") is not True:
        yield _error(
            "spec.ttlSecondsAfterFinished",
            "ttl-requires-shutdown",
            "a RayJob with shutdownAfterJobFinishes set to false cannot have TTLSecondsAfterFinished",
        )
    for field in ("activeDeadlineSeconds", "preRunningDeadlineSeconds"):
        value = _int(spec.get(field))
        if value is not None and value <= 0:
            yield _error(f"spec.{field}", "deadline-not-positive", f"{field} must be a positive integer")
    backoff = _int(spec.get("backoffLimit"))
    if backoff is not None and backoff < 0:
        yield _error("spec.backoffLimit", "negative-backoff-limit", "backoffLimit must be a positive integer")
    runtime_env = spec.get("runtimeEnvYAML")
    if isinstance(runtime_env, str) and not _is_yaml_mapping(runtime_env):
        yield _error(
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


def _cluster_source_rules(spec: dict) -> Errors:
    has_cluster_spec = spec.get("rayClusterSpec") is not None
    if not has_cluster_spec and not _selector_mode(spec):
        yield _error(
            "spec.rayClusterSpec",
            "cluster-spec-or-selector-required",
            "one of RayClusterSpec or ClusterSelector must be set",
        )
    if not _selector_mode(spec):
        return
    # Stricter than KubeRay, which runs in clusterSelector mode and silently ignores the spec.
    if has_cluster_spec:
        yield _error(
            "spec.rayClusterSpec",
            "cluster-selector-with-cluster-spec",
            "rayClusterSpec and clusterSelector are mutually exclusive; KubeRay would ignore rayClusterSpec",
        )
    if not _str(_map(spec.get("clusterSelector")).get(CLUSTER_SELECTOR_KEY)):
        yield _error(
            "spec.clusterSelector",
            "cluster-selector-without-cluster",
            f"cluster name in ClusterSelector should not be empty (set {CLUSTER_SELECTOR_KEY})",
        )
    if spec.get("suspend") is True:
        yield _error(
            "spec.suspend",
            "cluster-selector-with-suspend",
            "the ClusterSelector mode doesn't support the suspend operation",
        )
    if spec.get("submissionMode") == "SidecarMode":
        yield _error(
            "spec.submissionMode",
            "cluster-selector-with-sidecar-mode",
            "ClusterSelector is not supported in SidecarMode",
        )
    if (_int(spec.get("backoffLimit")) or 0) > 0:
        yield _error(
            "spec.backoffLimit",
            "cluster-selector-with-backoff-limit",
            "BackoffLimit is incompatible with ClusterSelector mode",
        )


_SIDECAR_REFUSED_FIELDS = (
    ("submitterPodTemplate", "SubmitterPodTemplate", "sidecar-mode-with-submitter-pod-template"),
    ("submitterConfig", "SubmitterConfig", "sidecar-mode-with-submitter-config"),
)


def _submission_mode_rules(spec: dict) -> Errors:
    mode = spec.get("submissionMode")
    # Stricter than KubeRay: its CRD has no enum here and an unknown mode just never submits.
    if isinstance(mode, str) and mode not in SUBMISSION_MODES:
        yield _error(
            "spec.submissionMode",
            "unknown-submission-mode",
            f"unsupported value {mode!r}: supported values are {', '.join(SUBMISSION_MODES)}",
        )
    if mode == "InteractiveMode" and (_int(spec.get("backoffLimit")) or 0) > 0:
        yield _error(
            "spec.backoffLimit",
            "interactive-mode-with-backoff-limit",
            "BackoffLimit is incompatible with InteractiveMode",
        )
    if mode != "SidecarMode":
        return
    for field, name, rule in _SIDECAR_REFUSED_FIELDS:
        if spec.get(field) is not None:
            yield _error(f"spec.{field}", rule, f"Currently, SidecarMode doesn't support {name}")
    restart = _dig(spec, "rayClusterSpec", "headGroupSpec", "template", "spec", "restartPolicy")
    if restart not in (None, "", "Never"):
        yield _error(
            "spec.rayClusterSpec.headGroupSpec.template.spec.restartPolicy",
            "sidecar-mode-restart-policy",
            "restartPolicy for head Pod should be Never or unset when using SidecarMode",
        )


# --- RayJob deletion strategy (validateDeletionConfiguration and friends) ---------------------------

_DELETION_PATH = "spec.deletionStrategy"


def _deletion_rules(spec: dict) -> Errors:
    strategy = spec.get("deletionStrategy")
    if not isinstance(strategy, dict):
        return
    if not FEATURE_GATES["RayJobDeletionPolicy"]:
        yield _error(
            _DELETION_PATH,
            "feature-gate-disabled",
            "RayJobDeletionPolicy feature gate must be enabled to use DeletionStrategy",
        )
        return
    legacy = strategy.get("onSuccess") is not None or strategy.get("onFailure") is not None
    rules = _seq(strategy.get("deletionRules"))
    if rules and spec.get("shutdownAfterJobFinishes") is True:
        yield _error(
            f"{_DELETION_PATH}.deletionRules",
            "deletion-rules-with-shutdown",
            "spec.shutdownAfterJobFinishes and spec.deletionStrategy.deletionRules are mutually exclusive",
        )
    if rules and legacy:
        yield _error(
            _DELETION_PATH,
            "deletion-rules-with-legacy-policies",
            "Cannot use both legacy onSuccess/onFailure fields and deletionRules simultaneously",
        )
    elif legacy:
        yield from _legacy_deletion_rules(spec, strategy)
    elif rules:
        yield from _deletion_rule_list_rules(spec, rules)
    else:
        yield _error(
            _DELETION_PATH,
            "deletion-strategy-empty",
            "DeletionStrategy requires either BOTH onSuccess and onFailure, OR the deletionRules field "
            "(cannot be empty)",
        )


def _policy_context_rules(spec: dict, policy: Any, path: str, when: str) -> Errors:
    """Policies the cluster cannot honour: none to delete in selector mode, no workers to drop when autoscaling."""
    if _selector_mode(spec) and policy in ("DeleteCluster", "DeleteWorkers"):
        yield _error(
            path,
            "deletion-policy-with-cluster-selector",
            f"DeletionPolicyType '{policy}' not supported when ClusterSelector is set{when}",
        )
    elif policy == "DeleteWorkers" and _dig(spec, "rayClusterSpec", "enableInTreeAutoscaling") is True:
        yield _error(
            path,
            "delete-workers-with-autoscaling",
            "DeletionPolicyType 'DeleteWorkers' not supported with autoscaling enabled",
        )


def _legacy_deletion_rules(spec: dict, strategy: dict) -> Errors:
    for field, when in (("onSuccess", " (on success)"), ("onFailure", " (on failure)")):
        path = f"{_DELETION_PATH}.{field}"
        if strategy.get(field) is None:
            yield _error(
                path,
                "legacy-deletion-policy-incomplete",
                "both DeletionStrategy.OnSuccess and DeletionStrategy.OnFailure must be set when using the legacy "
                "deletion policy fields of DeletionStrategy",
            )
            continue
        policy = _dig(strategy, field, "policy")
        if policy is None:
            yield _error(
                f"{path}.policy",
                "legacy-deletion-policy-unset",
                f"the DeletionPolicyType field of DeletionStrategy.{field[0].upper() + field[1:]} cannot be unset "
                "when DeletionStrategy is enabled",
            )
            continue
        yield from _policy_context_rules(spec, policy, f"{path}.policy", when)
        if spec.get("shutdownAfterJobFinishes") is True and policy == "DeleteNone":
            yield _error(
                f"{path}.policy",
                "shutdown-with-delete-none",
                "shutdownAfterJobFinishes is set to 'true' while deletion policy is 'DeleteNone'",
            )


def _deletion_condition_rules(condition: dict, path: str) -> Errors:
    """validateDeletionCondition: exactly one status, non-negative TTL."""
    has_job_status = condition.get("jobStatus") is not None
    has_deployment_status = condition.get("jobDeploymentStatus") is not None
    if has_job_status and has_deployment_status:
        yield _error(
            path,
            "deletion-condition-both-statuses",
            "cannot set both JobStatus and JobDeploymentStatus at the same time",
        )
    elif not has_job_status and not has_deployment_status:
        yield _error(
            path,
            "deletion-condition-without-status",
            "exactly one of JobStatus and JobDeploymentStatus must be set",
        )
    ttl = _int(condition.get("ttlSeconds"))
    if ttl is not None and ttl < 0:
        yield _error(f"{path}.ttlSeconds", "deletion-condition-negative-ttl", "TTLSeconds must be non-negative")


def _deletion_rule_list_rules(spec: dict, rules: list) -> Errors:
    """validateDeletionRules: per-rule checks, uniqueness of (status, policy), then TTL ordering."""
    # (condition type, status) -> policy -> (ttl, index of the rule that set it)
    groups: dict[tuple[str, str], dict[str, tuple[int, int]]] = {}
    for index, rule in enumerate(rules):
        path = f"{_DELETION_PATH}.deletionRules[{index}]"
        condition, policy = _map(_map(rule).get("condition")), _map(rule).get("policy")
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
            yield _error(
                path,
                "deletion-rule-duplicate",
                f"duplicate rule for DeletionPolicyType '{policy}' and {status_type} '{status}'",
            )
            continue
        policies[policy] = (_int(condition.get("ttlSeconds")) or 0, index)
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
            yield _error(
                f"{_DELETION_PATH}.deletionRules[{index}].condition.ttlSeconds",
                "deletion-ttl-order",
                f"for {condition_type} '{status}': {policy} TTL ({ttl}) must be >= {previous[0]} TTL ({previous[1]})",
            )
        previous = (policy, ttl)


_RAYJOB_SPEC_RULES: tuple[Callable[[dict], Errors], ...] = (
    _job_lifecycle_rules,
    _deletion_rules,
    _cluster_source_rules,
    _submission_mode_rules,
)


def rayjob_rules(manifest: Any) -> list[FieldError]:
    """ValidateRayJobMetadata and ValidateRayJobSpec, the embedded cluster spec checked as a RayCluster's."""
    if (parts := _split(manifest)) is None:
        return []
    metadata, spec = parts
    errors = list(_name_rules(metadata, "RayJob", MAX_RAYJOB_NAME_LENGTH))
    if not isinstance(spec, dict):
        return errors
    errors += [error for rule in _RAYJOB_SPEC_RULES for error in rule(spec)]
    annotations = _map(metadata.get("annotations"))
    errors += _embedded_cluster_rules(spec.get("rayClusterSpec"), "spec.rayClusterSpec", annotations, "RayJob")
    return errors


# --- RayService -----------------------------------------------------------------------------------


def _cluster_upgrade_option_rules(spec: dict) -> Errors:
    """ValidateClusterUpgradeOptions, for the NewClusterWithIncrementalUpgrade strategy."""
    path = "spec.upgradeStrategy.clusterUpgradeOptions"
    if _dig(spec, "rayClusterConfig", "enableInTreeAutoscaling") is not True:
        yield _error(
            "spec.rayClusterConfig.enableInTreeAutoscaling",
            "incremental-upgrade-requires-autoscaler",
            "Ray Autoscaler is required for NewClusterWithIncrementalUpgrade",
        )
    options = _dig(spec, "upgradeStrategy", "clusterUpgradeOptions")
    if not isinstance(options, dict):
        if options is None:
            yield _error(
                path,
                "cluster-upgrade-options-required",
                "ClusterUpgradeOptions are required for NewClusterWithIncrementalUpgrade",
            )
        return
    max_surge = _int(options.get("maxSurgePercent")) if "maxSurgePercent" in options else DEFAULT_MAX_SURGE_PERCENT
    step = _int(options.get("stepSizePercent"))
    interval = _int(options.get("intervalSeconds"))
    if max_surge is not None and not 0 <= max_surge <= 100:
        yield _error(f"{path}.maxSurgePercent", "percent-out-of-range", "maxSurgePercent must be between 0 and 100")
    if step is None or not 0 <= step <= 100:
        yield _error(f"{path}.stepSizePercent", "percent-out-of-range", "stepSizePercent must be between 0 and 100")
    elif max_surge is not None and step > max_surge:
        yield _error(
            f"{path}.stepSizePercent",
            "step-exceeds-max-surge",
            "stepSizePercent must be less than or equal to maxSurgePercent",
        )
    if interval is None or interval <= 0:
        yield _error(f"{path}.intervalSeconds", "interval-not-positive", "intervalSeconds must be greater than 0")
    if not _str(options.get("gatewayClassName")):
        yield _error(
            f"{path}.gatewayClassName",
            "gateway-class-name-required",
            "gatewayClassName is required for NewClusterWithIncrementalUpgrade",
        )


def _rayservice_spec_rules(spec: dict, annotations: dict) -> Errors:
    cluster_path = "spec.rayClusterConfig"
    yield from _embedded_cluster_rules(spec.get("rayClusterConfig"), cluster_path, annotations, "RayService")
    if _str(_dig(spec, "rayClusterConfig", "headGroupSpec", "headService", "metadata", "name")):
        yield _error(
            f"{cluster_path}.headGroupSpec.headService.metadata.name",
            "head-service-name-set",
            "spec.rayClusterConfig.headGroupSpec.headService.metadata.name should not be set",
        )
    strategy_type = _dig(spec, "upgradeStrategy", "type")
    yield from _upgrade_type_rule(strategy_type, "spec.upgradeStrategy.type", RAYSERVICE_UPGRADE_TYPES)
    delay = _int(spec.get("rayClusterDeletionDelaySeconds"))
    if delay is not None and delay < 0:
        yield _error(
            "spec.rayClusterDeletionDelaySeconds",
            "negative-deletion-delay",
            f"Spec.RayClusterDeletionDelaySeconds should be a non-negative integer, got {delay}",
        )
    if FEATURE_GATES["RayServiceIncrementalUpgrade"] and strategy_type == "NewClusterWithIncrementalUpgrade":
        yield from _cluster_upgrade_option_rules(spec)


def rayservice_rules(manifest: Any) -> list[FieldError]:
    """ValidateRayServiceMetadata and ValidateRayServiceSpec."""
    if (parts := _split(manifest)) is None:
        return []
    metadata, spec = parts
    annotations = _map(metadata.get("annotations"))
    errors = list(_name_rules(metadata, "RayService", MAX_RAYSERVICE_NAME_LENGTH))
    errors += _initializing_timeout_rules(annotations)
    if isinstance(spec, dict):
        errors += _rayservice_spec_rules(spec, annotations)
    return errors


RULES_BY_KIND: dict[str, Callable[[Any], list[FieldError]]] = {
    "RayJob": rayjob_rules,
    "RayCluster": raycluster_rules,
    "RayService": rayservice_rules,
}

