"""A CRD's structural schema as JSON Schema, with the Kubernetes keywords the API server enforces.

The CRD's ``openAPIV3Schema`` (a Kubernetes *structural* schema) is converted once to JSON Schema
(draft 2020-12) and checked with ``jsonschema``. Kubernetes-only semantics are mapped as follows:

- unknown fields are errors, as with kubectl's default strict field validation, except under
  ``x-kubernetes-preserve-unknown-fields``; ``x-kubernetes-embedded-resource`` allows apiVersion/kind/metadata;
- ``null`` on a non-nullable field is pruned by the API server, so it is dropped before validating;
- a ``required`` field with a ``default`` is filled in before validation, so it is not required here;
- ``x-kubernetes-int-or-string``, ``format: int32/int64`` (ranges), ``x-kubernetes-list-type: set/map``;
- ``x-kubernetes-validations`` (CEL): the rules that occur in KubeRay's CRDs have Python equivalents in
  ``CEL_RULES``; transition rules (``oldSelf``) only run on update and unknown rules are skipped;
- top-level ``metadata`` gets the API server's ObjectMeta checks (name or generateName, DNS names, labels).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError as JsonSchemaError

logger = logging.getLogger(__name__)

INT_FORMAT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
# Keywords copied unchanged: value validations that mean the same in OpenAPI v3 and JSON Schema.
PLAIN_KEYWORDS = (
    "type", "enum", "minimum", "maximum", "minLength", "maxLength", "pattern", "minItems", "maxItems",
    "uniqueItems", "minProperties", "maxProperties", "multipleOf", "required", "format",
)  # fmt: skip
LIST_MAP_KEYS = "x-kubernetes-list-map-keys"
CEL_VALIDATIONS = "x-kubernetes-validations"
RULE_BY_KEYWORD = {LIST_MAP_KEYS: "schema:list-map-keys", CEL_VALIDATIONS: "schema:cel"}


# --- CEL ------------------------------------------------------------------------------------------


def _has(obj: Any, field: str) -> bool:
    """CEL has(self.field); nulls are pruned before validation, so a null field is absent."""
    return isinstance(obj, dict) and obj.get(field) is not None


# Every x-kubernetes-validations rule in KubeRay v1.7.0's CRDs, keyed on its exact text.
CEL_RULES: dict[str, Callable[[Any], bool]] = {
    "self in ['ray.io/kuberay-operator', 'kueue.x-k8s.io/multikueue']": (
        lambda value: value in ("ray.io/kuberay-operator", "kueue.x-k8s.io/multikueue")
    ),
    "!(has(self.jobStatus) && has(self.jobDeploymentStatus))": (
        lambda value: not (_has(value, "jobStatus") and _has(value, "jobDeploymentStatus"))
    ),
    "has(self.jobStatus) || has(self.jobDeploymentStatus)": (
        lambda value: _has(value, "jobStatus") or _has(value, "jobDeploymentStatus")
    ),
    "!((has(self.onSuccess) || has(self.onFailure)) && has(self.deletionRules))": (
        lambda value: not ((_has(value, "onSuccess") or _has(value, "onFailure")) and _has(value, "deletionRules"))
    ),
    "((has(self.onSuccess) && has(self.onFailure)) || has(self.deletionRules))": (
        lambda value: (_has(value, "onSuccess") and _has(value, "onFailure")) or _has(value, "deletionRules")
    ),
}
# Transition rules compare with the stored object, which a create does not have (e.g. "self == oldSelf").
TRANSITION_RULE_MARKER = "oldSelf"


def _known_cel_rules(rules: Any) -> list[dict[str, Any]]:
    known = []
    for rule in rules if isinstance(rules, list) else []:
        text = rule.get("rule", "") if isinstance(rule, dict) else ""
        if text in CEL_RULES:
            known.append(rule)
        elif TRANSITION_RULE_MARKER in text:
            logger.debug("CEL transition rule %r only applies to updates; skipped", text)
        else:
            logger.debug("CEL rule %r has no Python equivalent; skipped", text)
    return known


def _check_cel(
    validator: Any, rules: list[dict[str, Any]], instance: Any, schema: dict[str, Any]
) -> Iterator[JsonSchemaError]:
    for rule in rules:
        if not CEL_RULES[rule["rule"]](instance):
            yield JsonSchemaError(rule.get("message") or f"failed rule: {rule['rule']}")


def _freeze(value: Any) -> Any:
    """A hashable stand-in for a JSON value, to compare list-map keys."""
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _check_list_map_keys(
    validator: Any, spec: dict[str, Any], instance: Any, schema: dict[str, Any]
) -> Iterator[JsonSchemaError]:
    """x-kubernetes-list-type: map — no two items may share the same key fields (after defaulting)."""
    if not isinstance(instance, list):
        return
    keys, defaults = spec["keys"], spec["defaults"]
    seen: set[Any] = set()
    for index, item in enumerate(instance):
        if not isinstance(item, dict):
            continue
        identity = tuple(_freeze(item.get(key, defaults.get(key))) for key in keys)
        if identity in seen:
            shown = ", ".join(f"{k}={v!r}" for k, v in zip(keys, identity, strict=False))
            yield JsonSchemaError(f"Duplicate value: an item with {shown} already exists", path=[index])
        seen.add(identity)


KubernetesValidator = validators.extend(
    Draft202012Validator, {LIST_MAP_KEYS: _check_list_map_keys, CEL_VALIDATIONS: _check_cel}
)


# --- structural schema -> JSON Schema --------------------------------------------------------------


def _convert_numbers(node: dict[str, Any], out: dict[str, Any]) -> None:
    """OpenAPI v3.0 boolean exclusive bounds and integer formats as JSON Schema bounds."""
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if node.get(exclusive) is True and bound in out:
            out[exclusive] = out.pop(bound)
    int_range = INT_FORMAT_RANGES.get(node.get("format", ""))
    if int_range:
        out.pop("format")
        out.setdefault("minimum", int_range[0])
        out.setdefault("maximum", int_range[1])


def _allow_null(out: dict[str, Any]) -> None:
    if "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*types, "null"]
    if "enum" in out:
        out["enum"] = [*out["enum"], None]


def _convert_object(node: dict[str, Any], out: dict[str, Any]) -> None:
    properties = dict(node.get("properties", {}))
    if node.get("x-kubernetes-embedded-resource"):
        for field in ("apiVersion", "kind"):
            properties.setdefault(field, {"type": "string"})
        properties.setdefault("metadata", {"type": "object", "x-kubernetes-preserve-unknown-fields": True})
        out["required"] = sorted({*out.get("required", []), "apiVersion", "kind"})
    if properties:
        out["properties"] = {name: to_json_schema(child) for name, child in properties.items()}
        # Defaults are applied and nullable nulls kept before validation, so neither can be "missing".
        filled = {name for name, child in properties.items() if "default" in child or child.get("nullable")}
        if "required" in out:
            out["required"] = [name for name in out["required"] if name not in filled]
    additional = node.get("additionalProperties")
    if isinstance(additional, dict):
        out["additionalProperties"] = to_json_schema(additional)
    elif additional is not None:
        out["additionalProperties"] = additional
    elif node.get("type") == "object" and not node.get("x-kubernetes-preserve-unknown-fields"):
        # Strict field validation: unknown fields are errors. Not in untyped allOf/anyOf value
        # validations, whose "properties" only constrain the fields they name.
        out["additionalProperties"] = False


def _convert_list(node: dict[str, Any], out: dict[str, Any]) -> None:
    items = node.get("items")
    if isinstance(items, dict):
        out["items"] = to_json_schema(items)
    list_type = node.get("x-kubernetes-list-type")
    if list_type == "set":
        out["uniqueItems"] = True
    elif list_type == "map" and node.get(LIST_MAP_KEYS):
        item_properties = items.get("properties", {}) if isinstance(items, dict) else {}
        keys = list(node[LIST_MAP_KEYS])
        defaults = {k: item_properties[k]["default"] for k in keys if "default" in item_properties.get(k, {})}
        out[LIST_MAP_KEYS] = {"keys": keys, "defaults": defaults}


def to_json_schema(node: Any) -> dict[str, Any]:
    """One Kubernetes structural schema node as a JSON Schema for KubernetesValidator."""
    if not isinstance(node, dict):
        return {}
    out: dict[str, Any] = {k: node[k] for k in PLAIN_KEYWORDS if k in node}
    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]  # replaces the anyOf controller-gen writes alongside
    else:
        for combinator in ("allOf", "anyOf", "oneOf"):
            if isinstance(node.get(combinator), list):
                out[combinator] = [to_json_schema(child) for child in node[combinator]]
    if isinstance(node.get("not"), dict):
        out["not"] = to_json_schema(node["not"])
    _convert_numbers(node, out)
    if node.get("type") == "object" or "properties" in node or "additionalProperties" in node:
        _convert_object(node, out)
    if node.get("type") == "array" or "items" in node:
        _convert_list(node, out)
    if node.get("nullable"):
        _allow_null(out)
    if cel_rules := _known_cel_rules(node.get(CEL_VALIDATIONS)):
        out[CEL_VALIDATIONS] = cel_rules
    return out


# ObjectMeta as the API server decodes it; its name syntax is checked in _metadata_errors.
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
OBJECT_META_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        **{
            field: {"type": "string"}
            for field in (
                "name",
                "generateName",
                "namespace",
                "uid",
                "resourceVersion",
                "selfLink",
                "creationTimestamp",
                "deletionTimestamp",
            )
        },
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
        "finalizers": {"type": "array", "items": {"type": "string"}},
        "ownerReferences": {"type": "array", "items": {"type": "object"}},
        "managedFields": {"type": "array", "items": {"type": "object"}},
        "generation": {"type": "integer"},
        "deletionGracePeriodSeconds": {"type": "integer"},
    },
    "additionalProperties": False,
}
