"""What the local Ray does with a runtime environment's package lists (``pip``, ``uv``, ``conda``).

In a real cluster each Ray node builds a virtualenv (or conda env) per distinct package list. Locally the
jobs run on this interpreter's environment, which often has the packages already, so the local control
plane applies a *package policy* before handing a runtime_env to Ray:

- ``skip-satisfied`` (default): drop each requirement this environment already satisfies (the name is
  installed at a version inside the specifier). Ray's virtualenv sees the environment's packages, so the
  job imports the same thing, without a build. What remains is installed by Ray as usual (a virtualenv
  per list, cached for the Ray session; the first build can take a minute). A list left empty is dropped.
- ``install``: hand the lists to Ray unchanged.
- ``ignore``: drop every package list; jobs run on this environment's packages (offline machines).

Requirements that are not plain PEP 508 lines (URLs, ``-r file``, options, a requirements file path, a
conda env name) are never judged satisfied. Every change is returned as a notice, which the controller
records as an Event on the RayJob (``kubectl describe``) and logs.
"""

from __future__ import annotations

import copy
import importlib.metadata
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion

from .base import BackendNotice

log = logging.getLogger(__name__)

PACKAGE_FIELDS = ("pip", "uv", "conda")
NOTICE_REASON = "LocalRuntimeEnvPackages"
# conda's "numpy=1.26" means 1.26.*; "numpy==1.26.4" and "numpy>=1" read as PEP 440 already.
CONDA_SINGLE_EQUALS = re.compile(r"^([A-Za-z0-9_.\-]+)=([^=<>!~].*)$")
CONDA_NON_PACKAGES = frozenset({"python", "pip"})


class PackagePolicy(str, Enum):
    SKIP_SATISFIED = "skip-satisfied"
    INSTALL = "install"
    IGNORE = "ignore"


DEFAULT_PACKAGE_POLICY = PackagePolicy.SKIP_SATISFIED
InstalledVersion = Callable[[str], "str | None"]


def installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def requirement_satisfied(line: str, installed: InstalledVersion = installed_version) -> bool:
    """True when ``line`` is a PEP 508 requirement that this environment already satisfies."""
    try:
        requirement = Requirement(line.strip())
    except InvalidRequirement:
        return False
    if requirement.url or (requirement.marker is not None and not requirement.marker.evaluate()):
        return False
    version = installed(requirement.name)
    if version is None:
        return False
    try:
        return requirement.specifier.contains(version, prereleases=True)
    except InvalidVersion:
        return False


@dataclass(frozen=True)
class AdaptedRuntimeEnv:
    runtime_env: dict[str, Any] | None
    notices: tuple[BackendNotice, ...] = ()


@dataclass(frozen=True)
class _Split:
    """A package list cut into what this environment satisfies and what Ray must still install."""

    kept: list[str]
    satisfied: list[str]


def _split(lines: list[Any], installed: InstalledVersion) -> _Split:
    kept: list[Any] = []
    satisfied: list[Any] = []
    for line in lines:
        (satisfied if isinstance(line, str) and requirement_satisfied(line, installed) else kept).append(line)
    return _Split(kept, satisfied)


def _package_lines(field: str, value: Any) -> list[Any] | None:
    """The requirement lines of a pip / uv value (a list, or a dict with ``packages``); None otherwise."""
    if field == "conda":
        return None
    if isinstance(value, list):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("packages"), list):
        return list(value["packages"])
    return None  # a requirements file path: not judged


def _with_lines(value: Any, lines: list[Any]) -> Any:
    if isinstance(value, Mapping):
        return {**value, "packages": lines}
    return lines


def _conda_as_pep508(spec: str) -> str:
    match = CONDA_SINGLE_EQUALS.match(spec.strip())
    return f"{match.group(1)}=={match.group(2)}.*" if match else spec


def _conda_satisfied(value: Any, installed: InstalledVersion) -> bool:
    """A conda env spec whose every dependency (conda ones and its pip list) is satisfied here."""
    if not isinstance(value, Mapping):
        return False  # an env name or a YAML path
    for dependency in value.get("dependencies") or []:
        if isinstance(dependency, Mapping):
            pip_lines = dependency.get("pip") or []
            if any(not requirement_satisfied(line, installed) for line in pip_lines):
                return False
        elif isinstance(dependency, str):
            name = re.split(r"[=<>!~ ]", dependency.strip(), maxsplit=1)[0]
            if name not in CONDA_NON_PACKAGES and not requirement_satisfied(_conda_as_pep508(dependency), installed):
                return False
        else:
            return False
    return True


def _describe(items: list[Any]) -> str:
    return ", ".join(str(item) for item in items)


def _skip_satisfied(field: str, value: Any, installed: InstalledVersion) -> tuple[Any, list[BackendNotice]]:
    """The field's new value (None: drop the field) and what to tell the user."""
    if field == "conda":
        if _conda_satisfied(value, installed):
            return None, [_warning("conda: every dependency is already installed locally; the conda env is not built")]
        return value, [_installing(field, "a conda environment")]
    lines = _package_lines(field, value)
    if lines is None:
        return value, [_installing(field, str(value))]
    split = _split(lines, installed)
    notices = []
    if split.satisfied:
        notices.append(
            _warning(
                f"{field}: already satisfied by the local environment, not installed: {_describe(split.satisfied)}"
            )
        )
    if split.kept:
        notices.append(_installing(field, _describe(split.kept)))
        return _with_lines(value, split.kept), notices
    return None, notices


def _warning(message: str) -> BackendNotice:
    return BackendNotice("Warning", NOTICE_REASON, f"Local control plane: {message}")


def _installing(field: str, what: str) -> BackendNotice:
    return BackendNotice(
        "Normal",
        NOTICE_REASON,
        f"Local control plane: {field}: Ray installs {what} in a "
        "per-job environment (the first build of a list can take a minute)",
    )


def adapt_runtime_env(
    runtime_env: Mapping[str, Any] | None,
    policy: PackagePolicy = DEFAULT_PACKAGE_POLICY,
    installed: InstalledVersion = installed_version,
) -> AdaptedRuntimeEnv:
    """``runtime_env`` with its package lists treated by ``policy``, and the notices saying how."""
    if not runtime_env or policy is PackagePolicy.INSTALL or not any(field in runtime_env for field in PACKAGE_FIELDS):
        return AdaptedRuntimeEnv(dict(runtime_env) if runtime_env else None)
    adapted = copy.deepcopy(dict(runtime_env))
    notices: list[BackendNotice] = []
    for field in PACKAGE_FIELDS:
        if field not in adapted:
            continue
        if policy is PackagePolicy.IGNORE:
            value, field_notices = (
                None,
                [
                    _warning(
                        f"{field} ignored (package policy 'ignore'), the job runs on the "
                        f"local environment's packages: {adapted[field]}"
                    )
                ],
            )
        else:
            value, field_notices = _skip_satisfied(field, adapted[field], installed)
        if value is None:
            del adapted[field]
        else:
            adapted[field] = value
        notices += field_notices
    for notice in notices:
        log.log(logging.WARNING if notice.type == "Warning" else logging.INFO, "%s", notice.message)
    return AdaptedRuntimeEnv(adapted or None, tuple(notices))
