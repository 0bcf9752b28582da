"""ObjectMeta rules and the defaults a real API server fills in for the built-in kinds it serves."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .errors import Cause
from .registry import ResourceType

DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?\Z")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]\Z")
TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024
LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _name_rule(rtype: ResourceType) -> tuple[re.Pattern[str], int, str]:
    if rtype.kind == "Namespace":
        return DNS1123_LABEL, 63, "a lowercase RFC 1123 label"
    if rtype.kind == "Service":
        return DNS1035_LABEL, 63, "a DNS-1035 label"
    return DNS1123_SUBDOMAIN, 253, "a lowercase RFC 1123 subdomain"


def _label_causes(labels: Any) -> list[Cause]:
    if labels is None:
        return []
    if not isinstance(labels, dict):
        return [Cause("metadata.labels", "Invalid value: must be a map of strings")]
    causes = []
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        if (prefix and not DNS1123_SUBDOMAIN.match(prefix)) or len(name) > 63 or not LABEL_NAME.match(name):
            causes.append(
                Cause(
                    "metadata.labels",
                    f'Invalid value: "{key}": name part must consist of alphanumeric '
                    "characters, '-', '_' or '.', and must start and end with an alphanumeric character",
                )
            )
        if not isinstance(value, str) or len(value) > 63 or (value and not LABEL_NAME.match(value)):
            causes.append(
                Cause(
                    "metadata.labels",
                    f'Invalid value: "{value}": a valid label must be an empty string '
                    "or consist of alphanumeric characters, '-', '_' or '.', at most 63 characters",
                )
            )
    return causes


def metadata_causes(rtype: ResourceType, obj: dict[str, Any]) -> list[Cause]:
    """What ObjectMeta validation refuses (name, labels, annotations)."""
    meta = obj.get("metadata") or {}
    causes: list[Cause] = []
    name = meta.get("name", "")
    pattern, limit, words = _name_rule(rtype)
    if not name:
        causes.append(Cause("metadata.name", "Required value: name or generateName is required", "FieldValueRequired"))
    elif len(name) > limit or not pattern.match(name):
        causes.append(Cause("metadata.name", f'Invalid value: "{name}": must be {words} of at most {limit} characters'))
    causes += _label_causes(meta.get("labels"))
    annotations = meta.get("annotations") or {}
    if not isinstance(annotations, dict) or any(not isinstance(v, str) for v in annotations.values()):
        causes.append(Cause("metadata.annotations", "Invalid value: must be a map of strings"))
    elif sum(len(k) + len(v) for k, v in annotations.items()) > TOTAL_ANNOTATION_SIZE_LIMIT:
        causes.append(
            Cause(
                "metadata.annotations",
                f"Too long: must have at most {TOTAL_ANNOTATION_SIZE_LIMIT} bytes",
                "FieldValueTooLong",
            )
        )
    return causes


# --- built-in defaulting -----------------------------------------------------------------------------


class ClusterIpAllocator:
    """Hands out fake ClusterIPs from 10.96.0.0/12, as kube-apiserver's service IP allocator would."""

    def __init__(self) -> None:
        self._network = ipaddress.ip_network("10.96.0.0/12")
        self._next = 1

    def allocate(self) -> str:
        self._next += 1
        return str(self._network[self._next])


def _default_namespace(obj: dict[str, Any], _: ClusterIpAllocator) -> None:
    meta = obj["metadata"]
    meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
    obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    obj["status"] = {"phase": "Active"}


def _default_service(obj: dict[str, Any], allocator: ClusterIpAllocator) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if spec.get("clusterIP") != "None":
        spec.setdefault("clusterIP", allocator.allocate())
    spec.setdefault("clusterIPs", [spec["clusterIP"]])
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))
    obj["status"] = {"loadBalancer": {}}


def _default_pod(obj: dict[str, Any], _: ClusterIpAllocator) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}


def _default_crd(obj: dict[str, Any], _: ClusterIpAllocator) -> None:
    # The CRD is usable at once: report it Established as the apiextensions controller would.
    names = obj.get("spec", {}).get("names", {})
    now = now_rfc3339()
    obj["status"] = {
        "acceptedNames": names,
        "storedVersions": [v["name"] for v in obj.get("spec", {}).get("versions", []) if v.get("storage")],
        "conditions": [
            {
                "type": "NamesAccepted",
                "status": "True",
                "reason": "NoConflicts",
                "message": "no conflicts found",
                "lastTransitionTime": now,
            },
            {
                "type": "Established",
                "status": "True",
                "reason": "InitialNamesAccepted",
                "message": "the initial names have been accepted",
                "lastTransitionTime": now,
            },
        ],
    }


CREATE_DEFAULTS: dict[str, Callable[[dict[str, Any], ClusterIpAllocator], None]] = {
    "Namespace": _default_namespace,
    "Service": _default_service,
    "Pod": _default_pod,
    "CustomResourceDefinition": _default_crd,
}


def crd_causes(crd: dict[str, Any]) -> list[Cause]:
    """The structural checks a CRD must pass before it can be served."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    causes = []
    for field in ("group", "scope"):
        if not spec.get(field):
            causes.append(Cause(f"spec.{field}", "Required value", "FieldValueRequired"))
    for field in ("plural", "kind"):
        if not names.get(field):
            causes.append(Cause(f"spec.names.{field}", "Required value", "FieldValueRequired"))
    versions = spec.get("versions") or []
    if not versions:
        causes.append(Cause("spec.versions", "Required value", "FieldValueRequired"))
    elif sum(1 for v in versions if v.get("storage")) != 1:
        causes.append(Cause("spec.versions", "Invalid value: must have exactly one version marked as storage version"))
    expected = f"{names.get('plural')}.{spec.get('group')}"
    if not causes and crd.get("metadata", {}).get("name") != expected:
        given = crd["metadata"].get("name")
        causes.append(Cause("metadata.name", f'Invalid value: "{given}": must be spec.names.plural+"."+spec.group'))
    return causes
