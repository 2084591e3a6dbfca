"""Counters in memory, with the same per-shard watermark rule as the DynamoDB store."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from application.ports import COMPLETE, Deadline, MetricSnapshot, MetricStore, WriteReport
from domain.metrics import Granularity, MetricDelta, MetricKey


@dataclass(slots=True)
class _Counter:
    event_count: int = 0
    value_sum: Decimal = Decimal(0)
    value_count: int = 0
    users: set[str] = field(default_factory=set)
    watermarks: dict[str, int] = field(default_factory=dict)


class InMemoryMetricStore(MetricStore):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[MetricKey, _Counter] = {}

    def apply(self, deltas: Sequence[MetricDelta], deadline: Deadline) -> WriteReport:
        unfinished: dict[str, int] = {}
        with self._lock:
            for delta in deltas:
                if deadline.expired():
                    previous = unfinished.get(delta.shard_id, delta.first_sequence)
                    unfinished[delta.shard_id] = min(previous, delta.first_sequence)
                    continue
                counter = self._counters.get(delta.key)
                if counter is None:
                    counter = self._counters[delta.key] = _Counter()
                watermark = counter.watermarks.get(delta.shard_id, -1)
                counter.users.update(delta.user_ids)
                fresh = delta.after(watermark)
                if fresh is None:
                    continue
                counter.event_count += fresh.event_count
                counter.value_sum += fresh.value_sum
                counter.value_count += fresh.value_count
                counter.watermarks[delta.shard_id] = fresh.last_sequence
        if unfinished:
            return WriteReport(unfinished, ("deadline reached while applying metric deltas",))
        return COMPLETE

    def add_unconditionally(self, deltas: Sequence[MetricDelta]) -> None:
        """Add deltas whatever the watermarks say (replays bring their own idempotence)."""
        with self._lock:
            for delta in deltas:
                counter = self._counters.setdefault(delta.key, _Counter())
                counter.users.update(delta.user_ids)
                counter.event_count += delta.event_count
                counter.value_sum += delta.value_sum
                counter.value_count += delta.value_count

    def snapshots(
        self,
        experiment_id: str,
        granularity: Granularity,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[MetricSnapshot]:
        with self._lock:
            return [
                MetricSnapshot(key, c.event_count, c.value_sum, c.value_count, len(c.users))
                for key, c in sorted(self._counters.items())
                if key.experiment_id == experiment_id
                and key.granularity is granularity
                and (start is None or key.window_start >= start)
                and (end is None or key.window_start < end)
            ]

    def experiment_ids(self) -> list[str]:
        with self._lock:
            return sorted({key.experiment_id for key in self._counters})
