"""Following a Ray job's log from synchronous code (an Airflow worker, a script) while it waits.

The Ray Jobs SDK tails logs asynchronously; a follower runs that tail on its own thread and event loop
and hands each chunk to a sink (the task logger), so the caller can keep blocking on the RayJob's watch.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Callable

from kuberay_provider.core.ray_jobs import RayJobsClient

log = logging.getLogger(__name__)


class LogFollower:
    """Streams ``job_id``'s log into ``sink`` until the job ends or ``stop()`` is called."""

    def __init__(self, jobs: RayJobsClient, job_id: str, sink: Callable[[str], None]) -> None:
        self.jobs = jobs
        self.job_id = job_id
        self.sink = sink
        self.received = 0
        self._thread = threading.Thread(target=self._run, name=f"ray-log-{job_id}", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> "LogFollower":
        self._thread.start()
        return self

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._task = self._loop.create_task(self._follow())
            self._loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # noqa: BLE001 - a lost log stream must never fail the task itself
            log.warning("stopped following the log of Ray job %s: %s", self.job_id, exc)
        finally:
            self._loop.close()

    async def _follow(self) -> None:
        async for chunk in self.jobs.tail(self.job_id):
            self.received += len(chunk)
            self.sink(chunk)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the stream to end by itself (the job finished); True if it did."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        loop, task = self._loop, self._task
        if loop is not None and task is not None:
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:  # the loop closed meanwhile: the stream had already ended
                pass
        self._thread.join(timeout)
