"""The CRD schemas installed behind an API server, read once per process and read again when they may differ.

``installed_schemas(api_client)`` is what a task validates against: the first object of a kind that a
process validates for an API server reads that kind's CRD (only that one: a RayJob task never reads the
RayCluster or RayService CRD); every later one, through any client of the same server, uses the copy.
Validating a backfill of N RayJobs then costs one CRD read, not N.

How a changed CRD is noticed (``refresh``). Not by a request per object: even a metadata-only GET of the
CRD is a round trip, as dear as the create it would guard, and the copy is stale only after a KubeRay
upgrade, a rare event. Instead, by the two ways a stale copy can show:

- the copy refuses an object (``validate_manifest``): a newer CRD may allow it (a field KubeRay added).
  The CRD is read again, and the object refused only if the fresh copy refuses it too;
- the API server refuses (422 Invalid) an object the copy passed: a newer CRD may forbid it. The CRD is
  read again and, if it changed, the object validated anew (refused, naming every field) or its create
  retried once (``core.validated_create``).

What neither shows: a field the newer CRD dropped, which the server then prunes with a warning
(``fieldValidation=Warn``, its default) instead of refusing. Such an object is created without the field
until the process ends, as it is by any client that does not validate.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from ..resources import RAY_KINDS
from .schema import CrdSchema, SchemaRegistry

logger = logging.getLogger(__name__)


def crd_digest(crd: dict[str, Any]) -> str:
    """What identifies a CRD's content (its spec); metadata such as resourceVersion is left out, so that the
    same CRD served by another API server at the same address (a local plane restarted) counts as unchanged."""
    return hashlib.sha256(json.dumps(crd.get("spec") or {}, sort_keys=True).encode()).hexdigest()


@dataclass
class CrdCopy:
    """One CRD as last read: its schema (None: the CRD is not installed, or lacks the version) and digest."""

    schema: CrdSchema | None
    digest: str


@dataclass
class InstalledCrds:
    """The copies of one API server's Ray CRDs, shared by every client of that server in this process."""

    server: str
    version: str = "v1"
    copies: dict[str, CrdCopy] = field(default_factory=dict)  # by kind
    reads: int = 0  # CRD reads so far (tests count them)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def copy_of(self, kind: str, api_client: Any) -> CrdCopy:
        with self.lock:  # concurrent first uses read the CRD once
            if kind not in self.copies:
                self.copies[kind] = self.read(kind, api_client)
            return self.copies[kind]

    def reread(self, kind: str, api_client: Any) -> bool:
        """Read the CRD again; True when it differs from the copy (the copy is then replaced)."""
        with self.lock:
            fresh = self.read(kind, api_client)
            known = self.copies.get(kind)
            self.copies[kind] = fresh
        changed = known is None or known.digest != fresh.digest
        if changed:
            logger.info("The %s CRD at %s changed since it was read; validating against the new one", kind, self.server)
        return changed

    def read(self, kind: str, api_client: Any) -> CrdCopy:
        from ..kube.errors import NotFoundError
        from ..kube.sync_client import RayObjectsClient

        crd_name = RAY_KINDS[kind].crd_name
        self.reads += 1
        try:
            crd = RayObjectsClient(api_client).read_crd(crd_name)
        except NotFoundError:
            logger.info("CRD %s is not installed at %s", crd_name, self.server)
            return CrdCopy(None, "")
        versions = (crd.get("spec") or {}).get("versions") or []
        usable = any(v.get("name") == self.version for v in versions)
        return CrdCopy(CrdSchema.from_crd(crd, self.version) if usable else None, crd_digest(crd))


_SERVERS: dict[tuple[str, str], InstalledCrds] = {}
_SERVERS_LOCK = threading.Lock()


class ClusterSchemas(SchemaRegistry):
    """A SchemaRegistry over the process-wide copies of one API server's CRDs, read through ``api_client``."""

    def __init__(self, crds: InstalledCrds, api_client: Any) -> None:
        super().__init__()
        self.crds, self.api_client = crds, api_client

    def for_kind(self, kind: str) -> CrdSchema | None:
        return self.crds.copy_of(kind, self.api_client).schema if kind in RAY_KINDS else None

    def kinds(self) -> list[str]:
        return sorted(kind for kind in RAY_KINDS if self.for_kind(kind) is not None)

    def refresh(self, kind: str) -> bool:
        return kind in RAY_KINDS and self.crds.reread(kind, self.api_client)


def installed_schemas(api_client: Any, version: str = "v1") -> ClusterSchemas:
    """The schemas of the Ray CRDs installed behind a sync ``kubernetes.client.ApiClient``, shared per API
    server URL in this process: each CRD is read on first use, and again only when ``refresh`` asks."""
    key = (str(api_client.configuration.host).rstrip("/"), version)
    with _SERVERS_LOCK:
        crds = _SERVERS.get(key)
        if crds is None:
            crds = _SERVERS[key] = InstalledCrds(key[0], version)
    return ClusterSchemas(crds, api_client)


def forget_installed_schemas() -> None:
    """Drop every copy (tests; a process that knows the CRDs were replaced)."""
    with _SERVERS_LOCK:
        _SERVERS.clear()
