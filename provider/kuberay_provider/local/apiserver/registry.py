"""Which resources the server serves: the built-in core ones and those its installed CRDs define."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

CRD_GROUP = "apiextensions.k8s.io"
RBAC_GROUP = "rbac.authorization.k8s.io"


@dataclass(frozen=True)
class PrinterColumn:
    """A column of ``kubectl get`` (a CRD's ``additionalPrinterColumns`` entry)."""

    name: str
    json_path: str
    type: str = "string"
    format: str = ""
    description: str = ""
    priority: int = 0


AGE_COLUMN = PrinterColumn("Age", ".metadata.creationTimestamp", "date")


@dataclass(frozen=True)
class ResourceType:
    """One served (group, version, resource)."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    has_status: bool = False
    printer_columns: tuple[PrinterColumn, ...] = (AGE_COLUMN,)
    schema: dict[str, Any] | None = field(default=None, compare=False, hash=False)
    # CRD-defined types: PUT must carry a resourceVersion, names are DNS subdomains.
    custom: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def storage_key(self) -> tuple[str, str]:
        """Objects are kept once per (group, resource), whatever version they are read through."""
        return (self.group, self.plural)

    @property
    def group_version_path(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"


def _core(
    plural: str,
    kind: str,
    *,
    namespaced: bool = True,
    short: tuple[str, ...] = (),
    status: bool = False,
    columns: tuple[PrinterColumn, ...] = (AGE_COLUMN,),
    categories: tuple[str, ...] = (),
) -> ResourceType:
    return ResourceType("", "v1", plural, kind, namespaced, short, categories, status, columns)


BUILTIN_TYPES: tuple[ResourceType, ...] = (
    _core(
        "namespaces",
        "Namespace",
        namespaced=False,
        short=("ns",),
        status=True,
        columns=(PrinterColumn("Status", ".status.phase"), AGE_COLUMN),
    ),
    _core("configmaps", "ConfigMap", short=("cm",)),
    _core("secrets", "Secret"),
    _core(
        "services",
        "Service",
        short=("svc",),
        status=True,
        categories=("all",),
        columns=(PrinterColumn("Type", ".spec.type"), PrinterColumn("Cluster-IP", ".spec.clusterIP"), AGE_COLUMN),
    ),
    _core(
        "pods",
        "Pod",
        short=("po",),
        status=True,
        categories=("all",),
        columns=(
            PrinterColumn("Status", ".status.phase"),
            PrinterColumn("IP", ".status.podIP", priority=1),
            AGE_COLUMN,
        ),
    ),
    _core(
        "events",
        "Event",
        short=("ev",),
        columns=(
            PrinterColumn("Type", ".type"),
            PrinterColumn("Reason", ".reason"),
            PrinterColumn("Object", ".involvedObject.name"),
            PrinterColumn("Message", ".message"),
            AGE_COLUMN,
        ),
    ),
    _core("endpoints", "Endpoints", short=("ep",)),
    _core("serviceaccounts", "ServiceAccount", short=("sa",)),
    # Stored, served and enforced for ServiceAccount tokens (rbac.py); the plane's own token is an admin.
    ResourceType(RBAC_GROUP, "v1", "roles", "Role", True),
    ResourceType(RBAC_GROUP, "v1", "rolebindings", "RoleBinding", True),
    ResourceType(RBAC_GROUP, "v1", "clusterroles", "ClusterRole", False),
    ResourceType(RBAC_GROUP, "v1", "clusterrolebindings", "ClusterRoleBinding", False),
    ResourceType(
        CRD_GROUP,
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        False,
        ("crd", "crds"),
        (),
        True,
        (PrinterColumn("Created At", ".metadata.creationTimestamp"),),
    ),
)

CRD_TYPE = BUILTIN_TYPES[-1]
NAMESPACE_TYPE = BUILTIN_TYPES[0]


def _columns_from_crd(version: dict[str, Any]) -> tuple[PrinterColumn, ...]:
    declared = version.get("additionalPrinterColumns")
    if declared is None:
        return (AGE_COLUMN,)
    return tuple(
        PrinterColumn(
            name=column.get("name", ""),
            json_path=column.get("jsonPath", ""),
            type=column.get("type", "string"),
            format=column.get("format", ""),
            description=column.get("description", ""),
            priority=int(column.get("priority", 0)),
        )
        for column in declared
    )


def types_from_crd(crd: dict[str, Any]) -> list[ResourceType]:
    """Every served version of a CustomResourceDefinition as a ResourceType."""
    spec = crd.get("spec", {})
    names = spec.get("names", {})
    served: list[ResourceType] = []
    for version in spec.get("versions", []):
        if not version.get("served", True):
            continue
        served.append(
            ResourceType(
                group=spec["group"],
                version=version["name"],
                plural=names["plural"],
                kind=names["kind"],
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                short_names=tuple(names.get("shortNames", ())),
                categories=tuple(names.get("categories", ())),
                has_status="status" in (version.get("subresources") or {}),
                printer_columns=_columns_from_crd(version),
                schema=(version.get("schema") or {}).get("openAPIV3Schema"),
                custom=True,
            )
        )
    return served


def version_priority(version: str) -> tuple[int, int, int]:
    """Kubernetes' version ordering: GA before beta before alpha, then higher numbers first (sort key)."""
    match = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if not match:
        return (3, 0, 0)
    major, stage, minor = match.groups()
    stage_rank = {None: 0, "beta": 1, "alpha": 2}[stage]
    return (stage_rank, -int(major), -int(minor or 0))


class ResourceRegistry:
    """The served resource types; CRD-defined ones are replaced wholesale when CRDs change."""

    def __init__(self) -> None:
        self._builtin = {(t.group, t.version, t.plural): t for t in BUILTIN_TYPES}
        self._custom: dict[tuple[str, str, str], ResourceType] = {}
        # Bumped on every change so discovery / OpenAPI caches (ours and kubectl's) can tell.
        self.revision = 0

    def set_crds(self, crds: Iterable[dict[str, Any]]) -> None:
        custom: dict[tuple[str, str, str], ResourceType] = {}
        for crd in crds:
            for rtype in types_from_crd(crd):
                custom[(rtype.group, rtype.version, rtype.plural)] = rtype
        self._custom = custom
        self.revision += 1

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        key = (group, version, plural)
        return self._builtin.get(key) or self._custom.get(key)

    def all(self) -> Iterator[ResourceType]:
        yield from self._builtin.values()
        yield from self._custom.values()

    def groups(self) -> dict[str, list[str]]:
        """Non-core group -> its versions, preferred first."""
        versions: dict[str, set[str]] = {}
        for rtype in self.all():
            if rtype.group:
                versions.setdefault(rtype.group, set()).add(rtype.version)
        return {group: sorted(found, key=version_priority) for group, found in sorted(versions.items())}

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [t for t in self.all() if t.group == group and t.version == version]
