"""What a real API server does with a custom resource and its CRD's structural schema.

1. prune: drop fields the schema does not declare (reported, so ``fieldValidation=Strict`` can refuse them);
2. default: fill ``default:`` values of absent properties;
3. validate: types, enums, required... through the project's ``CrdSchema`` (kuberay_provider.core.validation)
   when it is available, else through ``jsonschema`` on the same OpenAPI v3 schema.
CEL rules (``x-kubernetes-validations``) are not evaluated here.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from .errors import Cause

log = logging.getLogger(__name__)

OBJECT_META_FIELDS = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)


@dataclass
class SchemaOutcome:
    """The object after pruning and defaulting, what was pruned, and what is invalid."""

    obj: dict[str, Any]
    unknown_fields: list[str] = field(default_factory=list)
    causes: list[Cause] = field(default_factory=list)


def format_path(parts: tuple[str | int, ...]) -> str:
    """``spec.workerGroupSpecs[0].replicas`` as Kubernetes prints field paths."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _prune_and_default(value: Any, schema: dict[str, Any], path: tuple[str | int, ...], unknown: list[str]) -> None:
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for index, item in enumerate(value):
                _prune_and_default(item, items, (*path, index), unknown)
        return
    if not isinstance(value, dict):
        return
    properties: dict[str, Any] = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    keeps_unknown = bool(schema.get("x-kubernetes-preserve-unknown-fields")) or additional is True
    for key in list(value):
        child_schema = properties.get(key, additional if isinstance(additional, dict) else None)
        if child_schema is None:
            if not keeps_unknown:
                unknown.append(format_path((*path, key)))
                del value[key]
            continue
        if value[key] is None and not child_schema.get("nullable"):
            # Nulls of non-nullable fields are pruned before defaulting, as the API server does.
            del value[key]
            continue
        _prune_and_default(value[key], child_schema, (*path, key), unknown)
    for key, child_schema in properties.items():
        if key not in value and isinstance(child_schema, dict) and "default" in child_schema:
            value[key] = copy.deepcopy(child_schema["default"])
            _prune_and_default(value[key], child_schema, (*path, key), unknown)


def _prune_root(obj: dict[str, Any], schema: dict[str, Any], unknown: list[str]) -> None:
    """The root keeps apiVersion, kind and ObjectMeta whatever the schema says about them."""
    metadata = obj.get("metadata")
    if isinstance(metadata, dict):
        for key in [k for k in metadata if k not in OBJECT_META_FIELDS]:
            unknown.append(f"metadata.{key}")
            del metadata[key]
    body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
    body_schema = {
        **schema,
        "properties": {
            k: v for k, v in (schema.get("properties") or {}).items() if k not in ("apiVersion", "kind", "metadata")
        },
    }
    _prune_and_default(body, body_schema, (), unknown)
    for key in [k for k in obj if k not in ("apiVersion", "kind", "metadata")]:
        del obj[key]
    obj.update(body)


# --- validation -------------------------------------------------------------------------------------


def _to_json_schema(schema: Any) -> Any:
    """OpenAPI v3 (Kubernetes flavour) to JSON Schema draft 4: nullable and int-or-string."""
    if isinstance(schema, list):
        return [_to_json_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted = {
        k: _to_json_schema(v)
        for k, v in schema.items()
        if not k.startswith("x-kubernetes-") and k not in ("nullable", "default", "example")
    }
    if schema.get("x-kubernetes-int-or-string"):
        converted.pop("type", None)
        converted["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if schema.get("nullable") and "type" in converted:
        converted["type"] = [converted["type"], "null"]
    return converted


def _cause_from_jsonschema(error: jsonschema.ValidationError) -> Cause:
    path = tuple(error.absolute_path)
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else ""
        return Cause(format_path((*path, missing)), "Required value", "FieldValueRequired")
    shown = format_path(path) or "<root>"
    if error.validator == "enum":
        allowed = ", ".join(f'"{v}"' for v in error.validator_value)
        return Cause(
            shown, f'Unsupported value: "{error.instance}": supported values: {allowed}', "FieldValueNotSupported"
        )
    if error.validator == "type":
        expected = error.validator_value
        return Cause(
            shown,
            f'Invalid value: "{_type_name(error.instance)}": {shown} in body must be of type {expected}: '
            f'"{_short(error.instance)}"',
        )
    return Cause(shown, f"Invalid value: {_short(error.instance)}: {error.message}")


def _type_name(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number"}
    return names.get(type(value), "null")


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _reason_for_rule(rule: str) -> str:
    if "required" in rule:
        return "FieldValueRequired"
    if "enum" in rule:
        return "FieldValueNotSupported"
    return "FieldValueInvalid"


Validator = Callable[[dict[str, Any]], list[Cause]]


def _project_validator(crd: dict[str, Any], version: str) -> Validator | None:
    """The project's CrdSchema (kuberay_provider.core.validation), when it is importable."""
    try:
        from kuberay_provider.core.validation.schema import CrdSchema
    except ImportError:
        return None
    try:
        crd_schema = CrdSchema.from_crd(crd, version)
    except Exception:
        log.warning("CrdSchema could not load %s; validating with jsonschema", crd.get("metadata", {}).get("name"))
        return None

    def validate(obj: dict[str, Any]) -> list[Cause]:
        # KubeRay's own rules (``kuberay:...``) are the operator's business, not the API server's; ObjectMeta
        # is checked by objectmeta.metadata_causes for every kind.
        return [
            Cause(e.path, e.message, _reason_for_rule(e.rule))
            for e in crd_schema.validate(obj)
            if not e.rule.startswith("kuberay:") and not e.path.startswith("metadata")
        ]

    return validate


def _jsonschema_validator(schema: dict[str, Any]) -> Validator:
    checker = jsonschema.Draft4Validator(_to_json_schema(schema))

    def validate(obj: dict[str, Any]) -> list[Cause]:
        body = {k: v for k, v in obj.items() if k != "metadata"}
        errors = sorted(checker.iter_errors(body), key=lambda e: list(map(str, e.absolute_path)))
        return [_cause_from_jsonschema(error) for error in errors]

    return validate


class SchemaChecker:
    """Prunes, defaults and validates custom resources; validators are built once per CRD version."""

    def __init__(self) -> None:
        self._validators: dict[tuple[str, str, str], Validator] = {}

    def forget(self) -> None:
        self._validators.clear()

    def _validator(self, crd: dict[str, Any], version: str, schema: dict[str, Any]) -> Validator:
        key = (crd["metadata"]["name"], crd["metadata"].get("resourceVersion", ""), version)
        if key not in self._validators:
            self._validators[key] = _project_validator(crd, version) or _jsonschema_validator(schema)
        return self._validators[key]

    def check(
        self, obj: dict[str, Any], crd: dict[str, Any], version: str, schema: dict[str, Any] | None
    ) -> SchemaOutcome:
        outcome = SchemaOutcome(obj)
        if not schema:
            return outcome
        _prune_root(obj, schema, outcome.unknown_fields)
        outcome.causes = self._validator(crd, version, schema)(obj)
        return outcome
