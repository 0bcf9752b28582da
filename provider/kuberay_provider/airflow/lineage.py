"""OpenLineage: the Ray job learns which Airflow task run is its parent, as Spark jobs do from Airflow.

Airflow's Spark, Dataproc and Glue operators hand the task's OpenLineage run to the job they start, so the
events the job emits name that run as their parent. Here the same goes into the RayJob's runtime env (the
Ray job's driver process, on every way of running) when ``apache-airflow-providers-openlineage`` is
installed and OpenLineage is enabled for the task (a transport configured, ``[openlineage] disabled`` off,
the operator not in ``disabled_for_operators``, selective enablement satisfied); otherwise nothing changes.

The variables, under the names the OpenLineage clients read:

* ``OPENLINEAGE_PARENT_ID`` and ``OPENLINEAGE_ROOT_PARENT_ID``, each ``{namespace}/{job name}/{run id}``:
  what the OpenLineage Python integrations read (``openlineage.common.provider.dbt.utils``
  ``get_parent_run_metadata``, used by ``dbt-ol``);
* ``OPENLINEAGE_PARENT_JOB_NAMESPACE`` / ``_JOB_NAME`` / ``_RUN_ID`` and the same with ``ROOT_PARENT``:
  the parts, what the OpenLineage Spark integration reads from the environment (and what Airflow's Glue
  injection sets), so Spark on Ray links up too.

The parent is the task's try (``lineage_run_id``), the root its DAG run (``lineage_root_run_id``), the
values of the provider's own macros. The user's env vars win: if the runtime env already names a parent
(any ``OPENLINEAGE_PARENT_*``, ``OPENLINEAGE_ROOT_PARENT_*`` or ``OPENLINEAGE_CONTEXT``), none is added,
since a parent half from the user and half from the task would name no run at all.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from airflow.sdk import Context

from kuberay_provider.core.job_request import RayJobRequest
from kuberay_provider.core.lineage import PER_TRY_ENV_PREFIXES
from kuberay_provider.core.spec import runtime_env_from_yaml

log = logging.getLogger(__name__)
# Any of these in the user's runtime env means they chose the parent themselves.
USER_PARENT_PREFIXES = (*PER_TRY_ENV_PREFIXES, "OPENLINEAGE_CONTEXT")


def parent_job_env(context: Context) -> dict[str, str]:
    """The task's OpenLineage parent and root runs as env vars; empty when the OpenLineage provider is
    absent or disabled for this task, or the ids cannot be had (lineage never fails a task)."""
    try:
        from airflow.providers.openlineage import conf
        from airflow.providers.openlineage.plugins import macros
    except ImportError:
        return {}
    try:
        if not _enabled_for(conf, context.get("task")):
            return {}
        ti: Any = context["ti"]
        namespace = macros.lineage_job_namespace()  # type: ignore[no-untyped-call]  # the OpenLineage macro is unannotated
        parent = (namespace, macros.lineage_job_name(ti), macros.lineage_run_id(ti))
        root = (_root_namespace(macros, ti), macros.lineage_root_job_name(ti), macros.lineage_root_run_id(ti))
    except Exception as exc:
        log.warning("OpenLineage parent run not passed to the Ray job: %s", exc)
        return {}
    env = {"OPENLINEAGE_PARENT_ID": "/".join(parent), "OPENLINEAGE_ROOT_PARENT_ID": "/".join(root)}
    for prefix, (namespace, name, run_id) in (("OPENLINEAGE_PARENT", parent), ("OPENLINEAGE_ROOT_PARENT", root)):
        env.update({f"{prefix}_JOB_NAMESPACE": namespace, f"{prefix}_JOB_NAME": name, f"{prefix}_RUN_ID": run_id})
    return {key: str(value) for key, value in env.items()}


def _enabled_for(conf: Any, task: Any) -> bool:
    """What the OpenLineage listener checks before emitting for a task: no events for it, no parent to name."""
    if conf.is_disabled():
        return False
    try:
        from airflow.providers.openlineage.utils.utils import is_operator_disabled, is_selective_lineage_enabled
    except ImportError:  # an older provider: the global switch is all there is
        return True
    return task is None or (not is_operator_disabled(task) and is_selective_lineage_enabled(task))


def _root_namespace(macros: Any, ti: Any) -> str:
    # lineage_root_job_namespace honours a root passed in the DAG run's conf; older providers lack it.
    root_namespace = getattr(macros, "lineage_root_job_namespace", None)
    return str(root_namespace(ti) if root_namespace else macros.lineage_job_namespace())


def with_lineage_parent(request: RayJobRequest, context: Context) -> RayJobRequest:
    """``request`` with the task's OpenLineage parent in its runtime env (``parent_job_env``); unchanged when
    there is none to add, the user named a parent, or the runtime env cannot be read (its own error then
    surfaces where it always does, in validation)."""
    ours = parent_job_env(context)
    if not ours:
        return request
    try:
        params = _with_env_vars(request, ours)
    except Exception as exc:
        log.warning("OpenLineage parent run not passed to the Ray job: its runtime env could not be read (%s)", exc)
        return request
    if params is None:
        log.info("The runtime env names an OpenLineage parent already: the task's run is not added")
        return request
    log.info("OpenLineage: the Ray job's parent run is %s", ours["OPENLINEAGE_PARENT_ID"])
    return dataclasses.replace(request, spec_params=params)


def _with_env_vars(request: RayJobRequest, ours: Mapping[str, str]) -> dict[str, Any] | None:
    """The request's spec params with ``ours`` added to the runtime env it will have (the keyword's, else the
    base manifest's ``runtimeEnvYAML``); None when the user's env vars name a parent already."""
    params = dict(request.spec_params)
    if params.get("runtime_env") is not None and params.get("runtime_env_yaml") is not None:
        raise ValueError("both runtime_env and runtime_env_yaml are given")
    if params.get("runtime_env") is not None:
        given = params.pop("runtime_env")
        runtime_env = dict(given) if isinstance(given, Mapping) else runtime_env_from_yaml(given)
    elif params.get("runtime_env_yaml") is not None:
        runtime_env = runtime_env_from_yaml(params.pop("runtime_env_yaml"))
    else:
        runtime_env = runtime_env_from_yaml(((request.base_manifest or {}).get("spec") or {}).get("runtimeEnvYAML"))
    env_vars = dict(runtime_env.get("env_vars") or {})
    if any(str(name).startswith(USER_PARENT_PREFIXES) for name in env_vars):
        return None
    params["runtime_env"] = {**runtime_env, "env_vars": {**ours, **env_vars}}
    return params
