"""Clocks: the system's, and one a test or a replay can set."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from application.ports import Clock


class SystemClock(Clock):
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.perf_counter()


class ManualClock(Clock):
    def __init__(self, start: datetime) -> None:
        self._now = start
        self._monotonic = 0.0

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, delta: timedelta) -> None:
        self._now += delta
        self._monotonic += delta.total_seconds()
