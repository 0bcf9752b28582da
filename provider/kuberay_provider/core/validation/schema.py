"""Validation against the real KubeRay CRDs, as the Kubernetes API server would do it on create.

``CrdSchema`` checks an object against one CRD version's ``openAPIV3Schema`` (converted to JSON Schema
in ``structural.py``, which lists the Kubernetes semantics kept) plus the API server's ObjectMeta checks;
``SchemaRegistry`` holds the schemas of the Ray kinds, read from CRD files or from a cluster.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from functools import cached_property
from pathlib import Path
from typing import Any, cast

import yaml
from jsonschema import FormatChecker
from jsonschema.exceptions import ValidationError as JsonSchemaError

from ..errors import FieldError
from ..resources import RAY_KINDS
from .rules import dns1123_label_errors, dns1123_subdomain_errors, label_value_errors, qualified_name_errors
from .structural import OBJECT_META_SCHEMA, RULE_BY_KEYWORD, KubernetesValidator, to_json_schema

logger = logging.getLogger(__name__)

CRD_KIND = "CustomResourceDefinition"
MAX_MESSAGE_LENGTH = 200


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


def _field_errors(error: JsonSchemaError, prefix: tuple[str, ...] = ()) -> Iterator[FieldError]:
    path = format_path((*prefix, *error.absolute_path))
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


def _find_version(crd: dict[str, Any], version: str) -> dict[str, Any]:
    for candidate in crd.get("spec", {}).get("versions", []):
        if candidate.get("name") == version:
            return cast(dict[str, Any], candidate)
    raise ValueError(f"CRD {crd.get('metadata', {}).get('name')!r} has no version {version!r}")


SPEC_PART_MEMO_SIZE = 256  # verdicts kept per CRD on large spec parts (a cluster spec, a pod template)


def _is_container(schema: dict[str, Any]) -> bool:
    types = schema.get("type")
    return bool({"object", "array"} & set(types if isinstance(types, list) else [types]))


class CrdSchema:
    """One version of one CRD, with its validator compiled on first use and kept.

    The large parts of a spec (its object and list fields: a RayJob's rayClusterSpec, a pod template) are
    validated each on its own and the verdict kept, keyed by the part's content: a backfill's RayJobs
    differ in a date in the entrypoint, not in their cluster, and the cluster is most of the work. The rest
    of the object is validated every time, by a validator whose schema leaves those parts to their own.
    """

    def __init__(self, crd: dict[str, Any], version: str = "v1") -> None:
        self._crd = crd
        self._version = _find_version(crd, version)
        self.compilations = 0  # how often the validator was built; tests check it stays at one
        self._part_verdicts: dict[tuple[str, str], list[FieldError]] = {}

    @classmethod
    def from_crd(cls, crd: dict[str, Any], version: str = "v1") -> CrdSchema:
        return cls(crd, version)

    @property
    def kind(self) -> str:
        return str(self._crd["spec"]["names"]["kind"])

    @property
    def plural(self) -> str:
        return str(self._crd["spec"]["names"]["plural"])

    @property
    def group(self) -> str:
        return str(self._crd["spec"]["group"])

    @property
    def version(self) -> str:
        return str(self._version["name"])

    @property
    def crd_name(self) -> str:
        return str(self._crd["metadata"]["name"])

    @cached_property
    def json_schema(self) -> dict[str, Any]:
        schema = to_json_schema(self._version.get("schema", {}).get("openAPIV3Schema", {}))
        properties = schema.setdefault("properties", {})
        properties["metadata"] = OBJECT_META_SCHEMA
        properties.setdefault("apiVersion", {"type": "string"})
        properties.setdefault("kind", {"type": "string"})
        return schema

    @cached_property
    def spec_parts(self) -> dict[str, dict[str, Any]]:
        """The schemas of the spec's object and list fields, validated each on its own."""
        spec = self.json_schema.get("properties", {}).get("spec", {})
        return {name: part for name, part in (spec.get("properties") or {}).items() if _is_container(part)}

    @cached_property
    def validator(self) -> Any:
        """The whole object's validator, the spec parts left to ``part_validators`` (any value passes here)."""
        self.compilations += 1
        schema = self.json_schema
        if self.spec_parts:
            spec = schema["properties"]["spec"]
            parts_open = {**spec["properties"], **{name: {} for name in self.spec_parts}}
            schema = {**schema, "properties": {**schema["properties"], "spec": {**spec, "properties": parts_open}}}
        return KubernetesValidator(schema, format_checker=FormatChecker(("date-time",)))

    @cached_property
    def part_validators(self) -> dict[str, Any]:
        return {name: self.validator.evolve(schema=part) for name, part in self.spec_parts.items()}

    def validate(self, obj: Any) -> list[FieldError]:
        """Every way ``obj`` breaks the schema; an empty list when a real API server would accept it."""
        pruned = _drop_nulls(obj)
        errors = [e for error in self.validator.iter_errors(pruned) for e in _field_errors(error)]
        spec = pruned.get("spec") if isinstance(pruned, dict) else None
        if isinstance(spec, dict):
            for name in sorted(self.spec_parts.keys() & spec.keys()):
                errors += self._part_errors(name, spec[name])
        if isinstance(pruned, dict):
            errors += _metadata_errors(pruned.get("metadata", {}))
        return list(dict.fromkeys(errors))

    def _part_errors(self, name: str, value: Any) -> list[FieldError]:
        try:
            key = (name, json.dumps(value, sort_keys=True))
        except (TypeError, ValueError):  # not JSON (the schema says how): not kept
            key = None
        if key is not None and (known := self._part_verdicts.get(key)) is not None:
            return known
        errors = [
            e for error in self.part_validators[name].iter_errors(value) for e in _field_errors(error, ("spec", name))
        ]
        if key is not None:
            if len(self._part_verdicts) >= SPEC_PART_MEMO_SIZE:
                self._part_verdicts.pop(next(iter(self._part_verdicts)))  # the oldest
            self._part_verdicts[key] = errors
        return errors


def _crd_documents(text: str) -> Iterator[dict[str, Any]]:
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


def _installed_crds(api_client: Any, answers: Iterable[Any]) -> list[dict[str, Any]]:
    """The CRDs read, as plain dicts; one the cluster lacks (404) is left out, any other error is raised."""
    crds = []
    for crd_name, answer in zip(RAY_CRD_NAMES, answers, strict=False):
        if isinstance(answer, BaseException):
            if getattr(answer, "status", None) != 404:
                raise answer
            logger.info("CRD %s is not installed in the cluster; it is left out of the registry", crd_name)
        else:
            # The core's clients answer plain dicts: walking a 1 MB CRD to "sanitize" it costs more than reading it.
            crds.append(answer if isinstance(answer, dict) else api_client.sanitize_for_serialization(answer))
    return crds


class SchemaRegistry:
    """The CrdSchema of each kind, built from CRD manifests, a directory of them, or a live cluster."""

    def __init__(self, schemas: Iterable[CrdSchema] = ()) -> None:
        self._by_kind = {schema.kind: schema for schema in schemas}

    @classmethod
    def from_crds(cls, crds: Iterable[dict[str, Any]], version: str = "v1") -> SchemaRegistry:
        usable = [crd for crd in crds if any(v.get("name") == version for v in crd.get("spec", {}).get("versions", []))]
        return cls(CrdSchema.from_crd(crd, version) for crd in usable)

    @classmethod
    def from_directory(cls, path: str | Path, version: str = "v1") -> SchemaRegistry:
        files = sorted(p for p in Path(path).iterdir() if p.suffix in (".yaml", ".yml"))
        return cls.from_crds((doc for file in files for doc in _crd_documents(file.read_text())), version)

    @classmethod
    def from_cluster(cls, api_client: Any, version: str = "v1") -> SchemaRegistry:
        """The CRDs installed in the cluster behind a sync ``kubernetes.client.ApiClient``, read through the
        core's client, so 429 / 5xx / dropped connections are retried like every other call."""
        from ..kube.sync_client import RayObjectsClient

        read = RayObjectsClient(api_client).read_crd
        answers = [_answer_or_error(read, crd_name) for crd_name in RAY_CRD_NAMES]
        return cls.from_crds(_installed_crds(api_client, answers), version)

    @classmethod
    async def from_cluster_async(cls, api_client: Any, version: str = "v1") -> SchemaRegistry:
        """As from_cluster, for a ``kubernetes_asyncio.client.ApiClient``."""
        from ..kube.async_client import AsyncRayObjectsClient

        read = AsyncRayObjectsClient(api_client).read_crd
        answers = await asyncio.gather(*(read(crd_name) for crd_name in RAY_CRD_NAMES), return_exceptions=True)
        return cls.from_crds(_installed_crds(api_client, answers), version)

    def for_kind(self, kind: str) -> CrdSchema | None:
        return self._by_kind.get(kind)

    def refresh(self, kind: str) -> bool:
        """Read ``kind``'s CRD again where it came from; True when it changed. Schemas read from files or
        once from a cluster stay as they are (False); ``installed.ClusterSchemas`` re-reads."""
        return False

    def kinds(self) -> list[str]:
        return sorted(self._by_kind)
