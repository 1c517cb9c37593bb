"""Waiting in tests for a condition, never for a length of time; a clock that tests move on."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable

# Only a guard against a hang: a condition that holds returns as soon as it is seen.
DEADLINE = 60.0


def eventually(condition: Callable[[], bool], what: str, *, deadline: float = DEADLINE,
               pause: float = 0.01) -> None:
    """Return once ``condition()`` holds; fail the test naming ``what`` if it never does."""
    give_up = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > give_up:
            raise AssertionError(f"{what}: not seen within {deadline:.0f} s")
        threading.Event().wait(pause)


class SteppedClock:
    """The time as the test sets it: starts at the wall clock, moves only by :meth:`advance`."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self._now = start or dt.datetime.now(dt.UTC)
        self._lock = threading.Lock()

    def __call__(self) -> dt.datetime:
        with self._lock:
            return self._now

    def advance(self, by: dt.timedelta) -> dt.datetime:
        with self._lock:
            self._now += by
            return self._now
