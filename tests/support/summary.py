"""Counts that long runs print at the end of the session (fault, crash, RBAC runs): ``add(section, line)``
during the run; tests/conftest.py prints each section in pytest's terminal summary.

Under pytest-xdist the lines are added in the workers and printed by the controller, so each worker
appends them to a file in ``SUMMARY_DIR_VARIABLE`` (set by the controller before the workers start)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

SUMMARY_DIR_VARIABLE = "KUBERAY_TEST_SUMMARY_DIR"
_SECTIONS: dict[str, list[str]] = {}


def add(section: str, line: str) -> None:
    worker, folder = os.environ.get("PYTEST_XDIST_WORKER"), os.environ.get(SUMMARY_DIR_VARIABLE)
    if worker and folder:
        with (Path(folder) / f"{worker}.jsonl").open("a") as sink:
            sink.write(json.dumps([section, f"[{worker}] {line}"]) + "\n")
    else:
        _SECTIONS.setdefault(section, []).append(line)


def _from_workers() -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    folder = os.environ.get(SUMMARY_DIR_VARIABLE)
    for path in sorted(Path(folder).glob("*.jsonl")) if folder else []:
        for record in path.read_text().splitlines():
            section, line = json.loads(record)
            sections.setdefault(section, []).append(line)
    return sections


def write(terminalreporter: Any) -> None:
    sections = {section: list(lines) for section, lines in _SECTIONS.items()}
    for section, lines in _from_workers().items():
        sections.setdefault(section, []).extend(lines)
    for section, lines in sections.items():
        terminalreporter.section(section)
        for line in lines:
            terminalreporter.write_line(line)
