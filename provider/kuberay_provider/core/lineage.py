"""Lineage env vars in a RayJob's runtime env that name the orchestrator's try.

An orchestrator passes its run to the Ray job as the OpenLineage parent (``airflow.lineage``), and the
parent run id is the try's: a retry renders other values than the try that created the RayJob. Yet it is
the same job, and a retry that re-attaches to it (the worker died, the wait timed out) must still find
the same spec, so these variables are left out of the spec digest (``core.lifecycle``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

PER_TRY_ENV_PREFIXES = ("OPENLINEAGE_PARENT_", "OPENLINEAGE_ROOT_PARENT_")


def without_per_try_env(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    """``spec`` without the per-try lineage variables in its ``runtimeEnvYAML``; unchanged (the very object)
    when it has none or the YAML cannot be read, so digests of other RayJobs stay what they were."""
    text = spec.get("runtimeEnvYAML")
    if not isinstance(text, str) or "OPENLINEAGE_" not in text:
        return spec
    try:
        runtime_env = yaml.safe_load(text)
    except yaml.YAMLError:
        return spec
    if not isinstance(runtime_env, dict) or not isinstance(runtime_env.get("env_vars"), dict):
        return spec
    env_vars = {
        name: value for name, value in runtime_env["env_vars"].items() if not str(name).startswith(PER_TRY_ENV_PREFIXES)
    }
    return {**spec, "runtimeEnvYAML": yaml.safe_dump({**runtime_env, "env_vars": env_vars}, sort_keys=True)}
