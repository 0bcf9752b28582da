"""The API server's semantics, free of HTTP: create, read, update, patch, delete (with finalizers and the
garbage collector in garbage_collection.py).

Every method runs synchronously on the server's event loop (see store.py), so each request is atomic.
"""

from __future__ import annotations

import builtins
import copy
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import ApiError, Cause, already_exists, bad_request, conflict, invalid, not_found
from .garbage_collection import Deletions
from .objectmeta import CREATE_DEFAULTS, ClusterIpAllocator, crd_causes, metadata_causes, now_rfc3339
from .patching import APPLY_PATCH, apply_patch, parse_document, server_side_apply
from .registry import CRD_TYPE, NAMESPACE_TYPE, ResourceRegistry, ResourceType
from .schema import SchemaChecker
from .store import ObjectStore, StorageKey

# k8s.io/apimachinery/pkg/util/rand's alphabet: no vowels, no confusable characters.
GENERATE_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
SERVER_OWNED_METADATA = (
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "selfLink",
)
INITIAL_NAMESPACES = ("default", "kube-system", "kube-public")
UNDELETABLE_NAMESPACES = frozenset(INITIAL_NAMESPACES)
PROPAGATION_POLICIES = ("Background", "Foreground", "Orphan")


@dataclass
class WriteOptions:
    dry_run: bool = False
    field_validation: str = "Strict"  # Strict, Warn or Ignore (kubectl sends Strict)
    field_manager: str = ""


@dataclass
class DeleteOptions:
    dry_run: bool = False
    propagation_policy: str = "Background"
    precondition_uid: str = ""
    precondition_resource_version: str = ""


@dataclass
class WriteResult:
    obj: dict[str, Any]
    created: bool = False
    warnings: list[str] = field(default_factory=list)


