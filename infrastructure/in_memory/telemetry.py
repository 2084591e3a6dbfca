"""Telemetry kept in memory: every batch result, for tests and local summaries."""

from __future__ import annotations

import threading

from application.ports import Telemetry
from application.results import BatchResult


class InMemoryTelemetry(Telemetry):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._results: list[BatchResult] = []

    def publish(self, result: BatchResult) -> None:
        with self._lock:
            self._results.append(result)

    def results(self) -> list[BatchResult]:
        with self._lock:
            return list(self._results)
