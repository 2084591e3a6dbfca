"""Unique users' sketches in DynamoDB (sketch mode): one item per counter and counter write shard,
under `SKETCH#<experiment>#W<nn>` and the counter's sort key, holding the serialized sketch and a
version. An update reads the items (strongly consistent), unions the batch's users in, and writes
each one conditional on the version it read; a writer that lost the race starts again from the
item as the winner left it, a bounded number of times.

A sketch's union is idempotent, so a redelivered record needs no watermark: its users are
unioned in again and the item does not change (nor is it written).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from itertools import chain
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from application.ports import COMPLETE, Deadline, RecordId, WriteReport
from application.shard_cut import NO_CUT, ShardCut
from application.unique_users import UniqueEstimate, UserSketches
from domain.errors import TransientInfrastructureError
from domain.metrics import MetricDelta, MetricKey
from infrastructure.aws.dynamodb_codec import (
    BATCH_GET_LIMIT,
    Backoff,
    Item,
    MalformedItemError,
    chunked,
    failed_write,
    read_int,
    read_items,
    read_string,
    settled,
    string,
)
from infrastructure.aws.errors import is_data_refusal, is_transient
from infrastructure.dynamodb_layout import (
    COUNTER_WRITE_SHARDS,
    SKETCH_ATTRIBUTE,
    SKETCH_VERSION_ATTRIBUTE,
    counter_sort_key,
    counter_write_shard,
    key_size_problem,
    sketch_partition_key,
)
from infrastructure.user_sketch import MalformedSketchError, UserSketch, union_of

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, UpdateItemInputTypeDef

ItemKey = tuple[str, str]
"""(partition_key, sort_key) of one sketch item."""

CONDITION_FAILED = "ConditionalCheckFailedException"
_PROJECTION = "partition_key, sort_key, #sketch, #version"
_NAMES = {"#sketch": SKETCH_ATTRIBUTE, "#version": SKETCH_VERSION_ATTRIBUTE}


@dataclass(frozen=True, slots=True)
class _Stored:
    sketch: UserSketch
    version: int


@cache
def _absent() -> _Stored:
    """An item not written yet: version 0, which the first write's condition stands for (built
    on first use: the sketch library loads only in sketch mode)."""
    return _Stored(UserSketch.empty(), 0)


class DynamoDbUserSketches(UserSketches):
    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        max_workers: int = 16,
        executor: Executor | None = None,
        backoff: Backoff | None = None,
        max_transient_retries: int = 4,
        max_conflict_retries: int = 8,
    ) -> None:
        self._client = client
        self._table_name = table_name
        self._owns_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="user-sketches"
        )
        self._backoff = backoff or Backoff()
        self._max_transient_retries = max_transient_retries
        self._max_conflict_retries = max_conflict_retries

    def close(self) -> None:
        if self._owns_executor:
            self._executor.shutdown(wait=True)

    # -- writing -------------------------------------------------------------------------------

    def add(self, deltas: Sequence[MetricDelta], deadline: Deadline) -> WriteReport:
        by_item: dict[ItemKey, list[MetricDelta]] = defaultdict(list)
        refused: dict[RecordId, str] = {}
        for delta in deltas:
            item_key = _item_key(delta.key, counter_write_shard(delta.shard_id))
            problem = key_size_problem(*item_key)
            if problem is None:
                by_item[item_key].append(delta)
            else:
                # Refused before any request: in a BatchGetItem it would fail every other key.
                refused.update(_refusal(delta, problem))
        report = self._add_to_items(by_item, deadline)
        if not refused:
            return report
        return WriteReport(report.cut, report.problems, {**report.refused, **refused})

    def _add_to_items(
        self, by_item: Mapping[ItemKey, Sequence[MetricDelta]], deadline: Deadline
    ) -> WriteReport:
        if not by_item:
            return COMPLETE
        if deadline.expired():
            return WriteReport(
                _cut_of(chain.from_iterable(by_item.values())),
                ("deadline reached before writing every user sketch",),
            )
        try:
            stored = self._read(list(by_item))
        except TransientInfrastructureError as error:
            return WriteReport(_cut_of(chain.from_iterable(by_item.values())), (str(error),))
        return settled(
            [
                self._executor.submit(
                    self._write_item, item_key, deltas, stored.get(item_key) or _absent(), deadline
                )
                for item_key, deltas in by_item.items()
            ]
        )

    def _write_item(
        self,
        item_key: ItemKey,
        deltas: Sequence[MetricDelta],
        stored: _Stored,
        deadline: Deadline,
    ) -> WriteReport:
        """Union the deltas' users into the item, conditional on its version; from the item as
        another writer left it when that one came first."""
        added = UserSketch.of(chain.from_iterable(delta.user_ids for delta in deltas))
        conflicts = transient_failures = 0
        while True:
            merged = stored.sketch.union(added)
            if merged == stored.sketch:
                return COMPLETE  # every user is in the item already: a redelivery
            if deadline.expired():
                return WriteReport(
                    _cut_of(deltas), ("deadline reached before writing every user sketch",)
                )
            try:
                self._client.update_item(**self._update(item_key, merged, stored.version))
                return COMPLETE
            except (ClientError, BotoCoreError) as error:
                if _is_condition_failure(error):
                    conflicts += 1
                    if conflicts > self._max_conflict_retries:
                        return WriteReport(
                            _cut_of(deltas),
                            (f"UpdateItem: user sketch still contended after {conflicts} tries",),
                        )
                    stored = self._current(item_key, error)
                    continue
                if is_data_refusal(error):
                    message = getattr(error, "response", {}).get("Error", {}).get("Message", "")
                    return WriteReport(
                        NO_CUT,
                        (),
                        {
                            where: why
                            for delta in deltas
                            for where, why in _refusal(delta, message).items()
                        },
                    )
                transient_failures += 1
                if not is_transient(error) or transient_failures > self._max_transient_retries:
                    return failed_write(error, "UpdateItem", _cut_of(deltas))
                self._backoff.pause(transient_failures - 1)

    def _update(
        self, item_key: ItemKey, sketch: UserSketch, read_version: int
    ) -> UpdateItemInputTypeDef:
        partition, sort = item_key
        values: dict[str, AttributeValueTypeDef] = {
            ":sketch": {"B": sketch.to_bytes()},
            ":next": {"N": str(read_version + 1)},
        }
        if read_version == 0:
            condition = "attribute_not_exists(partition_key)"
        else:
            condition = "#version = :read"
            values[":read"] = {"N": str(read_version)}
        return {
            "TableName": self._table_name,
            "Key": {"partition_key": string(partition), "sort_key": string(sort)},
            "UpdateExpression": "SET #sketch = :sketch, #version = :next",
            "ConditionExpression": condition,
            "ExpressionAttributeNames": _NAMES,
            "ExpressionAttributeValues": values,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }

    def _current(self, item_key: ItemKey, error: ClientError | BotoCoreError) -> _Stored:
        """The item as the writer that came first left it: DynamoDB returns it with the failed
        condition (ALL_OLD); read it when the answer does not carry it."""
        response = getattr(error, "response", {})
        item = response.get("Item")
        if item:
            return _stored_of(item)
        # On this worker, not through the executor: a worker waiting on its own pool could wait
        # for ever once every worker does.
        for found in self._read_chunk([item_key]):
            return _stored_of(found)
        return _absent()

    # -- reading -------------------------------------------------------------------------------

    def _read(self, item_keys: Sequence[ItemKey]) -> dict[ItemKey, _Stored]:
        """The stored items among `item_keys`, strongly consistent, 100 keys to a BatchGetItem
        (run at once on the workers)."""
        chunks = chunked(sorted(item_keys), BATCH_GET_LIMIT)
        found: dict[ItemKey, _Stored] = {}
        for items in self._executor.map(self._read_chunk, chunks):
            for item in items:
                found[(read_string(item, "partition_key"), read_string(item, "sort_key"))] = (
                    _stored_of(item)
                )
        return found

    def _read_chunk(self, item_keys: Sequence[ItemKey]) -> list[Item]:
        keys: list[Item] = [
            {"partition_key": string(partition), "sort_key": string(sort)}
            for partition, sort in item_keys
        ]
        return read_items(
            self._client,
            self._table_name,
            keys,
            _PROJECTION,
            _NAMES,
            self._backoff,
            consistent_read=True,
        )

    def _sketch_of_each(self, keys: Collection[MetricKey]) -> dict[MetricKey, UserSketch]:
        """Each counter's sketch: the union of its items in every write shard."""
        item_keys = {
            key: [_item_key(key, shard) for shard in range(COUNTER_WRITE_SHARDS)]
            for key in keys
            if key_size_problem(*_item_key(key, 0)) is None
        }
        stored = self._read([item_key for each in item_keys.values() for item_key in each])
        return {
            key: union_of(
                stored[item_key].sketch for item_key in item_keys.get(key, ()) if item_key in stored
            )
            for key in keys
        }

    def estimates(self, keys: Collection[MetricKey]) -> dict[MetricKey, UniqueEstimate]:
        return {key: sketch.unique_estimate() for key, sketch in self._sketch_of_each(keys).items()}

    def union_estimate(self, keys: Collection[MetricKey]) -> UniqueEstimate:
        return union_of(self._sketch_of_each(keys).values()).unique_estimate()


