"""Counters in memory, with the same per-shard watermark rule as the DynamoDB store; their unique
users are the markers' (`InMemoryUniqueUserMarkers`), marked beside each counter."""

from __future__ import annotations

import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import localcontext

from application.ports import (
    COMPLETE,
    Deadline,
    MetricSnapshot,
    MetricStore,
    NoDeadline,
    RecordId,
    WriteReport,
)
from application.shard_cut import ShardCut
from domain.limits import COUNTER_CONTEXT, counter_sum_problem, delta_sum_problem
from domain.metrics import NO_MEASURES, Granularity, Measures, MetricDelta, MetricKey
from infrastructure.dynamodb_layout import (
    counter_partition_key,
    counter_sort_key,
    counter_write_shard,
    key_size_problem,
)
from infrastructure.in_memory.unique_user_markers import InMemoryUniqueUserMarkers


@dataclass(slots=True)
class _Counter:
    measures: Measures = NO_MEASURES
    watermarks: dict[str, int] = field(default_factory=dict)


class InMemoryMetricStore(MetricStore):
    def __init__(self, markers: InMemoryUniqueUserMarkers | None = None) -> None:
        self._lock = threading.Lock()
        self._counters: dict[MetricKey, _Counter] = {}
        self.markers = markers or InMemoryUniqueUserMarkers()

    def apply(self, deltas: Sequence[MetricDelta], deadline: Deadline) -> WriteReport:
        """As the DynamoDB store applies them, refusals included: a counter whose numbers or
        keys DynamoDB would refuse is refused for the records responsible (found by halves, the
        rest applied), and a user whose unique-user marker key is too large is refused through
        the first record that needed it."""
        late: list[RecordId] = []
        refused: dict[RecordId, str] = {}
        with self._lock:
            for delta in deltas:
                if deadline.expired():
                    late.append((delta.shard_id, delta.first_sequence))
                    continue
                self._apply_delta(delta, refused)
                # Every user of the delta, as DynamoDB's markers are written apart from the
                # counter (a record the counter refused still marks its user).
                refused.update(self.markers.mark([delta], NoDeadline()).refused)
        if late:
            return WriteReport(
                ShardCut.of(late), ("deadline reached while applying metric deltas",), refused
            )
        return WriteReport(refused=refused) if refused else COMPLETE

    def _apply_delta(self, delta: MetricDelta, refused: dict[RecordId, str]) -> None:
        key = delta.key
        counter = self._counters.get(key)
        problem = key_size_problem(
            counter_partition_key(key.experiment_id, counter_write_shard(delta.shard_id)),
            counter_sort_key(key),
        )
        if problem is None:
            watermark = -1 if counter is None else counter.watermarks.get(delta.shard_id, -1)
            fresh = delta.after(watermark)
            if fresh is None:
                return
            stored_sum = NO_MEASURES.value_sum if counter is None else counter.measures.value_sum
            problem = delta_sum_problem(fresh.values) or counter_sum_problem(
                stored_sum, *(value for value in fresh.values if value is not None)
            )
        else:
            fresh = delta
        if problem is not None:
            if fresh.event_count == 1:
                refused[(fresh.shard_id, fresh.first_sequence)] = f"UpdateItem: {problem}"
                return
            middle = fresh.event_count // 2
            self._apply_delta(fresh.part(0, middle), refused)
            self._apply_delta(fresh.part(middle, fresh.event_count), refused)
            return
        if counter is None:
            counter = self._counters[key] = _Counter()
        with localcontext(COUNTER_CONTEXT):
            counter.measures += fresh.measures
        counter.watermarks[delta.shard_id] = fresh.last_sequence

    def watermarks(self, keys: Collection[MetricKey], shard_id: str) -> dict[MetricKey, int]:
        with self._lock:
            found = {}
            for key in keys:
                counter = self._counters.get(key)
                if counter is not None and shard_id in counter.watermarks:
                    found[key] = counter.watermarks[shard_id]
            return found

    def snapshots(
        self,
        experiment_id: str,
        granularity: Granularity,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[MetricSnapshot]:
        with self._lock:
            counters = [
                (key, counter.measures)
                for key, counter in sorted(self._counters.items())
                if key.experiment_id == experiment_id
                and key.granularity is granularity
                and (start is None or key.window_start >= start)
                and (end is None or key.window_start < end)
            ]
        users = self.markers.users([key for key, _ in counters])
        return [MetricSnapshot(key, measures, users[key]) for key, measures in counters]

    def experiment_ids(self) -> list[str]:
        with self._lock:
            return sorted({key.experiment_id for key in self._counters})
