"""Which RayJob a Prefect task call owns: the same one in every retry of the task and of its flow run,
never the one of another call.

Prefect 3 gives each task run a random dynamic key and makes new task runs in every flow-run attempt,
so neither the task run's id nor its dynamic key survives a flow-run retry. What does survive: the flow
run's id (its ``run_count`` goes up), the task's key (its function's name and code hash) and what the
call runs. A call is therefore identified by

    (flow name, flow run id, task key + digest of the job, number of the call)

where the number counts the calls of that task with that job in the flow-run attempt (0, 1, 2...): two
calls of one task never share a RayJob, and two calls with different jobs never trade numbers however
the task runner orders them (``.map`` and ``.submit`` start tasks in no fixed order). A task retry keeps
its task run, and so its number. The try number grows with both kinds of retry, so a later try replaces
a RayJob that failed and re-attaches to one still running or succeeded.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from prefect.blocks.core import Block
from prefect.context import FlowRunContext, TaskRunContext

from kuberay_provider.core.job_request import RunIdentity

# try number = flow-run attempt * 1000 + task try: each retry, of either kind, counts higher than the last
TRIES_PER_FLOW_RUN_ATTEMPT = 1000
COUNTER_PREFIX = "kuberay-provider/"  # our keys in the attempt's counters, apart from Prefect's task keys
_counting = threading.Lock()  # the attempt's tasks run on several threads


@dataclass(frozen=True)
class TaskCall:
    """The running call's identity (names and labels derive from it) and its try number."""

    identity: RunIdentity
    try_number: int


def fingerprint(*parts: Any) -> str:
    """A short digest of what defines a job: JSON-able parts, or bytes (e.g. a pickled function call)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else json.dumps(part, sort_keys=True, default=str).encode())
        digest.update(b"\x1f")
    return digest.hexdigest()[:10]


def block_fingerprint(block: Block, ignored: Iterable[str]) -> str:
    """The digest of a block's fields but ``ignored`` ones: credentials (a rotated token is the same job)
    and how long to wait or what to log (a retry may wait longer for the same job)."""
    fields = set(type(block).model_fields) - set(ignored)
    dumped = block.model_dump(mode="json", include=fields)
    return fingerprint({name: value for name, value in dumped.items() if name in fields})


def current_call(job: str) -> TaskCall:
    """The identity of the running task call that runs ``job`` (a ``fingerprint``), and its try number."""
    task_context = TaskRunContext.get()
    if task_context is None:
        raise RuntimeError(
            "kuberay_provider.prefect tasks must run as Prefect task runs: call the task itself "
            "(not its .fn), or call .fn only from inside another task"
        )
    task_run = task_context.task_run
    task = f"{task_run.task_key}.{job}"
    task_try = task_run.run_count or 1
    flow_context = FlowRunContext.get()
    if flow_context is None or flow_context.flow_run is None:  # a task run without a flow: no flow retries
        return TaskCall(RunIdentity("prefect", task, str(task_run.id)), task_try)
    owner = flow_context.flow.name if flow_context.flow is not None else "prefect"
    run_id = str(flow_context.flow_run.id)
    try_number = (flow_context.flow_run.run_count or 1) * TRIES_PER_FLOW_RUN_ATTEMPT + task_try
    if flow_context.detached:
        # A task in another process (Dask, Ray or process task runners) cannot count with its siblings:
        # its own task run names the RayJob, so task retries re-attach but flow-run retries start anew.
        return TaskCall(RunIdentity(owner, f"{task}.{task_run.id}", run_id), try_number)
    number = call_number(flow_context.task_run_dynamic_keys, str(task_run.id), task_run.task_key, task_try, job)
    return TaskCall(RunIdentity(owner, task, run_id, number), try_number)


def call_number(counters: dict[str, Any], task_run_id: str, task_key: str, task_try: int, job: str) -> int:
    """The call's number among the attempt's calls of ``task_key`` running ``job``.

    ``counters`` is the attempt's ``FlowRunContext.task_run_dynamic_keys``: Prefect's own counters of task
    calls, new for every flow-run attempt and shared by all its tasks. A task run that runs ``job`` more
    than once (its body calling ``create_rayjob.fn`` twice) gets a number for each, the same ones again
    in its retries.
    """
    with _counting:
        seen_key = f"{COUNTER_PREFIX}seen/{task_run_id}/{task_try}/{job}"
        nth = int(counters.get(seen_key, 0))
        counters[seen_key] = nth + 1
        own_key = f"{COUNTER_PREFIX}call/{task_run_id}/{job}/{nth}"
        if own_key not in counters:
            next_key = f"{COUNTER_PREFIX}next/{task_key}/{job}"
            counters[own_key] = int(counters.get(next_key, 0))
            counters[next_key] = int(counters[own_key]) + 1
        return int(counters[own_key])
