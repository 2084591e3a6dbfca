"""A monotonic clock that tests move by hand, so a Lambda context's time can run out at will, and
a back end whose throughput is charged to it."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

from botocore.client import BaseClient

from application.ports import Clock


class SteppingClock:
    """Real monotonic time plus a jump offset: `jump` makes every deadline come sooner."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offset = 0.0

    def __call__(self) -> float:
        with self._lock:
            return time.monotonic() + self._offset

    def jump(self, seconds: float) -> None:
        with self._lock:
            self._offset += seconds

    def as_clock(self) -> Clock:
        """The service's clock on this time line, so that what it measures (a segment's pace)
        agrees with the deadline the invocation's context reports."""
        return _SteppingServiceClock(self)


class _SteppingServiceClock(Clock):
    def __init__(self, stepping: SteppingClock) -> None:
        self._stepping = stepping

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return self._stepping()


class RequestThroughput:
    """A back end that serves `requests_per_second` in all: every attempt of an attached client
    moves the clock on by its share of a second, on top of the real time the call takes (so the
    invocation's deadline comes as it would against a slower service)."""

    def __init__(self, clock: SteppingClock, requests_per_second: float) -> None:
        if requests_per_second <= 0:
            raise ValueError("requests_per_second must be positive")
        self._clock = clock
        self._cost = 1.0 / requests_per_second

    def attach(self, client: BaseClient) -> None:
        service = client.meta.service_model.service_name
        client.meta.events.register(f"before-send.{service}", self._charge)

    def _charge(self, **_: Any) -> None:
        self._clock.jump(self._cost)
