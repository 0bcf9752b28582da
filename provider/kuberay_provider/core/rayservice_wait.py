"""Waiting until a RayService serves its latest spec, by watch: the one implementation, for sync and asyncio
callers. Which status writes can be trusted, and why a quiet one must settle first: ``core.rayservice_state``.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from kuberay_provider.core.errors import KubeRayProviderError, WaitTimeout
from kuberay_provider.core.kube.watch import WatchEvent
from kuberay_provider.core.rayservice_state import INITIALIZING_TIMEOUT, VALIDATION_FAILED, RayServiceState
from kuberay_provider.core.resources import RAYSERVICE, RayKind
from kuberay_provider.core.sync_bridge import run_sync, watching

SETTLE_SECONDS = 5.0  # > KubeRay's 2 s requeue: a pass re-reads the applications within it


class RayServiceTimeout(WaitTimeout[RayServiceState]):
    """The RayService was not ready (or not gone) in time; ``state`` is the last seen."""


class RayServiceGone(KubeRayProviderError):
    """The RayService was deleted while it was being waited on."""


class RayServiceFailed(KubeRayProviderError):
    """KubeRay reports the RayService cannot serve its latest spec (the message says what to do)."""

    def __init__(self, message: str, state: RayServiceState) -> None:
        super().__init__(message)
        self.state = state


def _write_id(obj: Mapping[str, Any]) -> str:
    """One status write: the resourceVersion (the content when there is none)."""
    version = (obj.get("metadata") or {}).get("resourceVersion")
    return str(version) if version else json.dumps(obj.get("status") or {}, sort_keys=True, default=str)


@dataclass
class _Sighting:
    generation: int
    write: str
    at: float


class ServiceTracker:
    """One RayService's events in, its state once the latest spec is served out (None while waiting); a
    failure KubeRay reports raises RayServiceFailed. ``settle_seconds``: how long a state nobody rewrote
    is trusted to be final (see ``core.rayservice_state``). Driven by ``wait_service`` / ``await_service``,
    which also call ``recheck`` when a round of watching ends quietly."""

    def __init__(
        self,
        namespace: str,
        name: str,
        timeout: float | None = None,
        on_change: Callable[[RayServiceState], None] | None = None,
        *,
        settle_seconds: float = SETTLE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.namespace, self.name, self.timeout, self.on_change = namespace, name, timeout, on_change
        self.settle_seconds, self._clock = settle_seconds, clock
        self._deadline = None if timeout is None else clock() + timeout
        self.last: RayServiceState | None = None
        self._write = ""
        self._first_seen: _Sighting | None = None  # the first write seen of the current generation
        self._first_applied: _Sighting | None = None  # the first one showing it applied (observedGeneration)
        self._round_end: float | None = None

    def observe(self, event: WatchEvent) -> RayServiceState | None:
        if event.type == "DELETED":
            raise RayServiceGone(
                f"RayService {self.namespace}/{self.name} was deleted while waiting for it to be ready"
            )
        state, write, now = RayServiceState.from_object(event.object), _write_id(event.object), self._clock()
        if self._first_seen is None or self._first_seen.generation != state.generation:
            self._first_seen, self._first_applied = _Sighting(state.generation, write, now), None
        if state.caught_up and self._first_applied is None:
            self._first_applied = _Sighting(state.generation, write, now)
        if state != self.last and self.on_change:
            self.on_change(state)
        self.last, self._write = state, write
        return self._judge(now)

    def memory(self) -> dict[str, Any]:
        """What later judgements need of the writes seen so far, as JSON, for a poller that cannot keep this
        tracker between polls (``recall`` takes it up). Its times are this tracker's clock: memory that
        outlives the process needs a wall clock (``clock=time.time``)."""
        return {
            key: None if sighting is None else asdict(sighting)
            for key, sighting in (("first_seen", self._first_seen), ("first_applied", self._first_applied))
        }

    def recall(self, memory: Mapping[str, Any]) -> None:
        """Take up the ``memory()`` of an earlier tracker of the same object, before observing; what is
        not understood is dropped (forgetting only delays trust, it never grants it)."""

        def sighting(value: Any) -> _Sighting | None:
            try:
                return _Sighting(int(value["generation"]), str(value["write"]), float(value["at"]))
            except (KeyError, TypeError, ValueError):
                return None

        self._first_seen, self._first_applied = (
            sighting(memory.get("first_seen")),
            sighting(memory.get("first_applied")),
        )
        if self._first_seen is None or (
            self._first_applied and self._first_applied.generation != self._first_seen.generation
        ):
            self._first_seen = self._first_applied = None

    def recheck(self) -> RayServiceState | None:
        """A round of watching ended without an event: judge the last state again; time up raises."""
        now = self._clock()
        if self.last is not None and (done := self._judge(now)) is not None:
            return done
        if self._deadline is not None and now >= self._deadline:
            raise self.timed_out()
        return None

    def timed_out(self) -> RayServiceTimeout:
        return RayServiceTimeout(
            f"RayService {self.namespace}/{self.name} was not ready within {self.timeout} s",
            self.last,
            subject=f"RayService {self.namespace}/{self.name}",
            timeout=self.timeout,
        )

    def _settled(self, sighting: _Sighting | None, now: float) -> bool:
        """Written again since ``sighting``, or left as it was for settle_seconds."""
        return sighting is not None and (self._write != sighting.write or now - sighting.at >= self.settle_seconds)

    def _judge(self, now: float) -> RayServiceState | None:
        state = self.last
        assert state is not None
        failure = state.failure()
        if failure and state.ready_reason == INITIALIZING_TIMEOUT:
            raise RayServiceFailed(failure, state)  # terminal, whatever the generation
        if (
            failure
            and state.ready_reason == VALIDATION_FAILED
            and not state.caught_up
            and self._settled(self._first_seen, now)
        ):
            raise RayServiceFailed(failure, state)
        if not state.caught_up or not self._settled(self._first_applied, now):
            return None
        if failure and state.failed_applications:
            raise RayServiceFailed(failure, state)
        return state if state.is_ready else None

    def _wake_at(self) -> float | None:
        """When the last state should be judged again even if nothing is written."""
        times = [] if self._deadline is None else [self._deadline]
        state = self.last
        if state is not None:
            sighting = self._first_applied if state.caught_up else self._first_seen
            if (
                sighting is not None
                and sighting.write == self._write
                and sighting.at + self.settle_seconds > self._clock()
            ):
                times.append(sighting.at + self.settle_seconds)
        return min(times) if times else None

    def next_round(self) -> float | None:
        """Seconds to watch in the next round (None: until an event)."""
        self._round_end = self._wake_at()
        return None if self._round_end is None else max(0.0, self._round_end - self._clock())

    def cut_round(self) -> bool:
        """Whether the last event asks for a recheck before the current round would end."""
        wake = self._wake_at()
        return wake is not None and (self._round_end is None or wake < self._round_end)


class SyncWatcher(Protocol):
    def watch(
        self, kind: RayKind, namespace: str, *, name: str | None = None, timeout_seconds: float | None = None
    ) -> Iterator[WatchEvent]: ...


class AsyncWatcher(Protocol):
    def watch(
        self, kind: RayKind, namespace: str, *, name: str | None = None, timeout_seconds: float | None = None
    ) -> AsyncIterator[WatchEvent]: ...


def wait_service(kube: SyncWatcher, tracker: ServiceTracker) -> RayServiceState:
    """``await_service`` for synchronous callers, over a synchronous client's watch (``core.sync_bridge``)."""
    return run_sync(await_service(watching(kube), tracker))


async def await_service(kube: AsyncWatcher, tracker: ServiceTracker) -> RayServiceState:
    """Watch the RayService until ``tracker`` has its state, in rounds ending when a quiet state is due
    to be judged again (a new round lists the object anew: nothing is missed). Over a shared or own
    watch (deferrable triggers), or a synchronous client's (``wait_service``)."""
    while True:
        seconds = tracker.next_round()
        if seconds != 0.0:
            events = kube.watch(RAYSERVICE, tracker.namespace, name=tracker.name, timeout_seconds=seconds)
            async with contextlib.aclosing(events):  # type: ignore[type-var]  # async generators: they have aclose()
                async for event in events:
                    if (done := tracker.observe(event)) is not None:
                        return done
                    if tracker.cut_round():
                        break
        if (done := tracker.recheck()) is not None:
            return done