def _body_of(obj: dict[str, Any]) -> dict[str, Any]:
    """Everything but metadata and status: a change here is a spec change and bumps the generation."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


class Cluster:
    """Objects, served types and the rules tying them together."""

    def __init__(self, history_limit: int = 10_000) -> None:
        self.store = ObjectStore(history_limit)
        self.registry = ResourceRegistry()
        self._schemas = SchemaChecker()
        self._cluster_ips = ClusterIpAllocator()
        # Server-side apply: the last configuration each field manager applied, per object.
        self._applied: dict[tuple[StorageKey, str, str, str], dict[str, Any]] = {}
        self.deletions = Deletions(self.store, self._forget_removed)
        for name in INITIAL_NAMESPACES:
            self.create(NAMESPACE_TYPE, "", {"metadata": {"name": name}}, WriteOptions())

    # --- reads ----------------------------------------------------------------------------------------

    def present(self, rtype: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        """The object as read through ``rtype``'s version (versions of a CRD share storage, no conversion)."""
        if obj.get("apiVersion") == rtype.api_version and obj.get("kind") == rtype.kind:
            return obj
        return {**obj, "apiVersion": rtype.api_version, "kind": rtype.kind}

    def get(self, rtype: ResourceType, namespace: str, name: str) -> dict[str, Any]:
        obj = self.store.get(rtype.storage_key, namespace, name)
        if obj is None:
            raise not_found(rtype.plural, rtype.group, name)
        return obj

    def list(
        self, rtype: ResourceType, namespace: str | None, matches: Callable[[dict[str, Any]], bool]
    ) -> list[dict[str, Any]]:
        return [obj for obj in self.store.list(rtype.storage_key, namespace or None) if matches(obj)]

    def crd_of(self, rtype: ResourceType) -> dict[str, Any]:
        return self.get(CRD_TYPE, "", f"{rtype.plural}.{rtype.group}")

    # --- admission ------------------------------------------------------------------------------------

    def _decode(self, rtype: ResourceType, body: Any, namespace: str) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise bad_request(f"the body of a {rtype.kind} must be a JSON object")
        obj = copy.deepcopy(body)
        if obj.get("kind", rtype.kind) != rtype.kind:
            raise bad_request(
                f"the kind in the data ({obj.get('kind')}) does not match the expected kind ({rtype.kind})"
            )
        api_version = obj.get("apiVersion", rtype.api_version)
        if api_version != rtype.api_version:
            raise bad_request(
                f"the API version in the data ({api_version}) does not match the expected API version "
                f"({rtype.api_version})"
            )
        obj["apiVersion"], obj["kind"] = rtype.api_version, rtype.kind
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if rtype.namespaced:
            if meta.get("namespace") not in (None, "", namespace):
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        return obj

    # builtins.list: in this class body, a bare ``list`` is the method above.
    def _admit(self, rtype: ResourceType, obj: dict[str, Any], options: WriteOptions) -> builtins.list[str]:
        """Validate (and for custom resources prune and default) ``obj`` in place; returns warnings."""
        causes = metadata_causes(rtype, obj)
        warnings: list[str] = []
        if rtype.custom:
            outcome = self._schemas.check(obj, self.crd_of(rtype), rtype.version, rtype.schema)
            unknown = [f'unknown field "{path}"' for path in outcome.unknown_fields]
            if unknown and options.field_validation == "Strict":
                raise bad_request(
                    f'{rtype.kind} in version "{rtype.version}" cannot be handled as a {rtype.kind}: '
                    f"strict decoding error: {', '.join(unknown)}",
                    [Cause(path, "unknown field", "FieldValueInvalid") for path in outcome.unknown_fields],
                )
            if options.field_validation == "Warn":
                warnings += unknown
            causes += outcome.causes
        elif rtype == CRD_TYPE:
            causes += crd_causes(obj)
        if causes:
            raise invalid(rtype.kind, rtype.group, obj["metadata"].get("name", ""), causes)
        return warnings

    def _require_namespace(self, rtype: ResourceType, namespace: str) -> None:
        if rtype.namespaced and self.store.get(NAMESPACE_TYPE.storage_key, "", namespace) is None:
            raise not_found("namespaces", "", namespace)

    def _generate_name(self, rtype: ResourceType, namespace: str, prefix: str) -> str:
        prefix = prefix[: 63 - 5] if rtype.kind in ("Namespace", "Service") else prefix[: 253 - 5]
        while True:
            name = prefix + "".join(random.choices(GENERATE_NAME_ALPHABET, k=5))
            if self.store.get(rtype.storage_key, namespace, name) is None:
                return name

    # --- writes ---------------------------------------------------------------------------------------

    def create(self, rtype: ResourceType, namespace: str, body: Any, options: WriteOptions) -> WriteResult:
        obj = self._decode(rtype, body, namespace)
        meta = obj["metadata"]
        self._require_namespace(rtype, namespace)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = self._generate_name(rtype, namespace, meta["generateName"])
        for key in SERVER_OWNED_METADATA:
            meta.pop(key, None)
        if rtype.has_status:
            obj.pop("status", None)  # status is written through /status only
        warnings = self._admit(rtype, obj, options)
        if self.store.get(rtype.storage_key, namespace, meta["name"]) is not None:
            raise already_exists(rtype.plural, rtype.group, meta["name"])
        defaults = CREATE_DEFAULTS.get(rtype.kind) if not rtype.custom else None
        if defaults:
            defaults(obj, self._cluster_ips)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now_rfc3339(), generation=1)
        if not options.dry_run:
            saved = self.store.save(rtype.storage_key, obj)
            self._after_change(rtype.storage_key)
            self.deletions.collect_if_orphaned(rtype.storage_key, saved)
        return WriteResult(obj, created=True, warnings=warnings)

    def update(
        self, rtype: ResourceType, namespace: str, name: str, body: Any, options: WriteOptions, subresource: str = ""
    ) -> WriteResult:
        current = self.get(rtype, namespace, name)
        proposed = self._decode(rtype, body, namespace)
        meta = proposed["metadata"]
        if meta.get("name", name) != name:
            raise bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})"
            )
        wanted_version = str(meta.get("resourceVersion") or "")
        if not wanted_version and rtype.custom:
            raise invalid(
                rtype.kind,
                rtype.group,
                name,
                [Cause("metadata.resourceVersion", "Invalid value: 0x0: must be specified for an update")],
            )
        if wanted_version and wanted_version != current["metadata"]["resourceVersion"]:
            raise conflict(rtype.plural, rtype.group, name)
        return self._commit_update(rtype, current, proposed, options, subresource)

    def patch(
        self,
        rtype: ResourceType,
        namespace: str,
        name: str,
        content_type: str,
        raw: bytes,
        options: WriteOptions,
        subresource: str = "",
    ) -> WriteResult:
        if content_type == APPLY_PATCH:
            return self._apply(rtype, namespace, name, raw, options, subresource)
        document = parse_document(raw, allow_yaml=False)
        current = self.get(rtype, namespace, name)
        patched = apply_patch(content_type, copy.deepcopy(current), document)
        if not isinstance(patched, dict) or not isinstance(patched.get("metadata"), dict):
            raise bad_request("the patch did not produce an object with metadata")
        if patched["metadata"].get("name") != name:
            raise bad_request("metadata.name cannot be changed by a patch")
        if str(patched["metadata"].get("resourceVersion", "")) not in ("", current["metadata"]["resourceVersion"]):
            raise conflict(rtype.plural, rtype.group, name)
        return self._commit_update(rtype, current, self._decode(rtype, patched, namespace), options, subresource)

    def _apply(
        self, rtype: ResourceType, namespace: str, name: str, raw: bytes, options: WriteOptions, subresource: str
    ) -> WriteResult:
        """Server-side apply (``kubectl apply --server-side``), see patching.server_side_apply."""
        if not options.field_manager:
            required = Cause("fieldManager", "Required value: is required for apply patch", "FieldValueRequired")
            raise invalid("PatchOptions", "meta.k8s.io", "", [required])
        applied = parse_document(raw, allow_yaml=True)
        if not isinstance(applied, dict) or not applied.get("apiVersion") or not applied.get("kind"):
            raise bad_request("an applied configuration must be an object with apiVersion and kind")
        applied_meta = applied.setdefault("metadata", {})
        if applied_meta.get("name", name) != name:
            raise bad_request(
                f"the name of the object ({applied_meta.get('name')}) does not match the name on the URL ({name})"
            )
        applied_meta["name"] = name
        record_key = (rtype.storage_key, namespace, name, f"{options.field_manager}/{subresource}")
        current = self.store.get(rtype.storage_key, namespace, name)
        if current is None:
            if subresource:
                raise not_found(rtype.plural, rtype.group, name)
            result = self.create(rtype, namespace, applied, options)
        else:
            merged = server_side_apply(copy.deepcopy(current), applied, self._applied.get(record_key))
            result = self._commit_update(rtype, current, self._decode(rtype, merged, namespace), options, subresource)
        if not options.dry_run:
            self._applied[record_key] = applied
        return result

    def _commit_update(
        self,
        rtype: ResourceType,
        current: dict[str, Any],
        proposed: dict[str, Any],
        options: WriteOptions,
        subresource: str,
    ) -> WriteResult:
        if subresource == "status":
            status = proposed.get("status")
            proposed = copy.deepcopy(current)
            proposed.pop("status", None)
            if status is not None:
                proposed["status"] = status
        elif rtype.has_status:
            proposed.pop("status", None)
            if "status" in current:
                proposed["status"] = copy.deepcopy(current["status"])
        old_meta, meta = current["metadata"], proposed["metadata"]
        for key in SERVER_OWNED_METADATA:
            meta.pop(key, None)
            if key in old_meta:
                meta[key] = old_meta[key]
        warnings = self._admit(rtype, proposed, options)
        if proposed == current:
            return WriteResult(current, warnings=warnings)  # a no-op write changes nothing, not even the version
        if _body_of(proposed) != _body_of(current):
            meta["generation"] = int(old_meta.get("generation", 1)) + 1
        if options.dry_run:
            return WriteResult(proposed, warnings=warnings)
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            # The last finalizer is gone: the pending deletion completes now.
            return WriteResult(self.deletions.complete(rtype.storage_key, proposed), warnings=warnings)
        self.store.save(rtype.storage_key, proposed)
        self._after_change(rtype.storage_key)
        return WriteResult(proposed, warnings=warnings)

    # --- deletion and garbage collection --------------------------------------------------------------

    def delete(self, rtype: ResourceType, namespace: str, name: str, options: DeleteOptions) -> dict[str, Any]:
        current = self.get(rtype, namespace, name)
        meta = current["metadata"]
        if rtype == NAMESPACE_TYPE and name in UNDELETABLE_NAMESPACES:
            raise ApiError(
                403,
                "Forbidden",
                f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                name,
                "",
                "namespaces",
            )
        for wanted, actual, what in (
            (options.precondition_uid, meta["uid"], "UID"),
            (options.precondition_resource_version, meta["resourceVersion"], "ResourceVersion"),
        ):
            if wanted and wanted != actual:
                raise conflict(
                    rtype.plural,
                    rtype.group,
                    name,
                    f"Precondition failed: {what} in precondition: {wanted}, {what} in object meta: {actual}",
                )
        if options.propagation_policy not in PROPAGATION_POLICIES:
            raise bad_request(f"propagationPolicy: Unsupported value: {options.propagation_policy!r}")
        if options.dry_run:
            return current
        return self.deletions.delete_object(rtype.storage_key, current, options.propagation_policy)

    def _forget_removed(self, key: StorageKey, removed: dict[str, Any]) -> None:
        """What this class keeps about an object the deletions removed: its applied configurations."""
        meta = removed["metadata"]
        for record in [k for k in self._applied if k[:3] == (key, meta.get("namespace", ""), meta["name"])]:
            del self._applied[record]
        self._after_change(key)

    def _after_change(self, key: StorageKey) -> None:
        if key == CRD_TYPE.storage_key:
            self.registry.set_crds(self.store.list(CRD_TYPE.storage_key))
            self._schemas.forget()
