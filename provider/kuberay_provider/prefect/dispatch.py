"""Tasks called the natural way from sync and async flows, each step written once.

A Prefect task is either sync or async: an async task called from a sync flow hands back a coroutine
nobody awaits, and a sync task called from an async flow blocks the flow's event loop. ``sync_and_async``
makes one task of each from a single implementation, as Prefect's own ``async_dispatch`` does for its
clients: called from async code (an async flow) the task returns its async twin's coroutine to await;
called from sync code it runs and returns the value. ``.submit`` and ``.map`` use the sync twin, which
Prefect's task runner runs on its own threads, so an async flow's loop stays free either way. The async
twin is also there by itself as ``task.aio``.

An async implementation runs for the sync twin on a private event loop (``core.sync_bridge.run_sync``);
a sync one runs for the async twin on a worker thread that sees the task's context.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable
from typing import Any

from prefect import Task
from prefect._internal.compatibility.async_dispatch import is_in_async_context

from kuberay_provider.core.sync_bridge import run_sync


class SyncAndAsyncTask(Task):  # type: ignore[type-arg]  # one task object for both twins' signatures
    """A sync task that, called from async code, returns its async twin's (``aio``) coroutine instead."""

    aio: Task | None  # type: ignore[type-arg]  # the twin has the implementation's own signature

    def __init__(self, *args: Any, aio: Task | None = None, **kwargs: Any) -> None:  # type: ignore[type-arg]  # as above
        super().__init__(*args, **kwargs)
        self.aio = aio

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.aio is not None and is_in_async_context():
            return self.aio(*args, **kwargs)
        return super().__call__(*args, **kwargs)

    def with_options(self, *args: Any, **kwargs: Any) -> SyncAndAsyncTask:
        changed = super().with_options(*args, **kwargs)
        # Task.with_options builds a plain Task with the new options: make it this kind again, twin included.
        changed.__class__ = SyncAndAsyncTask
        assert isinstance(changed, SyncAndAsyncTask)
        changed.aio = None if self.aio is None else self.aio.with_options(*args, **kwargs)
        return changed


def sync_and_async(**task_options: Any) -> Callable[[Callable[..., Any]], SyncAndAsyncTask]:
    """``@task(**task_options)`` for an implementation (sync or async) that flows of both kinds call."""

    def decorate(implementation: Callable[..., Any]) -> SyncAndAsyncTask:
        if inspect.iscoroutinefunction(implementation):

            def blocking(*args: Any, **kwargs: Any) -> Any:
                return run_sync(implementation(*args, **kwargs))

            runs_sync: Callable[..., Any] = _like(blocking, implementation)
            runs_async = implementation
        else:

            async def awaiting(*args: Any, **kwargs: Any) -> Any:
                return await asyncio.to_thread(implementation, *args, **kwargs)

            runs_sync, runs_async = implementation, _like(awaiting, implementation)
        return SyncAndAsyncTask(fn=runs_sync, aio=Task(fn=runs_async, **task_options), **task_options)

    return decorate


def _like(wrapper: Callable[..., Any], implementation: Callable[..., Any]) -> Callable[..., Any]:
    """``wrapper`` named, documented and signed as ``implementation`` (Prefect reads its parameters from the
    signature), without ``__wrapped__``: Prefect would follow it and take the twin for the other kind."""
    functools.update_wrapper(wrapper, implementation)
    del wrapper.__wrapped__  # type: ignore[attr-defined]  # set by update_wrapper just above
    wrapper.__signature__ = inspect.signature(implementation)  # type: ignore[attr-defined]  # read by inspect
    return wrapper
