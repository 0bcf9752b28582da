"""Reading KubeRay manifests from files and text, and writing them back unchanged.

Manifests stay plain dicts end to end: what a user wrote is what reaches the API server, so every field
KubeRay knows (and every field a newer KubeRay adds) passes through without a model to fall behind.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from kuberay_provider.core.errors import ManifestError
from kuberay_provider.core.resources import RAY_KINDS, kind_of


def parse_documents(text: str | bytes, *, source: str = "<text>") -> list[dict[str, Any]]:
    """Every non-empty document of a YAML (or JSON) stream, each a mapping; a List's items unpacked."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ManifestError(f"{source}: not UTF-8 text (byte {exc.start})") from exc
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        raise ManifestError(f"{source}: not valid YAML: {_short_yaml_error(exc)}") from exc
    result: list[dict[str, Any]] = []
    for index, doc in enumerate(documents):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise ManifestError(f"{source}: document {index + 1} is a {type(doc).__name__}, not a mapping")
        result.extend(_unpack_list(doc))
    return result


def _unpack_list(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    # `kubectl get -o yaml` of several objects yields a v1 List; treat its items as documents.
    if doc.get("kind") == "List" and isinstance(doc.get("items"), list):
        for item in doc["items"]:
            if isinstance(item, dict):
                yield item
    else:
        yield doc


def _short_yaml_error(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem


def load_documents(path: str | Path) -> list[dict[str, Any]]:
    """All documents of one YAML/JSON file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read: {exc.strerror}") from exc
    return parse_documents(data, source=str(path))


def ray_objects(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ray.io/v1 RayJob / RayCluster / RayService documents; other kinds are passed over."""
    return [doc for doc in documents if kind_of(doc) is not None]


def load_manifest(source: str | Path | Mapping[str, Any], *, kind: str | None = None) -> dict[str, Any]:
    """Exactly one Ray object from a dict, a file path, or YAML/JSON text.

    With ``kind``, the object must be of that kind. A file holding other kinds beside it (a ConfigMap
    with the job's code, as KubeRay's samples have) is fine; two Ray objects of the kind is an error.
    """
    if isinstance(source, Mapping):
        documents = [source if isinstance(source, dict) else dict(source)]  # a dict comes back as it is
        origin = "manifest"
    elif isinstance(source, Path) or (isinstance(source, str) and "\n" not in source and _looks_like_path(source)):
        documents = load_documents(source)
        origin = str(source)
    else:
        documents = parse_documents(source)
        origin = "<text>"
    candidates = [
        d
        for d in documents
        if (kind is None and kind_of(d) is not None) or (kind is not None and d.get("kind") == kind)
    ]
    wanted = kind or " / ".join(RAY_KINDS)
    if not candidates:
        found = ", ".join(sorted({f"{d.get('apiVersion')}/{d.get('kind')}" for d in documents})) or "nothing"
        raise ManifestError(f"{origin}: no {wanted} found (found {found})")
    if len(candidates) > 1:
        raise ManifestError(f"{origin}: {len(candidates)} {wanted} objects found, expected exactly one")
    manifest = candidates[0]
    if kind is not None and manifest.get("apiVersion") != "ray.io/v1":
        raise ManifestError(f"{origin}: {kind} has apiVersion {manifest.get('apiVersion')!r}; expected 'ray.io/v1'")
    return manifest


def _looks_like_path(text: str) -> bool:
    return text.endswith((".yaml", ".yml", ".json")) or Path(text).is_file()


def companion_objects(source: str | Path) -> list[dict[str, Any]]:
    """The non-Ray objects in a manifest file (for example the ConfigMap a sample mounts its code from)."""
    return [d for d in load_documents(source) if kind_of(d) is None]


def dump_yaml(manifest: dict[str, Any]) -> str:
    """YAML that loads back to exactly ``manifest`` (key order kept, multi-line strings literal)."""
    return yaml.dump(manifest, Dumper=_LiteralDumper, sort_keys=False, allow_unicode=True)


def dump_json(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest, indent=2, ensure_ascii=False)


class _LiteralDumper(yaml.SafeDumper):
    """Writes multi-line strings (entrypoints, runtimeEnvYAML, serveConfigV2) as readable `|` blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    # PyYAML falls back to a quoted style by itself where a block cannot hold the text exactly.
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_LiteralDumper.add_representer(str, _represent_str)
