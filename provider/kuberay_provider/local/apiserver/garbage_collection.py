"""Deletion as the API server and its garbage collector do it: finalizers keep an object marked for deletion,
propagation policies (Background, Foreground, Orphan) decide its dependents' fate, and a namespace or a CRD
takes its objects along. Runs on the server's event loop like the rest of the store (see store.py)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from .objectmeta import now_rfc3339
from .registry import CRD_TYPE, NAMESPACE_TYPE
from .store import ObjectStore, StorageKey

FOREGROUND_FINALIZER = "foregroundDeletion"


def owner_uids(obj: dict[str, Any]) -> list[str]:
    return [ref.get("uid", "") for ref in obj["metadata"].get("ownerReferences") or []]


class Deletions:
    """Deleting objects of one store; ``on_removed`` hears of every object actually removed."""

    def __init__(self, store: ObjectStore, on_removed: Callable[[StorageKey, dict[str, Any]], None]) -> None:
        self.store = store
        self._on_removed = on_removed
        # Propagation policy of deletions that wait for finalizers.
        self._pending_policy: dict[str, str] = {}

    def delete_object(self, key: StorageKey, obj: dict[str, Any], policy: str) -> dict[str, Any]:
        uid = obj["metadata"]["uid"]
        if policy == "Orphan":
            self._orphan_dependents(uid)
        if policy == "Foreground":
            # Watchers see the owner marked for deletion while its dependents go first.
            obj = self._mark_deleting(key, obj, extra_finalizer=FOREGROUND_FINALIZER)
            self._collect_dependents(uid, policy)
            obj = self._drop_foreground_finalizer(key, obj)
        if obj["metadata"].get("finalizers"):
            self._pending_policy[uid] = policy
            return self._mark_deleting(key, obj)
        return self.remove(key, obj, policy)

    def collect_if_orphaned(self, key: StorageKey, obj: dict[str, Any]) -> None:
        """A new object whose owners are all gone already (made while its owner was being deleted) goes at
        once, as Kubernetes' garbage collector collects it as soon as it sees it."""
        owners = owner_uids(obj)
        if owners and not any(uid in self._live_uids() for uid in owners):
            self.delete_object(key, obj, "Background")

    def _drop_foreground_finalizer(self, key: StorageKey, obj: dict[str, Any]) -> dict[str, Any]:
        """The dependents are gone: drop ``foregroundDeletion``, and store that while other finalizers
        keep the object (else their removal would leave it stuck on ours)."""
        kept = copy.deepcopy(obj)
        kept["metadata"]["finalizers"] = [f for f in kept["metadata"]["finalizers"] if f != FOREGROUND_FINALIZER]
        return self.store.save(key, kept) if kept["metadata"]["finalizers"] else kept

    def _mark_deleting(self, key: StorageKey, obj: dict[str, Any], extra_finalizer: str = "") -> dict[str, Any]:
        marked = copy.deepcopy(obj)
        meta = marked["metadata"]
        if extra_finalizer and extra_finalizer not in meta.setdefault("finalizers", []):
            meta["finalizers"].append(extra_finalizer)
        meta.setdefault("deletionTimestamp", now_rfc3339())
        meta.setdefault("deletionGracePeriodSeconds", 0)
        if marked == obj:
            return obj
        return self.store.save(key, marked)

    def remove(self, key: StorageKey, obj: dict[str, Any], policy: str) -> dict[str, Any]:
        """Remove ``obj`` now, with its dependents (unless orphaned), a namespace's objects or a CRD's."""
        removed = self.store.remove(key, obj)
        meta = removed["metadata"]
        if policy != "Orphan":
            self._collect_dependents(meta["uid"], policy)
        if key == NAMESPACE_TYPE.storage_key:
            self._empty_namespace(meta["name"])
        if key == CRD_TYPE.storage_key:
            self._drop_custom_resources(removed)
        self._on_removed(key, removed)
        return removed

    def complete(self, key: StorageKey, obj: dict[str, Any]) -> dict[str, Any]:
        """The last finalizer of an object being deleted is gone: the deletion completes, with its policy."""
        return self.remove(key, obj, self._pending_policy.pop(obj["metadata"]["uid"], "Background"))

    def _still_stored(self, key: StorageKey, obj: dict[str, Any]) -> bool:
        """False once a cascade earlier in the same sweep removed or replaced ``obj``."""
        return self.store.get(key, obj["metadata"].get("namespace", ""), obj["metadata"]["name"]) is obj

    def _live_uids(self) -> set[str]:
        return {obj["metadata"]["uid"] for _, obj in self.store.all_objects()}

    def _collect_dependents(self, owner_uid: str, policy: str) -> None:
        """The garbage collector: a dependent goes once none of its owners is left."""
        for key, obj in self.store.all_objects():
            owners = owner_uids(obj)
            if owner_uid not in owners or not self._still_stored(key, obj):
                continue
            live = self._live_uids()
            if any(uid in live for uid in owners if uid != owner_uid):
                self._drop_owner_reference(key, obj, owner_uid)
            elif not obj["metadata"].get("deletionTimestamp"):
                self.delete_object(key, obj, policy)

    def _orphan_dependents(self, owner_uid: str) -> None:
        for key, obj in self.store.all_objects():
            if owner_uid in owner_uids(obj):
                self._drop_owner_reference(key, obj, owner_uid)

    def _drop_owner_reference(self, key: StorageKey, obj: dict[str, Any], owner_uid: str) -> None:
        orphaned = copy.deepcopy(obj)
        refs = [ref for ref in orphaned["metadata"]["ownerReferences"] if ref.get("uid") != owner_uid]
        if refs:
            orphaned["metadata"]["ownerReferences"] = refs
        else:
            del orphaned["metadata"]["ownerReferences"]
        self.store.save(key, orphaned)

    def _empty_namespace(self, namespace: str) -> None:
        for key, obj in self.store.all_objects():
            if obj["metadata"].get("namespace") == namespace and self._still_stored(key, obj):
                self.remove(key, obj, "Background")

    def _drop_custom_resources(self, crd: dict[str, Any]) -> None:
        key = (crd["spec"]["group"], crd["spec"]["names"]["plural"])
        for obj in self.store.list(key):
            self.remove(key, obj, "Background")
