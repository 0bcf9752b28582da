"""A time limit shared by the several waits of one step (admission, start, end), each given what is left."""

from __future__ import annotations

import time


def shorter(first: float | None, second: float | None) -> float | None:
    """The smaller of two optional limits (None: no limit)."""
    limits = [limit for limit in (first, second) if limit is not None]
    return min(limits) if limits else None


class Deadline:
    """``timeout`` seconds from now (None: never); ``remaining`` is what a next wait may take."""

    def __init__(self, timeout: float | None) -> None:
        self._end = None if timeout is None else time.monotonic() + timeout

    def remaining(self) -> float | None:
        return None if self._end is None else max(0.0, self._end - time.monotonic())
