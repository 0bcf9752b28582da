"""Validation against the real KubeRay CRDs, as the Kubernetes API server would do it on create.

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

import asyncio
import logging
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import yaml
from jsonschema import Draft202012Validator, FormatChecker, validators
from jsonschema.exceptions import ValidationError as JsonSchemaError

from ..errors import FieldError
from ..resources import RAY_KINDS
from .rules import dns1123_label_errors, dns1123_subdomain_errors, label_value_errors, qualified_name_errors

logger = logging.getLogger(__name__)

CRD_KIND = "CustomResourceDefinition"
INT_FORMAT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
# Keywords copied unchanged: value validations that mean the same in OpenAPI v3 and JSON Schema.
PLAIN_KEYWORDS = (
    "type", "enum", "minimum", "maximum", "minLength", "maxLength", "pattern", "minItems", "maxItems",
    "uniqueItems", "minProperties", "maxProperties", "multipleOf", "required", "format",
)  # fmt: skip
LIST_MAP_KEYS = "x-kubernetes-list-map-keys"
CEL_VALIDATIONS = "x-kubernetes-validations"
RULE_BY_KEYWORD = {LIST_MAP_KEYS: "schema:list-map-keys", CEL_VALIDATIONS: "schema:cel"}
MAX_MESSAGE_LENGTH = 200


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


def _known_cel_rules(rules: Any) -> list[dict]:
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


def _check_cel(validator: Any, rules: list[dict], instance: Any, schema: dict) -> Iterator[JsonSchemaError]:
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


def _check_list_map_keys(validator: Any, spec: dict, instance: Any, schema: dict) -> Iterator[JsonSchemaError]:
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
            shown = ", ".join(f"{k}={v!r}" for k, v in zip(keys, identity))
            yield JsonSchemaError(f"Duplicate value: an item with {shown} already exists", path=[index])
        seen.add(identity)


KubernetesValidator = validators.extend(
    Draft202012Validator, {LIST_MAP_KEYS: _check_list_map_keys, CEL_VALIDATIONS: _check_cel}
)


# --- structural schema -> JSON Schema --------------------------------------------------------------


def _convert_numbers(node: dict, out: dict) -> None:
    """OpenAPI v3.0 boolean exclusive bounds and integer formats as JSON Schema bounds."""
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if node.get(exclusive) is True and bound in out:
            out[exclusive] = out.pop(bound)
    int_range = INT_FORMAT_RANGES.get(node.get("format", ""))
    if int_range:
        out.pop("format")
        out.setdefault("minimum", int_range[0])
        out.setdefault("maximum", int_range[1])


def _allow_null(out: dict) -> None:
    if "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*types, "null"]
    if "enum" in out:
        out["enum"] = [*out["enum"], None]


def _convert_object(node: dict, out: dict) -> None:
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


def _convert_list(node: dict, out: dict) -> None:
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


def to_json_schema(node: Any) -> dict:
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
            for field in ("name", "generateName", "namespace", "uid", "resourceVersion", "selfLink",
                          "creationTimestamp", "deletionTimestamp")
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


# --- errors ---------------------------------------------------------------------------------------


def format_path(parts: Iterable[str | int]) -> str:
    """["spec", "workerGroupSpecs", 0, "replicas"] -> "spec.workerGroupSpecs[0].replicas"."""
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _short(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE_LENGTH else text[: MAX_MESSAGE_LENGTH - 3] + "..."


def _field_errors(error: JsonSchemaError) -> Iterator[FieldError]:
    path = format_path(error.absolute_path)
    instance, keyword = error.instance, str(error.validator)
    if keyword == "additionalProperties" and error.validator_value is False and isinstance(instance, dict):
        known = error.schema.get("properties", {})
        for name in instance:
            if name not in known:
                yield FieldError(_child(path, name), "schema:unknown-field", f'unknown field "{_child(path, name)}"')
    elif keyword == "required" and isinstance(instance, dict):
        for name in error.validator_value:
            if name not in instance:
                yield FieldError(_child(path, name), "schema:required", "Required value")
    elif keyword == "type":
        expected = error.validator_value
        expected = " or ".join(t for t in expected if t != "null") if isinstance(expected, list) else expected
        yield FieldError(path, "schema:type", f"must be of type {expected}, got {type(instance).__name__}")
    else:
        yield FieldError(path, RULE_BY_KEYWORD.get(keyword, f"schema:{keyword}"), _short(error.message))


def _drop_nulls(value: Any) -> Any:
    """The API server prunes null object fields before validating (nullable ones would keep theirs)."""
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def _name_syntax_errors(path: str, value: str, check: Callable[[str], list[str]]) -> Iterator[FieldError]:
    if problems := check(value):
        yield FieldError(path, "schema:pattern", f"Invalid value {value!r}: {'; '.join(problems)}")


def _generate_name_errors(prefix: str) -> list[str]:
    # The API server appends random characters, so a trailing "-" is fine (apimachinery maskTrailingDash).
    return dns1123_subdomain_errors(prefix[:-1] + "a" if prefix.endswith("-") else prefix)


def _metadata_errors(metadata: Any) -> Iterator[FieldError]:
    """ValidateObjectMeta for a namespaced custom resource (names are DNS-1123 subdomains)."""
    if not isinstance(metadata, dict):
        return  # wrong type: the schema reports it; missing: the required check below still applies
    name, generate_name = metadata.get("name"), metadata.get("generateName")
    if not name and not generate_name:
        yield FieldError("metadata.name", "schema:required", "name or generateName is required")
    checks = (
        ("metadata.name", name, dns1123_subdomain_errors),
        ("metadata.generateName", generate_name, _generate_name_errors),
        ("metadata.namespace", metadata.get("namespace"), dns1123_label_errors),
    )
    for path, value, check in checks:
        if isinstance(value, str) and value:
            yield from _name_syntax_errors(path, value, check)
    labels, annotations = metadata.get("labels"), metadata.get("annotations")
    for key, value in labels.items() if isinstance(labels, dict) else ():
        yield from _name_syntax_errors("metadata.labels", str(key), qualified_name_errors)
        if isinstance(value, str):
            yield from _name_syntax_errors("metadata.labels", value, label_value_errors)
    for key in annotations if isinstance(annotations, dict) else ():
        # ValidateAnnotations checks the lower-cased key.
        yield from _name_syntax_errors("metadata.annotations", str(key).lower(), qualified_name_errors)


# --- public API -----------------------------------------------------------------------------------


def _find_version(crd: dict, version: str) -> dict:
    for candidate in crd.get("spec", {}).get("versions", []):
        if candidate.get("name") == version:
            return candidate
    raise ValueError(f"CRD {crd.get('metadata', {}).get('name')!r} has no version {version!r}")


class CrdSchema:
    """One version of one CRD, with its validator compiled on first use and kept."""

    def __init__(self, crd: dict, version: str = "v1") -> None:
        self._crd = crd
        self._version = _find_version(crd, version)
        self.compilations = 0  # how often the validator was built; tests check it stays at one

    @classmethod
    def from_crd(cls, crd: dict, version: str = "v1") -> "CrdSchema":
        return cls(crd, version)

    @property
    def kind(self) -> str:
        return self._crd["spec"]["names"]["kind"]

    @property
    def plural(self) -> str:
        return self._crd["spec"]["names"]["plural"]

    @property
    def group(self) -> str:
        return self._crd["spec"]["group"]

    @property
    def version(self) -> str:
        return self._version["name"]

    @property
    def crd_name(self) -> str:
        return self._crd["metadata"]["name"]

    @cached_property
    def json_schema(self) -> dict:
        schema = to_json_schema(self._version.get("schema", {}).get("openAPIV3Schema", {}))
        properties = schema.setdefault("properties", {})
        properties["metadata"] = OBJECT_META_SCHEMA
        properties.setdefault("apiVersion", {"type": "string"})
        properties.setdefault("kind", {"type": "string"})
        return schema

    @cached_property
    def validator(self) -> Any:
        self.compilations += 1
        return KubernetesValidator(self.json_schema, format_checker=FormatChecker(("date-time",)))

    def validate(self, obj: Any) -> list[FieldError]:
        """Every way ``obj`` breaks the schema; an empty list when a real API server would accept it."""
        pruned = _drop_nulls(obj)
        errors = [e for error in self.validator.iter_errors(pruned) for e in _field_errors(error)]
        if isinstance(pruned, dict):
            errors += _metadata_errors(pruned.get("metadata", {}))
        return list(dict.fromkeys(errors))


def _crd_documents(text: str) -> Iterator[dict]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are large; libyaml is ~10x faster
    for document in yaml.load_all(text, Loader=loader):
        if isinstance(document, dict) and document.get("kind") == CRD_KIND:
            yield document


RAY_CRD_NAMES = tuple(kind.crd_name for kind in RAY_KINDS.values())


def _answer_or_error(read: Callable[[str], Any], crd_name: str) -> Any:
    try:
        return read(crd_name)
    except Exception as error:  # sorted out, with the async answers, by _installed_crds
        return error


def _installed_crds(api_client: Any, answers: Iterable[Any]) -> list[dict]:
    """The CRDs read, as plain dicts; one the cluster lacks (404) is left out, any other error is raised."""
    crds = []
    for crd_name, answer in zip(RAY_CRD_NAMES, answers):
        if isinstance(answer, BaseException):
            if getattr(answer, "status", None) != 404:
                raise answer
            logger.info("CRD %s is not installed in the cluster; it is left out of the registry", crd_name)
        else:
            crds.append(api_client.sanitize_for_serialization(answer))
    return crds


class SchemaRegistry:
    """The CrdSchema of each kind, built from CRD manifests, a directory of them, or a live cluster."""

    def __init__(self, schemas: Iterable[CrdSchema] = ()) -> None:
        self._by_kind = {schema.kind: schema for schema in schemas}

    @classmethod
    def from_crds(cls, crds: Iterable[dict], version: str = "v1") -> "SchemaRegistry":
        usable = [crd for crd in crds if any(v.get("name") == version for v in crd.get("spec", {}).get("versions", []))]
        return cls(CrdSchema.from_crd(crd, version) for crd in usable)

    @classmethod
    def from_directory(cls, path: str | Path, version: str = "v1") -> "SchemaRegistry":
        files = sorted(p for p in Path(path).iterdir() if p.suffix in (".yaml", ".yml"))
        return cls.from_crds((doc for file in files for doc in _crd_documents(file.read_text())), version)

    @classmethod
    def from_cluster(cls, api_client: Any, version: str = "v1") -> "SchemaRegistry":
        """The CRDs installed in the cluster behind a sync ``kubernetes.client.ApiClient``, read through the
        core's client, so 429 / 5xx / dropped connections are retried like every other call."""
        from ..kube.sync_client import RayObjectsClient

        read = RayObjectsClient(api_client).read_crd
        answers = [_answer_or_error(read, crd_name) for crd_name in RAY_CRD_NAMES]
        return cls.from_crds(_installed_crds(api_client, answers), version)

    @classmethod
    async def from_cluster_async(cls, api_client: Any, version: str = "v1") -> "SchemaRegistry":
        """As from_cluster, for a ``kubernetes_asyncio.client.ApiClient``."""
        from ..kube.async_client import AsyncRayObjectsClient

        read = AsyncRayObjectsClient(api_client).read_crd
        answers = await asyncio.gather(*(read(crd_name) for crd_name in RAY_CRD_NAMES), return_exceptions=True)
        return cls.from_crds(_installed_crds(api_client, answers), version)

    def for_kind(self, kind: str) -> CrdSchema | None:
        return self._by_kind.get(kind)

    def kinds(self) -> list[str]:
        return sorted(self._by_kind)
