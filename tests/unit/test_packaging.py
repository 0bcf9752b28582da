"""The wheel must contain every sub-package: setuptools maps provider/ to kuberay_provider by a list."""

from __future__ import annotations

import tomllib

from tests.conftest import PROJECT_ROOT


def test_every_subpackage_is_listed_in_pyproject():
    config = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    root = PROJECT_ROOT / "provider"
    on_disk = {
        ".".join(("kuberay_provider",) + init.parent.relative_to(root).parts)
        for init in root.rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert on_disk == listed


def test_core_imports_no_orchestrator():
    offenders = [
        str(path.relative_to(PROJECT_ROOT))
        for path in (PROJECT_ROOT / "provider" / "core").rglob("*.py")
        if any(f"import {name}" in text or f"from {name}" in text for text in [path.read_text()] for name in ("airflow", "prefect"))
    ]
    assert offenders == []
