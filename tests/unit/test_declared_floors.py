"""The floors pyproject.toml declares are the versions the lowest run tests (.ci/lowest.sh, .venv-lowest):
every requirement of the airflow and prefect extras has a ">=" floor, and .ci/constraints-lowest.txt pins
exactly that version, so a floor cannot be raised or lowered without `bash .ci/dev lock` and a test on it."""

from __future__ import annotations

import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.conftest import PROJECT_ROOT


def declared_floors() -> dict[str, Version]:
    extras = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    floors = {}
    for text in extras["airflow"] + extras["prefect"]:
        requirement = Requirement(text)
        [floor] = [Version(spec.version) for spec in requirement.specifier if spec.operator == ">="]
        floors[canonicalize_name(requirement.name)] = floor
    return floors


def locked(path: str) -> dict[str, Version]:
    lines = (PROJECT_ROOT / path).read_text().splitlines()
    pins = (line.split("==", 1) for line in lines if line[:1].isalnum() and "==" in line)
    return {canonicalize_name(name): Version(version.strip()) for name, version in pins}


def test_the_lowest_lock_pins_exactly_the_declared_floors():
    floors, lowest = declared_floors(), locked(".ci/constraints-lowest.txt")
    assert set(floors) == {
        "apache-airflow",
        "apache-airflow-providers-cncf-kubernetes",
        "prefect",
        "prefect-kubernetes",
    }
    assert {name: lowest.get(name) for name in floors} == floors, "run `bash .ci/dev lock` after changing a floor"


def test_the_main_lock_satisfies_every_declared_requirement():
    config = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    main = locked(".ci/constraints.txt")
    for text in config["dependencies"] + [r for extra in config["optional-dependencies"].values() for r in extra]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        if name in main:
            assert requirement.specifier.contains(main[name], prereleases=True), f"{text} but the lock has {main[name]}"
