"""PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902), strategic merge patch and apply.

Strategic merge patch is treated as a merge patch in which lists replace: that is what it does for every
list without a patch strategy, and the server has no Go structs to read merge keys from. Its ``$``
directives that kubectl emits are honoured as far as a replacing merge allows.
"""

from __future__ import annotations

import copy
import json
from typing import Any, cast

import jsonpatch
import yaml

from .errors import ApiError, bad_request

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH)

_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_document(raw: bytes, *, allow_yaml: bool) -> Any:
    """JSON, or YAML where the content type allows it (JSON is tried first: it is much faster)."""
    try:
        return json.loads(raw)
    except ValueError as json_error:
        if not allow_yaml:
            raise bad_request(f"error decoding request body: {json_error}") from None
    try:
        return yaml.load(raw, Loader=_YAML_LOADER)
    except yaml.YAMLError as yaml_error:
        raise bad_request(f"error decoding YAML: {yaml_error}") from None


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    return merge_object_patch(target, patch)


def merge_object_patch(target: Any, patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386 with an object as the patch, which always gives an object."""
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _strip_strategic_directives(patch: Any) -> Any:
    """Turn a strategic merge patch into the merge patch it amounts to when lists replace."""
    if isinstance(patch, list):
        return [_strip_strategic_directives(item) for item in patch]
    if not isinstance(patch, dict):
        return patch
    if patch.get("$patch") == "delete":
        return None
    cleaned: dict[str, Any] = {}
    for key, value in patch.items():
        # $setElementOrder/, $retainKeys, $deleteFromPrimitiveList/ only refine list merging; $patch: replace
        # is what a replacing merge does anyway.
        if key.startswith("$"):
            continue
        cleaned[key] = _strip_strategic_directives(value)
    return cleaned


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    return merge_patch(target, _strip_strategic_directives(patch))


def json_patch(target: dict[str, Any], operations: Any) -> dict[str, Any]:
    if not isinstance(operations, list):
        raise bad_request("json patch must be a list of operations")
    try:
        # A patch may replace the whole document with a non-object; the caller's checks see that, not this one.
        return cast(dict[str, Any], jsonpatch.JsonPatch(operations).apply(target))
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError, KeyError) as error:
        raise ApiError(
            422, "Invalid", f"the server rejected our request due to an error in our request: {error}"
        ) from None


def apply_patch(content_type: str, target: dict[str, Any], patch: Any) -> dict[str, Any]:
    """Apply a parsed PATCH body of the given (non-apply) content type."""
    if content_type == JSON_PATCH:
        return json_patch(target, patch)
    if not isinstance(patch, dict):
        raise bad_request("a merge patch must be a JSON object")
    if content_type == STRATEGIC_MERGE_PATCH:
        # "$patch: delete" at the top gives None; the caller's checks see that, not this one.
        return cast(dict[str, Any], strategic_merge_patch(target, patch))
    return merge_object_patch(target, patch)


def leaf_paths(document: Any, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """The paths of every non-object value in a document (lists count as leaves: they apply atomically)."""
    if isinstance(document, dict) and document:
        paths: set[tuple[str, ...]] = set()
        for key, value in document.items():
            paths |= leaf_paths(value, (*prefix, key))
        return paths
    return {prefix}


def _delete_path(document: dict[str, Any], path: tuple[str, ...]) -> None:
    parents = [document]
    for key in path[:-1]:
        child = parents[-1].get(key)
        if not isinstance(child, dict):
            return
        parents.append(child)
    parents[-1].pop(path[-1], None)
    # Drop the objects the removal left empty, as the applier no longer owns them either.
    for depth in range(len(path) - 1, 0, -1):
        if parents[depth]:
            break
        parents[depth - 1].pop(path[depth - 1], None)


def server_side_apply(
    live: dict[str, Any], applied: dict[str, Any], previously_applied: dict[str, Any] | None
) -> dict[str, Any]:
    """Merge an applied configuration into the live object.

    Simplified field ownership: fields this manager applied last time but no longer applies are removed;
    fields set by anyone else are kept; conflicts between managers are not detected.
    """
    merged = merge_object_patch(live, _without_nulls(applied))
    if previously_applied:
        for path in sorted(leaf_paths(previously_applied) - leaf_paths(applied), key=len, reverse=True):
            if path and path[0] not in ("apiVersion", "kind") and path[:2] != ("metadata", "name"):
                _delete_path(merged, path)
    return merged


def _without_nulls(document: Any) -> Any:
    if isinstance(document, dict):
        return {k: _without_nulls(v) for k, v in document.items() if v is not None}
    return document
