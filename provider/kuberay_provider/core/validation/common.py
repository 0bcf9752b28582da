"""Shared pieces of KubeRay's rules: constants, tolerant accessors, Kubernetes name syntax, Go value parsers, metadata rules.

Part of the port of KubeRay v1.7.0's validation; see ``rules.py`` for the source and the conventions.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from ..errors import FieldError
from ..naming import MAX_DNS_LABEL, MAX_LABEL_VALUE

# The name limits of ray-operator/controllers/ray/utils/constant.go are naming.MAX_RAY*_NAME.
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


def rule_error(path: str, rule: str, message: str) -> FieldError:
    return FieldError(path, f"kuberay:{rule}", message)


# --- tolerant accessors: a wrong type reads as "absent" -------------------------------------------


def as_map(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def as_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def as_str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def dig(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def find_env(envs: Any, name: str) -> dict[str, Any] | None:
    return next((e for e in as_list(envs) if isinstance(e, dict) and e.get("name") == name), None)


# --- Kubernetes name syntax (k8s.io/apimachinery/pkg/util/validation) ----------------------------

_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED_NAME_PART = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
QUALIFIED_NAME_MAX_LENGTH = 63  # of the name part of a label or annotation key (qualifiedNameMaxLength)


def dns1035_label_errors(value: str) -> list[str]:
    errors = []
    if len(value) > MAX_DNS_LABEL:
        errors.append(f"must be no more than {MAX_DNS_LABEL} characters")
    if not _DNS1035_LABEL.fullmatch(value):
        errors.append(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
            "alphabetic character, and end with an alphanumeric character"
        )
    return errors


def dns1123_label_errors(value: str) -> list[str]:
    errors = []
    if len(value) > MAX_DNS_LABEL:
        errors.append(f"must be no more than {MAX_DNS_LABEL} characters")
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
    elif len(name) > QUALIFIED_NAME_MAX_LENGTH:
        errors.append(f"name part must be no more than {QUALIFIED_NAME_MAX_LENGTH} characters")
    elif not _QUALIFIED_NAME_PART.fullmatch(name):
        errors.append(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
            "with an alphanumeric character"
        )
    return errors


def label_value_errors(value: str) -> list[str]:
    if len(value) > MAX_LABEL_VALUE:
        return [f"must be no more than {MAX_LABEL_VALUE} characters"]
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
_GO_DURATION_UNIT_NS = {
    "ns": 1,
    "us": 10**3,
    "µs": 10**3,
    "μs": 10**3,
    "ms": 10**6,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
}
_MAX_DURATION_NS = (1 << 63) - 1


def parse_ray_version(text: str) -> tuple[int, ...] | None:
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


def go_duration_seconds(text: str) -> float | None:
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


def name_rules(metadata: dict[str, Any], kind: str, max_length: int) -> Errors:
    """Validate<Kind>Metadata: length and DNS-1035. A generateName is checked as the name it yields."""
    name, path = as_str(metadata.get("name")), "metadata.name"
    if not name and as_str(metadata.get("generateName")):
        name, path = as_str(metadata["generateName"]) + "a" * GENERATED_SUFFIX_LENGTH, "metadata.generateName"
    if not name:
        return  # a missing name is the schema layer's to report
    if len(name) > max_length:
        yield rule_error(path, "name-too-long", f"{kind} name should be no more than {max_length} characters")
    if problems := dns1035_label_errors(name):
        yield rule_error(
            path, "name-not-dns1035", f"{kind} name should be a valid DNS1035 label: {'; '.join(problems)}"
        )


def initializing_timeout_rules(annotations: dict[str, Any]) -> Errors:
    value = annotations.get(INITIALIZING_TIMEOUT_ANNOTATION)
    if not isinstance(value, str) or not value:
        return
    path, key = "metadata.annotations", INITIALIZING_TIMEOUT_ANNOTATION
    if (seconds := go_duration_seconds(value)) is None and re.fullmatch(r"[+-]?[0-9]+", value):
        seconds = float(int(value))
    if seconds is None:
        yield rule_error(
            path,
            "initializing-timeout-format",
            f"annotation {key} has invalid format: {value}. Expected Go duration format (e.g., '5m', "
            "'1h') or positive integer seconds",
        )
    elif seconds <= 0:
        yield rule_error(path, "initializing-timeout-not-positive", f"annotation {key} must be positive, got: {value}")
