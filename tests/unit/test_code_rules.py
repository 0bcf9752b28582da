"""Rules of the code base that ruff and mypy do not check: small modules, no private name crossing a module
boundary, every suppression saying why, and adapters that never reach into the local control plane."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.conftest import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "provider" / "kuberay_provider"
MAX_MODULE_LINES = 400
# A suppression names its codes, then says why (see the examples in the rule's own test below).
SUPPRESSION = re.compile(r"#\s*(noqa|type:\s*ignore)\b(?P<codes>(:\s*[A-Z0-9, ]+|\[[a-z0-9\-, ]+\])?)(?P<rest>.*)$")


def modules() -> list[Path]:
    return sorted(path for path in PACKAGE.rglob("*.py") if "__pycache__" not in path.parts)


def test_every_module_stays_small() -> None:
    too_long = {
        str(path.relative_to(PACKAGE)): lines
        for path in modules()
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert too_long == {}, f"split these modules (≤ {MAX_MODULE_LINES} lines each): {too_long}"


def test_no_private_name_is_imported_from_another_module() -> None:
    crossings = []
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("kuberay_provider"):
                crossings += [
                    f"{path.relative_to(PACKAGE)}: {node.module}.{alias.name}"
                    for alias in node.names
                    if alias.name.startswith("_") and not alias.name.startswith("__")
                ]
    assert crossings == [], "make these names public where they are defined, or keep them in their module"


def test_every_suppression_names_its_codes_and_says_why() -> None:
    bare = []
    for path in modules():
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if (found := SUPPRESSION.search(line)) is None:
                continue
            reason = found["rest"].strip(" #-–:()")
            if not found["codes"] or len(reason) < 4:
                bare.append(f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}")
    assert bare == [], (
        "write the codes and a reason on the line, e.g. '# type: ignore[misc]  # Airflow's stub is wrong'"
    )


def test_the_suppression_rule_reads_what_it_should() -> None:
    def passes(line: str) -> bool:
        found = SUPPRESSION.search(line)
        return bool(found and found["codes"] and len(found["rest"].strip(" #-–:()")) >= 4)

    assert passes("x = 1  # noqa: F401 - re-exported for users")
    assert passes("y = f()  # type: ignore[call-arg]  # Prefect's sync dispatch keyword")
    assert not passes("x = 1  # noqa")
    assert not passes("x = 1  # noqa: F401")
    assert not passes("y = f()  # type: ignore")
    assert not passes("y = f()  # type: ignore[call-arg]")


def test_the_adapters_never_import_the_local_control_plane() -> None:
    offenders = [
        str(path.relative_to(PACKAGE))
        for folder in ("core", "airflow", "prefect")
        for path in (PACKAGE / folder).rglob("*.py")
        if "kuberay_provider.local" in path.read_text()
    ]
    assert offenders == []
