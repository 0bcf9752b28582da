"""The wheel is the src-layout package provider/kuberay_provider/, found by setuptools' discovery."""

from __future__ import annotations

import tomllib

from tests.conftest import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "provider" / "kuberay_provider"


def test_the_package_is_discovered_under_provider_and_ships_its_type_marker():
    config = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["packages"]["find"]["where"] == ["provider"]
    assert "py.typed" in config["package-data"]["kuberay_provider"]
    assert (PACKAGE / "py.typed").is_file()
    missing_init = [
        str(folder.relative_to(PROJECT_ROOT))
        for folder in PACKAGE.rglob("*")
        if folder.is_dir()
        and "__pycache__" not in folder.parts
        and any(folder.glob("*.py"))
        and not (folder / "__init__.py").exists()
    ]
    assert missing_init == []  # discovery finds regular packages only


def test_core_imports_no_orchestrator():
    offenders = [
        str(path.relative_to(PROJECT_ROOT))
        for path in (PACKAGE / "core").rglob("*.py")
        if any(
            f"import {name}" in text or f"from {name}" in text
            for text in [path.read_text()]
            for name in ("airflow", "prefect")
        )
    ]
    assert offenders == []
