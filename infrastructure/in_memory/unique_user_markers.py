"""Unique-user markers in memory: the hours' users of each (experiment, variant, metric, day),
refusing the marker keys DynamoDB refuses."""

from __future__ import annotations

import threading
from collections.abc import Collection, Sequence
from datetime import datetime

from application.ports import COMPLETE, Deadline, RecordId, UniqueUserMarkers, WriteReport
from application.shard_cut import ShardCut
from domain.erasure import UniqueUserMarker
from domain.metrics import Granularity, MetricDelta, MetricKey
from infrastructure.dynamodb_layout import key_size_problem, marker_partition_key, marker_sort_key

_Partition = tuple[str, str, str, datetime]
"""(experiment_id, variant_id, metric, day): what one DynamoDB marker partition holds."""


class InMemoryUniqueUserMarkers(UniqueUserMarkers):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hours: dict[_Partition, dict[datetime, set[str]]] = {}

    def mark(self, deltas: Sequence[MetricDelta], deadline: Deadline) -> WriteReport:
        """As the DynamoDB markers are written: a user whose marker key is too large is refused
        through the first record of theirs."""
        late: list[RecordId] = []
        refused: dict[RecordId, str] = {}
        with self._lock:
            for delta in deltas:
                if delta.key.granularity is not Granularity.HOUR:
                    continue  # a day's users are its hours' markers
                if deadline.expired():
                    late.append((delta.shard_id, delta.first_sequence))
                    continue
                self._mark(delta, refused)
        if late:
            return WriteReport(
                ShardCut.of(late),
                ("deadline reached before writing every unique-user marker",),
                refused,
            )
        return WriteReport(refused=refused) if refused else COMPLETE

    def _mark(self, delta: MetricDelta, refused: dict[RecordId, str]) -> None:
        key = delta.key
        partition = marker_partition_key(
            key.experiment_id, key.variant_id, key.metric, key.window_start
        )
        hours = self._hours.setdefault(_partition_of(key), {})
        for user_id, sequence in delta.first_sequence_of_users().items():
            problem = key_size_problem(partition, marker_sort_key(key.window_start, user_id))
            if problem is None:
                hours.setdefault(key.window_start, set()).add(user_id)
            else:
                refused[(delta.shard_id, sequence)] = (
                    f"BatchWriteItem (unique-user marker): {problem}"
                )

    def users(self, keys: Collection[MetricKey]) -> dict[MetricKey, frozenset[str]]:
        with self._lock:
            users: dict[MetricKey, frozenset[str]] = {}
            for key in keys:
                hours = self._hours.get(_partition_of(key), {})
                if key.granularity is Granularity.HOUR:
                    users[key] = frozenset(hours.get(key.window_start, ()))
                else:
                    users[key] = frozenset().union(*hours.values())
            return users

    # -- erasure -------------------------------------------------------------------------------

    def has_marker(self, marker: UniqueUserMarker) -> bool:
        """Whether the marker item exists (its key one DynamoDB could hold)."""
        if _marker_key_problem(marker) is not None:
            return False
        with self._lock:
            hours = self._hours.get(_partition_of_marker(marker), {})
            return marker.user_id in hours.get(marker.hour, ())

    def delete_markers(self, markers: Collection[UniqueUserMarker]) -> None:
        """Delete the marker items: the user leaves the hour's users, and the day's once no hour
        of that day marks them."""
        with self._lock:
            for marker in markers:
                users = self._hours.get(_partition_of_marker(marker), {}).get(marker.hour)
                if users is not None:
                    users.discard(marker.user_id)


def _partition_of(key: MetricKey) -> _Partition:
    day = Granularity.DAY.window_start(key.window_start)
    return (key.experiment_id, key.variant_id, key.metric, day)


def _partition_of_marker(marker: UniqueUserMarker) -> _Partition:
    day = Granularity.DAY.window_start(marker.hour)
    return (marker.experiment_id, marker.variant_id, marker.metric, day)


def _marker_key_problem(marker: UniqueUserMarker) -> str | None:
    return key_size_problem(
        marker_partition_key(marker.experiment_id, marker.variant_id, marker.metric, marker.hour),
        marker_sort_key(marker.hour, marker.user_id),
    )