def _item_key(key: MetricKey, write_shard: int) -> ItemKey:
    return (sketch_partition_key(key.experiment_id, write_shard), counter_sort_key(key))


def _stored_of(item: Mapping[str, AttributeValueTypeDef]) -> _Stored:
    value = item.get(SKETCH_ATTRIBUTE)
    if value is None or "B" not in value:
        raise MalformedItemError(f"attribute {SKETCH_ATTRIBUTE!r} is missing or not binary")
    try:
        sketch = UserSketch.from_bytes(bytes(value["B"]))
    except MalformedSketchError as error:
        raise MalformedItemError(f"attribute {SKETCH_ATTRIBUTE!r}: {error}") from error
    return _Stored(sketch, read_int(item, SKETCH_VERSION_ATTRIBUTE))


def _is_condition_failure(error: ClientError | BotoCoreError) -> bool:
    if not isinstance(error, ClientError):
        return False
    return bool(error.response.get("Error", {}).get("Code") == CONDITION_FAILED)


def _cut_of(deltas: Iterable[MetricDelta]) -> ShardCut:
    """Redelivers each delta's shard from its first record."""
    return ShardCut.of((delta.shard_id, delta.first_sequence) for delta in deltas)


def _refusal(delta: MetricDelta, problem: str) -> dict[RecordId, str]:
    """Every record of the delta, refused for good: each one's users go into the same item."""
    return dict.fromkeys(
        ((delta.shard_id, sequence) for sequence in delta.sequences),
        f"UpdateItem (user sketch): {problem}",
    )
