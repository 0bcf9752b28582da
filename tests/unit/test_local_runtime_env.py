"""The local control plane's package policy for runtime envs (pip / uv / conda lists)."""

from __future__ import annotations

import pytest

from kuberay_provider.local.ray_backend.runtime_env import PackagePolicy, adapt_runtime_env, requirement_satisfied

INSTALLED = {"requests": "2.34.2", "pyyaml": "6.0.2", "numpy": "1.26.4"}


def installed(name: str) -> str | None:
    return INSTALLED.get(name.lower())


@pytest.mark.parametrize(
    ("line", "satisfied"),
    [
        ("requests", True),
        ("requests>=2.30", True),
        ("requests==2.26.0", False),
        ("PyYAML~=6.0", True),
        ("pendulum==2.1.2", False),  # not installed at all
        ("requests @ https://example.invalid/requests.whl", False),  # a URL is never judged
        ("-r requirements.txt", False),
        ("requests; python_version < '3'", False),  # a marker that excludes it here
    ],
)
def test_requirement_satisfied(line: str, satisfied: bool) -> None:
    assert requirement_satisfied(line, installed) is satisfied


def test_skip_satisfied_drops_what_is_installed_and_keeps_the_rest() -> None:
    adapted = adapt_runtime_env(
        {"pip": ["requests>=2", "pendulum==2.1.2"], "env_vars": {"A": "b"}}, PackagePolicy.SKIP_SATISFIED, installed
    )
    assert adapted.runtime_env == {"pip": ["pendulum==2.1.2"], "env_vars": {"A": "b"}}
    warning, installing = adapted.notices
    assert warning.type == "Warning" and "not installed: requests>=2" in warning.message
    assert installing.type == "Normal" and "Ray installs pendulum==2.1.2" in installing.message


def test_a_list_fully_satisfied_is_dropped_with_its_options() -> None:
    adapted = adapt_runtime_env(
        {"uv": {"packages": ["numpy<2", "pyyaml"], "uv_check": False}}, PackagePolicy.SKIP_SATISFIED, installed
    )
    assert adapted.runtime_env is None
    [warning] = adapted.notices
    assert warning.type == "Warning" and "uv: already satisfied" in warning.message


def test_a_dict_list_keeps_its_options_for_what_remains() -> None:
    adapted = adapt_runtime_env(
        {"pip": {"packages": ["requests", "pendulum"], "pip_check": False}}, PackagePolicy.SKIP_SATISFIED, installed
    )
    assert adapted.runtime_env == {"pip": {"packages": ["pendulum"], "pip_check": False}}


def test_nothing_satisfied_changes_nothing_but_says_ray_installs() -> None:
    env = {"pip": ["requests==2.26.0", "pendulum==2.1.2"], "env_vars": {"counter_name": "test_counter"}}
    adapted = adapt_runtime_env(env, PackagePolicy.SKIP_SATISFIED, installed)
    assert adapted.runtime_env == env
    assert [notice.type for notice in adapted.notices] == ["Normal"]


def test_conda_spec_is_dropped_only_when_every_dependency_is_satisfied() -> None:
    satisfied = {"conda": {"dependencies": ["python=3.11", "numpy=1.26", {"pip": ["requests"]}]}}
    assert adapt_runtime_env(satisfied, PackagePolicy.SKIP_SATISFIED, installed).runtime_env is None
    missing = {"conda": {"dependencies": ["numpy=1.26", {"pip": ["pendulum"]}]}}
    assert adapt_runtime_env(missing, PackagePolicy.SKIP_SATISFIED, installed).runtime_env == missing
    named = {"conda": "my-env"}
    assert adapt_runtime_env(named, PackagePolicy.SKIP_SATISFIED, installed).runtime_env == named


def test_ignore_drops_every_package_list_and_install_keeps_them() -> None:
    env = {"pip": ["pendulum==2.1.2"], "conda": "my-env", "working_dir": "/code"}
    ignored = adapt_runtime_env(env, PackagePolicy.IGNORE, installed)
    assert ignored.runtime_env == {"working_dir": "/code"}
    assert [notice.type for notice in ignored.notices] == ["Warning", "Warning"]
    kept = adapt_runtime_env(env, PackagePolicy.INSTALL, installed)
    assert (kept.runtime_env, kept.notices) == (env, ())


def test_no_package_list_no_notice() -> None:
    assert adapt_runtime_env({"env_vars": {"A": "b"}}).notices == ()
    assert adapt_runtime_env(None).runtime_env is None
