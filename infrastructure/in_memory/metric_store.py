"""Counters in memory, with the same per-shard watermark rule as the DynamoDB store, and their
unique users counted as the DynamoDB store counts them: first-seen markers
(`InMemoryUniqueUserMarkers`) first, then each counter with the records that hold theirs."""

from __future__ import annotations

import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import localcontext

from application.ports import (
    COMPLETE,
    COUNTERS_SHARE_OF_TIME,
    NO_EARLIER_RECORDS,
    Deadline,
    EarlierRecords,
    MetricSnapshot,
    MetricStore,
    RecordId,
    ReservingDeadline,
    WriteReport,
)
from application.shard_cut import ShardCut
from application.unique_users import UniqueUserMarkers, counted_deltas
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
    joined: dict[str, int] = field(default_factory=dict)


class InMemoryMetricStore(MetricStore):
    def __init__(self, markers: UniqueUserMarkers | None = None) -> None:
        self._lock = threading.Lock()
        self._counters: dict[MetricKey, _Counter] = {}
        self.markers: UniqueUserMarkers = markers or InMemoryUniqueUserMarkers()

    def apply(
        self,
        deltas: Sequence[MetricDelta],
        deadline: Deadline,
        earlier_records: EarlierRecords = NO_EARLIER_RECORDS,
    ) -> WriteReport:
        """As the DynamoDB store applies them, refusals included: the users' first-seen markers
        first (a user whose marker key is too large is refused through the first record that
        needed it, and counts no one), then the counters (one whose numbers or keys DynamoDB
        would refuse is refused for the records responsible, found by halves, the rest
        applied)."""
        claims = self.markers.mark(
            deltas, ReservingDeadline(deadline, COUNTERS_SHARE_OF_TIME), earlier_records
        )
        late: list[RecordId] = []
        refused: dict[RecordId, str] = dict(claims.report.refused)
        with self._lock:
            for delta in counted_deltas(deltas, claims):
                if deadline.expired():
                    late.append((delta.shard_id, delta.first_sequence))
                    continue
                self._apply_delta(delta, refused)
        cut = claims.report.cut.merged(ShardCut.of(late))
        problems = claims.report.problems
        if late:
            problems += ("deadline reached while applying metric deltas",)
        if cut or refused:
            return WriteReport(cut, problems, refused)
        return COMPLETE

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
            if fresh.events_counted:
                problem = delta_sum_problem(fresh.values) or counter_sum_problem(
                    stored_sum, *(value for value in fresh.values if value is not None)
                )
        else:
            fresh = delta
        if problem is not None:
            if fresh.event_count == 1:
                refused[(fresh.shard_id, fresh.first_sequence)] = f"UpdateItem: {problem}"
                users = fresh.users_only() if fresh.events_counted else None
                if users is not None:
                    # The record's marker holds its user, whom no later record can count.
                    self._apply_delta(users, refused)
                return
            middle = fresh.event_count // 2
            self._apply_delta(fresh.part(0, middle), refused)
            self._apply_delta(fresh.part(middle, fresh.event_count), refused)
            return
        if counter is None:
            counter = self._counters[key] = _Counter()
        with localcontext(COUNTER_CONTEXT):
            counter.measures += fresh.measures
        for metric, joined in fresh.joined_users().items():
            counter.joined[metric] = counter.joined.get(metric, 0) + joined
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
        user_sets: bool = False,
    ) -> list[MetricSnapshot]:
        with self._lock:
            counters = [
                (key, counter.measures, dict(counter.joined))
                for key, counter in sorted(self._counters.items())
                if key.experiment_id == experiment_id
                and key.granularity is granularity
                and (start is None or key.window_start >= start)
                and (end is None or key.window_start < end)
            ]
        if not user_sets:
            return [
                MetricSnapshot(key, measures, None, joined) for key, measures, joined in counters
            ]
        users = self.markers.users([key for key, _, _ in counters])
        return [
            MetricSnapshot(key, measures, users[key], joined) for key, measures, joined in counters
        ]

    def experiment_ids(self) -> list[str]:
        with self._lock:
            return sorted({key.experiment_id for key in self._counters})
