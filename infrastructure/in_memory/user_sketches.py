"""Unique users' sketches in memory, item for item as DynamoDB keeps them (one per counter and
counter write shard), refusing the keys and item sizes DynamoDB refuses."""

from __future__ import annotations

import threading
from collections.abc import Collection, Sequence

from application.ports import COMPLETE, Deadline, RecordId, WriteReport
from application.shard_cut import ShardCut
from application.unique_users import UniqueEstimate, UserSketches
from domain.metrics import MetricDelta, MetricKey
from infrastructure.dynamodb_layout import (
    COUNTER_WRITE_SHARDS,
    counter_sort_key,
    counter_write_shard,
    key_size_problem,
    sketch_item_size_problem,
    sketch_partition_key,
)
from infrastructure.user_sketch import UserSketch, union_of

_ItemKey = tuple[str, str]
"""(partition_key, sort_key) of one sketch item."""


class InMemoryUserSketches(UserSketches):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[_ItemKey, tuple[UserSketch, int]] = {}

    def add(self, deltas: Sequence[MetricDelta], deadline: Deadline) -> WriteReport:
        late: list[RecordId] = []
        refused: dict[RecordId, str] = {}
        with self._lock:
            for delta in deltas:
                if deadline.expired():
                    late.append((delta.shard_id, delta.first_sequence))
                    continue
                problem = self._add(delta)
                if problem is not None:
                    refused.update(
                        dict.fromkeys(
                            ((delta.shard_id, sequence) for sequence in delta.sequences),
                            f"UpdateItem (user sketch): {problem}",
                        )
                    )
        if late:
            return WriteReport(
                ShardCut.of(late), ("deadline reached before writing every user sketch",), refused
            )
        return WriteReport(refused=refused) if refused else COMPLETE

    def _add(self, delta: MetricDelta) -> str | None:
        """Union the delta's users into its item; DynamoDB's words if it would refuse it."""
        partition = sketch_partition_key(
            delta.key.experiment_id, counter_write_shard(delta.shard_id)
        )
        sort = counter_sort_key(delta.key)
        problem = key_size_problem(partition, sort)
        if problem is not None:
            return problem
        stored, version = self._items.get((partition, sort), (UserSketch.empty(), 0))
        merged = stored.union(UserSketch.of(delta.user_ids))
        if merged == stored:
            return None
        problem = sketch_item_size_problem(partition, sort, merged.to_bytes(), version + 1)
        if problem is None:
            self._items[(partition, sort)] = (merged, version + 1)
        return problem

    def estimates(self, keys: Collection[MetricKey]) -> dict[MetricKey, UniqueEstimate]:
        return {key: self._sketch_of(key).unique_estimate() for key in keys}

    def union_estimate(self, keys: Collection[MetricKey]) -> UniqueEstimate:
        return union_of(self._sketch_of(key) for key in keys).unique_estimate()

    def _sketch_of(self, key: MetricKey) -> UserSketch:
        """The union of the counter's items in every write shard."""
        sort = counter_sort_key(key)
        with self._lock:
            found = [
                self._items.get((sketch_partition_key(key.experiment_id, shard), sort))
                for shard in range(COUNTER_WRITE_SHARDS)
            ]
        return union_of(item[0] for item in found if item is not None)
