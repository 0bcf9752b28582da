"""Synchronous entry points into the async core: a coroutine run to its end on a private event loop.

Waiting, following a log and running a job are written once, as coroutines (``core.async_lifecycle``,
``core.log_follower``, ``core.async_runner``); a synchronous caller (an Airflow worker, a sync Prefect
task) runs them here, as the kr8s library does. A synchronous Kubernetes client's watch is read on a
thread of its own (``ThreadedWatches``), so the sync and async paths share the same wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import queue
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from kuberay_provider.core.kube.api_requests import KubeObject
    from kuberay_provider.core.kube.watch import WatchEvent
    from kuberay_provider.core.resources import RayKind

T = TypeVar("T")


def run_sync(work: Coroutine[Any, Any, T]) -> T:
    """``work``'s result, blocking. On a private loop in this thread; when this thread already runs a loop
    (sync code called from async code), on a thread of its own that sees this thread's context."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _run_on_private_loop(work)
    context = contextvars.copy_context()
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(context.run(_run_on_private_loop, work))
        except BaseException as exc:
            outcome.append(_Raised(exc))

    thread = threading.Thread(target=run, name="kuberay-sync-bridge", daemon=True)
    thread.start()
    thread.join()
    if isinstance(outcome[0], _Raised):
        raise outcome[0].error
    result: T = outcome[0]
    return result


@dataclass(frozen=True)
class _Raised:
    error: BaseException


async def in_daemon_thread(call: Callable[[], T]) -> T:
    """``call()`` on a daemon thread of its own, awaited: unlike ``asyncio.to_thread``'s pool, a call that
    is still blocking when its waiter is cancelled (a killed task) does not hold the process at its exit."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()  # as asyncio.to_thread: the call sees the caller's context

    def run() -> None:
        try:
            result = context.run(call)
        except BaseException as exc:
            _settle(loop, done, exc)
        else:
            _settle(loop, done, result)

    threading.Thread(target=run, name="kuberay-blocking-call", daemon=True).start()
    return await done


def _settle(loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], outcome: Any) -> None:
    """Set ``future`` (an exception when ``outcome`` is one) from another thread, unless nobody waits."""

    def settle() -> None:
        if future.done():  # the waiter gave up (cancelled) meanwhile
            return
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
        loop.call_soon_threadsafe(settle)


def _run_on_private_loop(work: Coroutine[Any, Any, T]) -> T:
    loop = asyncio.new_event_loop()
    task = loop.create_task(work)
    try:
        return loop.run_until_complete(task)
    except BaseException:
        # Interrupted from outside (a signal's exception, e.g. Airflow killing the task): let the work's
        # own cleanup run (``finally`` blocks stop the log stream) before the exception goes on.
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                loop.run_until_complete(task)
        raise
    finally:
        with contextlib.suppress(Exception):
            loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()  # does not wait for executor threads: one stuck on a dead connection must not block us


@dataclass(frozen=True)
class _WatchEnded:
    error: BaseException | None = None


class ThreadedWatches:
    """A synchronous client's watch as an ``ObjectWatcher`` (``core.async_lifecycle``): each event is read
    on a daemon thread of its own when the waiter asks for it, and the watch is closed as soon as the
    waiter stops asking, so a finished wait leaves no connection open. ``client`` gives the client when a
    watch starts (a runner that never waits, e.g. straight to a head, never needs one)."""

    # Any synchronous client with RayObjectsClient's ``watch`` (and ``find``, for ``wait_until_gone``): test
    # doubles of a watch stand in for it.
    def __init__(self, client: Callable[[], Any]) -> None:
        self.client = client

    async def find(self, kind: RayKind, namespace: str, name: str) -> KubeObject | None:
        return await in_daemon_thread(lambda: self.client().find(kind, namespace, name))

    async def watch(
        self,
        kind: RayKind,
        namespace: str,
        *,
        name: str | None = None,
        resource_version: str | None = None,
        timeout_seconds: float | None = None,
    ) -> AsyncIterator[WatchEvent]:
        loop = asyncio.get_running_loop()
        asks: queue.Queue[asyncio.Future[WatchEvent | _WatchEnded] | None] = queue.Queue()

        def read() -> None:
            events: Iterator[WatchEvent] | None = None
            try:
                while (answer := asks.get()) is not None:
                    item: WatchEvent | _WatchEnded
                    try:
                        if events is None:
                            # resourceVersion only when asked: a watch that takes none still serves waits
                            since = {} if resource_version is None else {"resource_version": resource_version}
                            events = iter(
                                self.client().watch(
                                    kind, namespace, name=name, timeout_seconds=timeout_seconds, **since
                                )
                            )
                        item = next(events)
                    except StopIteration:
                        item = _WatchEnded()
                    except BaseException as exc:
                        item = _WatchEnded(exc)
                    _settle(loop, answer, item)
                    if isinstance(item, _WatchEnded):
                        return
            finally:
                close = getattr(events, "close", None)
                if close is not None:
                    close()

        threading.Thread(target=read, name=f"kuberay-watch-{name or namespace}", daemon=True).start()
        try:
            while True:
                answer = loop.create_future()
                asks.put(answer)
                item = await answer
                if isinstance(item, _WatchEnded):
                    if item.error is not None:
                        raise item.error
                    return
                yield item
        finally:
            asks.put(None)


def watching(client: Any) -> ThreadedWatches:
    """A synchronous client as the watcher the async waits take: ``run_sync(wait_tracked(watching(kube), ...))``."""
    return ThreadedWatches(lambda: client)
