"""Telemetry kept in memory: the most recent batch results, for tests and local summaries."""

from __future__ import annotations

import threading
from collections import deque

from application.ports import Telemetry
from application.results import BatchResult


class InMemoryTelemetry(Telemetry):
    """Keeps the last `capacity` results published (the earliest are forgotten first), so that a
    process that runs for long holds a bounded number of them."""

    def __init__(self, capacity: int = 1_000) -> None:
        self._lock = threading.Lock()
        self._results: deque[BatchResult] = deque(maxlen=capacity)

    def publish(self, result: BatchResult) -> None:
        with self._lock:
            self._results.append(result)

    def results(self) -> list[BatchResult]:
        with self._lock:
            return list(self._results)
