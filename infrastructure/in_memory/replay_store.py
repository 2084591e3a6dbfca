"""Replays applied at most once per event id, onto an in-memory metric store."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from application.ports import ReplayedEvent, ReplayMetricStore, ReplayOutcome
from infrastructure.in_memory.metric_store import InMemoryMetricStore


class InMemoryReplayMetricStore(ReplayMetricStore):
    def __init__(self, counters: InMemoryMetricStore) -> None:
        self._counters = counters
        self._lock = threading.Lock()
        self._replayed: set[str] = set()

    def apply_once(self, events: Sequence[ReplayedEvent]) -> ReplayOutcome:
        applied: set[str] = set()
        already: set[str] = set()
        with self._lock:
            for event in events:
                if event.event_id in self._replayed:
                    already.add(event.event_id)
                    continue
                self._counters.add_unconditionally(event.deltas)
                self._replayed.add(event.event_id)
                applied.add(event.event_id)
        return ReplayOutcome(frozenset(applied), frozenset(already), {})
