"""First-seen markers in memory: per counter window and user, the record that first counted the
user, refusing the marker keys DynamoDB refuses and the markers that would take a user's
experiment-to-date item past DynamoDB's item size."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import replace

from application.ports import (
    NO_EARLIER_RECORDS,
    Deadline,
    EarlierRecords,
    RecordId,
    WriteReport,
)
from application.shard_cut import ShardCut
from application.unique_users import (
    Counter,
    MarkerClaims,
    UniqueUserMarkers,
    recognised_earlier_records,
)
from domain.erasure import UniqueUserMarker
from domain.metrics import Granularity, MetricDelta, MetricKey
from domain.statistics import joined_metrics
from infrastructure.dynamodb_layout import (
    experiment_marker_bytes,
    experiment_marker_item_size_problem,
    key_size_problem,
    marker_key,
    marker_writer,
)


class InMemoryUniqueUserMarkers(UniqueUserMarkers):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._writers: dict[MetricKey, dict[str, RecordId]] = {}
        """Per counter window, each user's marker: the record that wrote it."""
        self._metrics_in_order: dict[tuple[str, str, str], list[str]] = {}
        """Per (experiment, variant, user), the metrics of their experiment-to-date markers in
        the order they were written: DynamoDB's one item per user and variant."""
        self._markers_bytes: dict[tuple[str, str, str], int] = {}
        """Per (experiment, variant, user), what their experiment-to-date markers add to the
        item's size (`experiment_marker_bytes`), summed."""

    def mark(
        self,
        deltas: Sequence[MetricDelta],
        deadline: Deadline,
        earlier_records: EarlierRecords = NO_EARLIER_RECORDS,
    ) -> MarkerClaims:
        """As the DynamoDB markers are written: a user whose marker key is too large, or whose
        experiment-to-date item the marker would take past DynamoDB's item size, is refused
        through the first record of theirs."""
        late: list[RecordId] = []
        refused: dict[RecordId, str] = {}
        first_records: dict[Counter, set[int]] = defaultdict(set)
        joins: dict[Counter, dict[int, tuple[str, ...]]] = defaultdict(dict)
        with self._lock:
            for delta in deltas:
                if deadline.expired():
                    late.append((delta.shard_id, delta.first_sequence))
                    continue
                writers = self._writers.setdefault(delta.key, {})
                recognised = recognised_earlier_records(delta, earlier_records)
                for user_id, sequence in delta.first_sequence_of_users().items():
                    record = (delta.shard_id, sequence)
                    item_key = marker_key(delta.key, user_id)
                    problem = key_size_problem(*item_key)
                    grown = None
                    if (
                        problem is None
                        and user_id not in writers
                        and delta.key.granularity is Granularity.EXPERIMENT
                    ):
                        grown = self._grown_item(delta.key, user_id, record)
                        problem = experiment_marker_item_size_problem(*item_key, *grown)
                    if problem is not None:
                        refused[record] = f"UpdateItem (unique-user marker): {problem}"
                        continue
                    holder = writers.setdefault(user_id, record)
                    counting = (
                        sequence if holder == record else recognised.get(user_id, {}).get(holder)
                    )
                    if counting is not None:
                        counter = (delta.key, delta.shard_id)
                        first_records[counter].add(counting)
                        if delta.key.granularity is Granularity.EXPERIMENT:
                            if grown is not None:
                                item = (delta.key.experiment_id, delta.key.variant_id, user_id)
                                self._markers_bytes[item] = grown[1]
                            joined = self._joined(delta.key, user_id)
                            if joined:
                                joins[counter][counting] = joined
        claims = {counter: frozenset(sequences) for counter, sequences in first_records.items()}
        if late:
            report = WriteReport(
                ShardCut.of(late),
                ("deadline reached before writing every unique-user marker",),
                refused,
            )
        else:
            report = WriteReport(refused=refused)
        return MarkerClaims(claims, report, {counter: dict(j) for counter, j in joins.items()})

    def _grown_item(self, key: MetricKey, user_id: str, record: RecordId) -> tuple[int, int]:
        """The markers a user's experiment-to-date item would hold with `key`'s, and their
        bytes (hour and day items hold one marker and never grow)."""
        item = (key.experiment_id, key.variant_id, user_id)
        place = len(self._metrics_in_order.get(item, ())) + 1
        added = experiment_marker_bytes(key.metric, marker_writer(record), place)
        return place, self._markers_bytes.get(item, 0) + added

    def _joined(self, key: MetricKey, user_id: str) -> tuple[str, ...]:
        """The metrics the user's marker of `key` joins, from the user's markers written
        before it (see `domain.statistics.joined_metrics`)."""
        in_order = self._metrics_in_order.setdefault(
            (key.experiment_id, key.variant_id, user_id), []
        )
        if key.metric not in in_order:
            in_order.append(key.metric)
        return joined_metrics(key.metric, in_order[: in_order.index(key.metric)])

    def users(self, keys: Collection[MetricKey]) -> dict[MetricKey, frozenset[str]]:
        with self._lock:
            return {key: frozenset(self._writers.get(key, ())) for key in keys}

    # -- erasure -------------------------------------------------------------------------------

    def has_marker(self, marker: UniqueUserMarker) -> bool:
        """Whether the marker item exists (its key one DynamoDB could hold)."""
        if key_size_problem(*marker_key(marker.counter, marker.user_id)) is not None:
            return False
        with self._lock:
            return marker.user_id in self._writers.get(marker.counter, {})

    def delete_markers(self, markers: Collection[UniqueUserMarker]) -> None:
        """Delete the marker items (the stored unique-user counts keep the user: a count is an
        aggregate, like the event counts)."""
        with self._lock:
            for marker in markers:
                if marker.granularity is Granularity.EXPERIMENT:
                    # One item holds the user's markers of every metric of the variant.
                    item = (marker.experiment_id, marker.variant_id, marker.user_id)
                    self._markers_bytes.pop(item, None)
                    for metric in self._metrics_in_order.pop(item, []):
                        counter = replace(marker, metric=metric).counter
                        self._writers.get(counter, {}).pop(marker.user_id, None)
                self._writers.get(marker.counter, {}).pop(marker.user_id, None)
