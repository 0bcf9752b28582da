"""``Accept: application/json;as=Table``: the server-side printing that ``kubectl get`` asks for."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from .registry import ResourceType

_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+|\*)\]")


def wants_table(accept: str) -> bool:
    return any("as=Table" in clause for clause in accept.split(","))


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration."""
    total = int(seconds)
    if total < -1:
        return "<invalid>"
    if total < 0:
        return "0s"
    if total < 120:
        return f"{total}s"
    minutes, hours = total // 60, total // 3600
    if minutes < 10:
        return f"{minutes}m{total % 60}s" if total % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 24 * 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    years = days // 365
    if years < 8:
        return f"{years}y{days % 365}d" if days % 365 else f"{years}y"
    return f"{years}y"


def evaluate_json_path(obj: Any, path: str) -> Any:
    """The simple JSONPaths printer columns use: ``.a.b``, ``.a[0].b``, ``.a[*].b`` (first match)."""
    current: list[Any] = [obj]
    for key, index in _PATH_PART.findall(path):
        following: list[Any] = []
        for value in current:
            if key and isinstance(value, dict) and key in value:
                following.append(value[key])
            elif index == "*" and isinstance(value, list):
                following.extend(value)
            elif index and index != "*" and isinstance(value, list) and int(index) < len(value):
                following.append(value[int(index)])
        current = following
    return current[0] if current else None


def _cell(column_type: str, value: Any) -> Any:
    if value is None:
        return None
    if column_type == "date":
        try:
            stamp = datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except ValueError:
            return "<invalid>"
        return human_duration((datetime.now(UTC) - stamp).total_seconds())
    if column_type == "string":
        return value if isinstance(value, str) else json.dumps(value)
    return value


def _row(rtype: ResourceType, obj: dict[str, Any], include_object: str) -> dict[str, Any]:
    cells = [obj["metadata"]["name"]] + [
        _cell(c.type, evaluate_json_path(obj, c.json_path)) for c in rtype.printer_columns
    ]
    row: dict[str, Any] = {"cells": cells}
    if include_object == "Object":
        row["object"] = obj
    elif include_object != "None":
        row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}
    return row


def column_definitions(rtype: ResourceType) -> list[dict[str, Any]]:
    name = {
        "name": "Name",
        "type": "string",
        "format": "name",
        "priority": 0,
        "description": "Name must be unique within a namespace.",
    }
    return [name] + [
        {"name": c.name, "type": c.type, "format": c.format, "description": c.description, "priority": c.priority}
        for c in rtype.printer_columns
    ]


def to_table(
    rtype: ResourceType,
    objects: list[dict[str, Any]],
    resource_version: str,
    include_object: str,
    continue_token: str = "",
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"resourceVersion": resource_version}
    if continue_token:
        metadata["continue"] = continue_token
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": column_definitions(rtype),
        "rows": [_row(rtype, obj, include_object) for obj in objects],
    }
