"""Validation of KubeRay manifests before anything is created: KubeRay's own rules and the CRD schema.

``validate_manifest`` reports every problem at once, each naming its field path and the rule broken.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import FieldError, ValidationError
from ..resources import RAY_API_VERSION, RAY_KINDS
from .installed import installed_schemas
from .rules import RULES_BY_KIND
from .schedulers import scheduler_rules
from .schema import CrdSchema, SchemaRegistry

__all__ = ["CrdSchema", "SchemaRegistry", "ensure_valid", "installed_schemas", "validate_manifest"]


def _identity_errors(manifest: Any) -> list[FieldError]:
    """Problems that make the manifest something other than a ray.io/v1 object we manage."""
    if not isinstance(manifest, dict):
        return [
            FieldError(
                "(root)",
                "manifest:not-a-mapping",
                f"a manifest must be a mapping, got {type(manifest).__name__}",
            )
        ]
    errors = []
    if manifest.get("apiVersion") != RAY_API_VERSION:
        errors.append(
            FieldError(
                "apiVersion", "manifest:api-version", f"must be {RAY_API_VERSION!r}, got {manifest.get('apiVersion')!r}"
            ),
        )
    if manifest.get("kind") not in RAY_KINDS:
        supported = ", ".join(sorted(RAY_KINDS))
        errors.append(FieldError("kind", "manifest:kind", f"must be one of {supported}, got {manifest.get('kind')!r}"))
    return errors


def validate_manifest(manifest: Any, schemas: SchemaRegistry | None = None) -> list[FieldError]:
    """Every problem with ``manifest``, sorted by path: KubeRay's rules, then (with ``schemas``) its CRD schema."""
    if errors := _identity_errors(manifest):
        return errors
    kind = manifest["kind"]
    errors = RULES_BY_KIND[kind](manifest) + scheduler_rules(manifest) + _size_errors(manifest)
    if schemas is not None:
        schema_errors = _schema_errors(manifest, kind, schemas)
        if schema_errors and schemas.refresh(kind):  # a stale copy may refuse what a newer CRD allows
            schema_errors = _schema_errors(manifest, kind, schemas)
        errors += schema_errors
    return sorted(dict.fromkeys(errors), key=lambda e: (e.path, e.rule, e.message))


def _schema_errors(manifest: dict[str, Any], kind: str, schemas: SchemaRegistry) -> list[FieldError]:
    schema = schemas.for_kind(kind)
    if schema is None:
        return [FieldError("kind", "schema:unknown-kind", f"no CRD schema is loaded for {kind}")]
    return schema.validate(manifest)


# etcd's default request limit, which the API server enforces for every stored object: a larger RayJob
# fails at create after the wait for a worker slot, so refuse it here, naming the field that made it big.
MAX_OBJECT_BYTES = 1_572_864


def _size_errors(manifest: dict[str, Any]) -> list[FieldError]:
    size = len(json.dumps(manifest, default=str).encode())
    if size <= MAX_OBJECT_BYTES:
        return []
    path, field_size = _largest_field(manifest)
    return [
        FieldError(
            path,
            "kubernetes:object-too-large",
            f"the object is {size:,} bytes ({field_size:,} in this field); Kubernetes stores at most {MAX_OBJECT_BYTES:,}: "
            "ship large code or data in the image, a runtime_env working_dir, or storage the job reads",
        )
    ]


def _largest_field(value: Any, path: str = "") -> tuple[str, int]:
    """The path of the biggest leaf value and its serialised size."""
    if isinstance(value, dict) and value:
        return max(
            (_largest_field(item, f"{path}.{key}" if path else str(key)) for key, item in value.items()),
            key=lambda found: found[1],
        )
    if isinstance(value, list) and value:
        return max(
            (_largest_field(item, f"{path}[{index}]") for index, item in enumerate(value)), key=lambda found: found[1]
        )
    return path or "(root)", len(json.dumps(value, default=str).encode())


def _object_name(manifest: Any) -> str:
    if not isinstance(manifest, dict):
        return "manifest"
    raw_metadata = manifest.get("metadata")
    metadata: dict[str, Any] = raw_metadata if isinstance(raw_metadata, dict) else {}
    name = metadata.get("name") or (f"{metadata['generateName']}*" if metadata.get("generateName") else "<unnamed>")
    namespace = metadata.get("namespace")
    kind = manifest.get("kind") if isinstance(manifest.get("kind"), str) else "object"
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


def ensure_valid(manifest: Any, schemas: SchemaRegistry | None = None) -> None:
    """Raise ValidationError listing every problem, e.g. for "RayJob ns/name"; return when there is none."""
    if errors := validate_manifest(manifest, schemas):
        raise ValidationError(errors, object_name=_object_name(manifest))
