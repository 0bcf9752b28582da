"""The create of an object already validated client-side against the installed CRD.

One request in the usual case. The object was checked against the CRD installed in the cluster
(``core.validation.installed_schemas``: read once per process and API server), so a server-side dry run
first would only add the verdict of admission webhooks, at the price of a second round trip per object:
it is a choice (``server_dry_run``), off by default. Either way, what the server refuses it refuses
before anything is stored.

When the server refuses (422 Invalid) an object the copy of the CRD passed, the CRD may have changed
since it was read: it is read again and, if it changed, the object is validated against the new one
(a ValidationError names every field) and, if that passes, created once more. An unchanged CRD means the
refusal has another cause (a webhook, a CEL rule): it is raised as is.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from kuberay_provider.core.kube.errors import InvalidError
from kuberay_provider.core.validation import SchemaRegistry, ensure_valid

log = logging.getLogger(__name__)


class Creates(Protocol):
    def create(self, manifest: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]: ...


def create_validated(
    kube: Creates, manifest: dict[str, Any], schemas: SchemaRegistry | None, *, server_dry_run: bool = False
) -> dict[str, Any]:
    """Create ``manifest`` (a server dry run first with ``server_dry_run``); see the module's docstring."""
    try:
        return _create(kube, manifest, server_dry_run)
    except InvalidError:
        kind = str(manifest.get("kind"))
        if schemas is None or not schemas.refresh(kind):
            raise
        fresh = schemas.for_kind(kind)
        ensure_valid(manifest, SchemaRegistry([fresh] if fresh else []))  # as just read: not re-read once more
        log.info("The CRD changed since it was read; the object passes the new one: creating it again")
        return _create(kube, manifest, server_dry_run)


def _create(kube: Creates, manifest: dict[str, Any], server_dry_run: bool) -> dict[str, Any]:
    if server_dry_run:
        kube.create(manifest, dry_run=True)
    return kube.create(manifest)
