"""Label and field selectors, parsed as the API server parses ``labelSelector`` / ``fieldSelector``."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import bad_request

_SET_REQUIREMENT = re.compile(r"^\s*(!?)\s*([^\s!=(),]+)\s*(?:(in|notin)\s*\(([^)]*)\))?\s*$")
_EQUALITY_REQUIREMENT = re.compile(r"^\s*([^\s!=(),]+)\s*(==|=|!=)\s*([^\s!=(),]*)\s*$")


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # =, !=, in, notin, exists, !
    values: frozenset[str] = frozenset()

    def matches(self, value: str | None) -> bool:
        if self.operator == "exists":
            return value is not None
        if self.operator == "!":
            return value is None
        if self.operator in ("=", "in"):
            return value is not None and value in self.values
        # != and notin also match objects without the key, as in Kubernetes.
        return value is None or value not in self.values


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside ``in (a,b)`` parentheses."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [part for part in parts if part.strip()]


def parse_label_selector(text: str) -> list[Requirement]:
    requirements = []
    for part in _split_top_level(text or ""):
        equality = _EQUALITY_REQUIREMENT.match(part)
        if equality:
            key, operator, value = equality.groups()
            requirements.append(Requirement(key, "!=" if operator == "!=" else "=", frozenset({value})))
            continue
        set_based = _SET_REQUIREMENT.match(part)
        if not set_based:
            raise bad_request(f"unable to parse requirement: {part.strip()!r}")
        negated, key, operator, values = set_based.groups()
        if operator:
            if negated:
                raise bad_request(f"unable to parse requirement: {part.strip()!r}")
            requirements.append(
                Requirement(key, operator, frozenset(v.strip() for v in values.split(",") if v.strip()))
            )
        else:
            requirements.append(Requirement(key, "!" if negated else "exists"))
    return requirements


def parse_field_selector(text: str) -> list[Requirement]:
    requirements = []
    for part in _split_top_level(text or ""):
        equality = _EQUALITY_REQUIREMENT.match(part)
        if not equality:
            raise bad_request(f"invalid field selector: {part.strip()!r}")
        key, operator, value = equality.groups()
        requirements.append(Requirement(key, "!=" if operator == "!=" else "=", frozenset({value})))
    return requirements


def _field_value(obj: dict[str, Any], dotted: str) -> str | None:
    current: Any = obj
    for part in dotted.split("."):
        if not isinstance(current, dict) or part not in current:
            # A field the object lacks compares as the empty string, as Kubernetes' field sets do.
            return ""
        current = current[part]
    if isinstance(current, bool):
        return "true" if current else "false"
    return "" if current is None else str(current)


def make_matcher(label_selector: str | None, field_selector: str | None) -> Callable[[dict[str, Any]], bool]:
    """A predicate over objects; raises a 400 ApiError for a selector that does not parse."""
    labels = parse_label_selector(label_selector or "")
    fields = parse_field_selector(field_selector or "")

    def matches(obj: dict[str, Any]) -> bool:
        object_labels = obj.get("metadata", {}).get("labels") or {}
        return all(r.matches(object_labels.get(r.key)) for r in labels) and all(
            r.matches(_field_value(obj, r.key)) for r in fields
        )

    return matches
