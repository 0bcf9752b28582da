"""Following a Ray job's log from synchronous code (an Airflow worker, a script) while it waits.

The Ray Jobs SDK tails logs asynchronously; a follower runs that tail on its own thread and event loop
and hands each chunk to a sink (the task logger), so the caller can keep blocking on the RayJob's watch.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol

from kuberay_provider.core.ray_jobs import RayJobsClient

log = logging.getLogger(__name__)


class LineBuffer:
    """Turns a stream of chunks into whole lines and keeps the last ``keep`` of them (the log tail a
    failed task reports, available even after the cluster, and with it the log, is gone)."""

    def __init__(self, keep: int = 200) -> None:
        self._partial = ""
        self.last_lines: deque[str] = deque(maxlen=max(keep, 1))

    def feed(self, chunk: str) -> list[str]:
        *lines, self._partial = (self._partial + chunk).split("\n")
        self.last_lines.extend(lines)
        return lines

    def flush(self) -> list[str]:
        rest, self._partial = self._partial, ""
        if rest:
            self.last_lines.append(rest)
            return [rest]
        return []

    def tail(self, lines: int) -> str:
        return "\n".join(list(self.last_lines)[-lines:]) if lines > 0 else ""


def tail_lines(text: str, lines: int) -> str:
    """The last ``lines`` lines of ``text`` ("" for none)."""
    return "\n".join(text.rstrip("\n").splitlines()[-lines:]) if lines > 0 else ""


class ReceivedLog(Protocol):
    """What a finished task reports of a log stream: how much arrived, and its last lines."""

    @property
    def received(self) -> int: ...

    def tail(self, lines: int = 50) -> str: ...


@dataclass(frozen=True)
class StreamedLog:
    """What a log stream that ran elsewhere (a deferred task's trigger) delivered: how much, and its
    last lines. It stands in for the follower in ``RayJobRunner.conclude``."""

    received: int
    last_lines: str

    def tail(self, lines: int = 50) -> str:
        return tail_lines(self.last_lines, lines)

    def to_payload(self) -> dict[str, Any]:
        return {"received": self.received, "last_lines": self.last_lines}

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any] | None) -> "StreamedLog | None":
        if not payload:
            return None
        return cls(int(payload.get("received") or 0), str(payload.get("last_lines") or ""))


class LogFollower:
    """Streams ``job_id``'s log into ``sink`` until the job ends or ``stop()`` is called.

    ``line_sink``, when given, receives the log line by line instead (a task logger wants whole lines);
    either way the last ``keep_lines`` lines stay available as ``tail()``.
    """

    def __init__(
        self,
        jobs: RayJobsClient,
        job_id: str,
        sink: Callable[[str], None] | None = None,
        *,
        line_sink: Callable[[str], None] | None = None,
        keep_lines: int = 200,
    ) -> None:
        self.jobs = jobs
        self.job_id = job_id
        self.sink = sink
        self.line_sink = line_sink
        self.lines = LineBuffer(keep_lines)
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
            self._deliver(chunk, self.lines.feed(chunk))
        self._deliver("", self.lines.flush())

    def _deliver(self, chunk: str, lines: list[str]) -> None:
        if self.sink is not None and chunk:
            self.sink(chunk)
        if self.line_sink is not None:
            for line in lines:
                self.line_sink(line)

    def tail(self, lines: int = 50) -> str:
        return self.lines.tail(lines)

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
