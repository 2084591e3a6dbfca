"""Counters in memory, with the same per-shard watermark rule as the DynamoDB store."""

from __future__ import annotations

import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from application.ports import (
    COMPLETE,
    Deadline,
    MetricSnapshot,
    MetricStore,
    RecordId,
    WriteReport,
)
from application.shard_cut import ShardCut
from domain.erasure import UniqueUserMarker
from domain.limits import counter_sum_problem, delta_sum_problem
from domain.metrics import NO_MEASURES, Granularity, Measures, MetricDelta, MetricKey
from infrastructure.dynamodb_layout import (
    counter_partition_key,
    counter_sort_key,
    key_size_problem,
    marker_partition_key,
    marker_sort_key,
)


@dataclass(slots=True)
class _Counter:
    measures: Measures = NO_MEASURES
    users: set[str] = field(default_factory=set)
    watermarks: dict[str, int] = field(default_factory=dict)


class InMemoryMetricStore(MetricStore):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[MetricKey, _Counter] = {}

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
                counter = self._counters.get(delta.key)
                if counter is not None:
                    # Every user of the delta, as DynamoDB's markers are written apart from the
                    # counter (a record the counter refused still marks its user).
                    counter.users.update(self._markable_users(delta, refused))
        if late:
            return WriteReport(
                ShardCut.of(late), ("deadline reached while applying metric deltas",), refused
            )
        return WriteReport(refused=refused) if refused else COMPLETE

    def _apply_delta(self, delta: MetricDelta, refused: dict[RecordId, str]) -> None:
        key = delta.key
        counter = self._counters.get(key)
        problem = key_size_problem(counter_partition_key(key.experiment_id), counter_sort_key(key))
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
        counter.measures += fresh.measures
        counter.watermarks[delta.shard_id] = fresh.last_sequence

    @staticmethod
    def _markable_users(delta: MetricDelta, refused: dict[RecordId, str]) -> set[str]:
        """The delta's users whose marker keys DynamoDB takes; the others are refused through
        the first record of theirs (as the DynamoDB store's marker writes are)."""
        key = delta.key
        partition = marker_partition_key(
            key.experiment_id, key.variant_id, key.metric, key.window_start
        )
        users = set()
        for user_id, sequence in delta.first_sequence_of_users().items():
            problem = key_size_problem(partition, marker_sort_key(key.window_start, user_id))
            if problem is None:
                users.add(user_id)
            elif key.granularity is Granularity.HOUR:
                refused[(delta.shard_id, sequence)] = (
                    f"BatchWriteItem (unique-user marker): {problem}"
                )
        return users

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
            return [
                MetricSnapshot(key, c.measures, frozenset(c.users))
                for key, c in sorted(self._counters.items())
                if key.experiment_id == experiment_id
                and key.granularity is granularity
                and (start is None or key.window_start >= start)
                and (end is None or key.window_start < end)
            ]

    def experiment_ids(self) -> list[str]:
        with self._lock:
            return sorted({key.experiment_id for key in self._counters})

    # -- unique-user markers, for erasure ------------------------------------------------------

    def has_marker(self, marker: UniqueUserMarker) -> bool:
        """Whether the marker item exists: the user is among the users of its hourly counter
        (and its key is one DynamoDB could hold)."""
        if _marker_key_problem(marker) is not None:
            return False
        with self._lock:
            counter = self._counters.get(_hourly_key(marker))
            return counter is not None and marker.user_id in counter.users

    def delete_markers(self, markers: Collection[UniqueUserMarker]) -> None:
        """Delete the marker items: the user leaves the hourly counter's users, and the daily
        counter's once no hour of that day marks them (a day's users are its hours' markers)."""
        with self._lock:
            for marker in markers:
                hourly = self._counters.get(_hourly_key(marker))
                if hourly is not None:
                    hourly.users.discard(marker.user_id)
                day = Granularity.DAY.window_start(marker.hour)
                daily = self._counters.get(
                    MetricKey(
                        marker.experiment_id, marker.variant_id, marker.metric, Granularity.DAY, day
                    )
                )
                if daily is None or marker.user_id not in daily.users:
                    continue
                still_marked = any(
                    key.granularity is Granularity.HOUR
                    and (key.experiment_id, key.variant_id, key.metric)
                    == (marker.experiment_id, marker.variant_id, marker.metric)
                    and Granularity.DAY.window_start(key.window_start) == day
                    and marker.user_id in counter.users
                    for key, counter in self._counters.items()
                )
                if not still_marked:
                    daily.users.discard(marker.user_id)


def _hourly_key(marker: UniqueUserMarker) -> MetricKey:
    return MetricKey(
        marker.experiment_id, marker.variant_id, marker.metric, Granularity.HOUR, marker.hour
    )


def _marker_key_problem(marker: UniqueUserMarker) -> str | None:
    return key_size_problem(
        marker_partition_key(marker.experiment_id, marker.variant_id, marker.metric, marker.hour),
        marker_sort_key(marker.hour, marker.user_id),
    )
