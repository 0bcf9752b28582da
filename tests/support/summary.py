"""Counts that long runs print at the end of the session (fault, crash, RBAC runs): ``add(section, line)``
during the run; tests/conftest.py prints each section in pytest's terminal summary."""

from __future__ import annotations

from typing import Any

_SECTIONS: dict[str, list[str]] = {}


def add(section: str, line: str) -> None:
    _SECTIONS.setdefault(section, []).append(line)


def write(terminalreporter: Any) -> None:
    for section, lines in _SECTIONS.items():
        terminalreporter.section(section)
        for line in lines:
            terminalreporter.write_line(line)
