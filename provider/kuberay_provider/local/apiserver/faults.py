"""Fault injection for the local API server (off unless asked for): what a real API server and the
network in front of it do to clients at night, at a chosen rate, so reliability can be tested for real.

A plan is written ``rate=0.1,seed=7,kinds=500+503+429+reset+slow+drop-watch+gone`` (``--faults`` of
``kuberay-provider local up``, or ``KUBERAY_LOCAL_FAULTS``). Each request that is not the embedded
controller's own draws once; at ``rate`` it gets one fault of those ``kinds`` that apply to it:

* ``500``, ``503``: a Kubernetes Status with that code;
* ``429``: Too Many Requests with ``Retry-After: 1``;
* ``reset``: the connection is closed without an answer;
* ``slow``: the request is served after ``slow_seconds``;
* ``drop-watch`` (watches only): the stream is cut after a moment, without the server's usual end;
* ``gone`` (watches resuming from a resourceVersion only): 410 Gone, as when the version is compacted.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .auth import Handler, status_response
from .errors import ApiError

CONTROLLER_USER_AGENT = "kuberay-local-controller"
ALL_KINDS = ("500", "503", "429", "reset", "slow", "drop-watch", "gone")
WATCH_ONLY = {"drop-watch", "gone"}


@dataclass
class FaultPlan:
    rate: float = 0.0
    kinds: tuple[str, ...] = ALL_KINDS
    seed: int | None = None
    slow_seconds: float = 2.0
    drop_after_seconds: float = 1.0
    injected: Counter[str] = field(default_factory=Counter)  # kind -> how many were injected

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(ALL_KINDS)
        if unknown or not 0.0 <= self.rate <= 1.0:
            raise ValueError(
                f"fault plan: rate must be in [0, 1] and kinds among {', '.join(ALL_KINDS)} (got {sorted(unknown)})"
            )
        self._random = random.Random(self.seed)

    @classmethod
    def parse(cls, text: str) -> FaultPlan:
        """``rate=0.1,seed=7,kinds=500+429+reset,slow_seconds=2``."""
        fields: dict[str, Any] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            key, _, value = item.partition("=")
            if key == "kinds":
                fields["kinds"] = tuple(filter(None, value.split("+")))
            elif key in ("rate", "slow_seconds", "drop_after_seconds"):
                fields[key] = float(value)
            elif key == "seed":
                fields["seed"] = int(value)
            else:
                raise ValueError(f"fault plan: unknown setting {key!r} in {text!r}")
        return cls(**fields)

    def draw(self, request: web.Request) -> str | None:
        """The fault this request gets, or None."""
        if self.rate <= 0 or request.headers.get("User-Agent", "").startswith(CONTROLLER_USER_AGENT):
            return None
        if self._random.random() >= self.rate:
            return None
        watching = request.query.get("watch") in ("true", "1")
        applicable = [kind for kind in self.kinds if kind not in WATCH_ONLY or watching]
        if "gone" in applicable and not request.query.get("resourceVersion"):
            applicable.remove("gone")
        return self._random.choice(applicable) if applicable else None


def fault_middleware(plan: FaultPlan) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    @web.middleware
    async def inject(request: web.Request, handler: Handler) -> web.StreamResponse:
        kind = plan.draw(request)
        if kind is None:
            return await handler(request)
        plan.injected[kind] += 1
        if kind in ("500", "503"):
            return status_response(
                ApiError(
                    int(kind), "InternalError" if kind == "500" else "ServiceUnavailable", f"injected fault {kind}"
                )
            )
        if kind == "429":
            throttled = status_response(ApiError(429, "TooManyRequests", "injected fault: too many requests"))
            throttled.headers["Retry-After"] = "1"
            return throttled
        if kind == "gone":
            return status_response(ApiError(410, "Expired", "injected fault: too old resource version"))
        if kind == "reset":
            return _abort(request)
        if kind == "slow":
            await asyncio.sleep(plan.slow_seconds)
            return await handler(request)
        # drop-watch: the stream is cut mid-way, the connection closed under the client.
        task = asyncio.ensure_future(handler(request))
        done, _ = await asyncio.wait({task}, timeout=plan.drop_after_seconds)
        if done:  # the watch ended by itself first: nothing left to drop
            return task.result()
        task.cancel()
        return _abort(request)

    return inject


def _abort(request: web.Request) -> web.StreamResponse:
    """Close the connection under the client, with no answer (it sees a reset / an incomplete stream)."""
    if request.transport is not None:
        request.transport.abort()
    raise asyncio.CancelledError("injected fault: connection closed")
