"""Exact unique users in DynamoDB: one first-seen marker item per (counter window, user), written
once, conditionally, carrying the record that wrote it.

Layout, costs and why it is exact: docs/storage.md ("Exact unique users").
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, cast

from botocore.exceptions import BotoCoreError, ClientError
from cachetools import LRUCache

from application.ports import (
    COMPLETE,
    NO_EARLIER_RECORDS,
    Clock,
    Deadline,
    EarlierRecords,
    RecordId,
    WriteReport,
    merged_reports,
)
from application.shard_cut import NO_CUT, ShardCut
from application.unique_users import (
    Counter,
    MarkerClaims,
    UniqueUserMarkers,
    recognised_earlier_records,
)
from domain.metrics import Granularity, MetricDelta, MetricKey
from domain.statistics import joined_metrics
from infrastructure.aws.client_config import refund_retry_quota_on_answers
from infrastructure.aws.dynamodb_codec import (
    Backoff,
    Item,
    chunked,
    failed_write,
    number,
    query_items,
    read_string,
    settled,
    string,
)
from infrastructure.aws.errors import is_data_refusal, is_transient
from infrastructure.clock import SystemClock
from infrastructure.dynamodb_layout import (
    DAY_MARKER_SORT_PREFIX,
    EXPERIMENT_MARKER_COUNT_ATTRIBUTE,
    TTL_ATTRIBUTE,
    MarkerItemKey,
    experiment_marker_attributes,
    legacy_marker_partition_key,
    marker_key,
    marker_partitions,
    marker_writer,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

CONDITION_FAILED = "ConditionalCheckFailedException"
WRITER_ATTRIBUTE = "by"
"""A marker's record: `<shard id>/<sequence number>`."""

_MARKER_COUNT = EXPERIMENT_MARKER_COUNT_ATTRIBUTE

_MARKERS_PER_TASK = 8
"""Markers one worker writes in a row: enough to make a task's overhead small beside its
requests, few enough that a batch's markers spread over every worker."""


writer_of = marker_writer


def record_of(writer: str) -> RecordId | None:
    """The record a marker's `by` names (None when it names none)."""
    shard_id, _, sequence = writer.rpartition("/")
    return (shard_id, int(sequence)) if shard_id and sequence.isdigit() else None


_NONE: Mapping[RecordId, int] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class _Wanted:
    """One marker a delta needs: for which counter, the record that would write it, and the
    earlier records whose marker is the delta's too (`recognised_earlier_records`)."""

    key: MarkerItemKey
    counter: Counter
    record: RecordId
    recognised: Mapping[RecordId, int]

    def counting_sequence(self, holder: RecordId | None) -> int | None:
        """The sequence of the delta's record that counts the user when the marker holds
        `holder`: the marker's own record, or the one taken over from `holder`'s run."""
        if holder == self.record:
            return self.record[1]
        return None if holder is None else self.recognised.get(holder)


@dataclass(frozen=True, slots=True)
class _Outcome:
    wanted: _Wanted
    counting: int | None
    """The sequence of the record that counts the user (None: no record of the delta does)."""
    report: WriteReport = COMPLETE
    joins: tuple[str, ...] = ()


_Known = tuple[RecordId, tuple[str, ...]]
"""A marker as confirmed: its record, and the metrics it joins (see `MarkerClaims`), for
whichever record counts it: its own, or a later holder of its replayed event."""


class DynamoDbUniqueUserMarkers(UniqueUserMarkers):
    """Each marker is one conditional `UpdateItem` (`SET by = :record` if `by` does not exist,
    returning the item as it was when the condition fails): the record that wrote it, or the
    record a retry finds there, tells whether this record counts the user. A warm container
    remembers (bounded LRU) each marker's record once DynamoDB confirmed it, and sends nothing
    for it again."""

    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        max_workers: int = 32,
        executor: Executor | None = None,
        ttl_days: int | None = None,
        cache_size: int = 200_000,
        backoff: Backoff | None = None,
        max_transient_retries: int = 4,
        clock: Clock | None = None,
    ) -> None:
        self._client = client
        self._table_name = table_name
        self._owns_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="unique-user-markers"
        )
        self._ttl = None if ttl_days is None else timedelta(days=ttl_days)
        self._written: LRUCache[tuple[MarkerItemKey, str], _Known] = LRUCache(maxsize=cache_size)
        """Confirmed markers by (item key, metric): an experiment-to-date item holds every
        metric's marker of its user."""
        self._lock = threading.Lock()
        self._backoff = backoff or Backoff()
        self._max_transient_retries = max_transient_retries
        self._clock = clock or SystemClock()
        refund_retry_quota_on_answers(client, frozenset({CONDITION_FAILED}))

    def close(self) -> None:
        if self._owns_executor:
            self._executor.shutdown(wait=True)

    # -- writing -------------------------------------------------------------------------------

    def mark(
        self,
        deltas: Sequence[MetricDelta],
        deadline: Deadline,
        earlier_records: EarlierRecords = NO_EARLIER_RECORDS,
    ) -> MarkerClaims:
        first_records: dict[Counter, set[int]] = defaultdict(set)
        joins: dict[Counter, dict[int, tuple[str, ...]]] = defaultdict(dict)
        # In record order: when the deadline stops the writes, the markers of the earliest
        # records are the ones written, so the shard's cut (and what its counters may apply)
        # moves as far as the time allowed.
        wanted = sorted(
            self._wanted(deltas, earlier_records, first_records, joins),
            key=lambda w: (w.record[1], w.record[0]),
        )
        report = settled(
            [
                self._executor.submit(self._write_all, chunk, deadline, first_records, joins)
                for chunk in chunked(wanted, _MARKERS_PER_TASK)
            ]
        )
        claims = {counter: frozenset(sequences) for counter, sequences in first_records.items()}
        return MarkerClaims(claims, report, {counter: dict(j) for counter, j in joins.items()})

    def _wanted(
        self,
        deltas: Sequence[MetricDelta],
        earlier_records: EarlierRecords,
        first_records: dict[Counter, set[int]],
        joins: dict[Counter, dict[int, tuple[str, ...]]],
    ) -> list[_Wanted]:
        """The markers the deltas need that this container does not know; those it knows to
        hold a delta's record (or an earlier record of it) go straight into `first_records`."""
        wanted = []
        with self._lock:
            for delta in deltas:
                counter = (delta.key, delta.shard_id)
                recognised = recognised_earlier_records(delta, earlier_records)
                for user_id, sequence in delta.first_sequence_of_users().items():
                    key = marker_key(delta.key, user_id)
                    need = _Wanted(
                        key, counter, (delta.shard_id, sequence), recognised.get(user_id, _NONE)
                    )
                    known = self._written.get((key, delta.key.metric))
                    if known is None:
                        wanted.append(need)
                        continue
                    counting = need.counting_sequence(known[0])
                    if counting is not None:
                        first_records[counter].add(counting)
                        if known[1]:
                            joins[counter][counting] = known[1]
        return wanted

    def _write_all(
        self,
        chunk: Sequence[_Wanted],
        deadline: Deadline,
        first_records: dict[Counter, set[int]],
        joins: dict[Counter, dict[int, tuple[str, ...]]],
    ) -> WriteReport:
        """Write the chunk's markers one after the other; the records that hold theirs go into
        `first_records` (and what they join into `joins`)."""
        outcomes = [self._write(wanted, deadline) for wanted in chunk]
        with self._lock:
            for outcome in outcomes:
                if outcome.counting is not None:
                    counter = outcome.wanted.counter
                    first_records[counter].add(outcome.counting)
                    if outcome.joins:
                        joins[counter][outcome.counting] = outcome.joins
        return merged_reports(outcome.report for outcome in outcomes)

    def _write(self, wanted: _Wanted, deadline: Deadline) -> _Outcome:
        shard_id, sequence = wanted.record
        unfinished = ShardCut({shard_id: sequence})
        transient_failures = 0
        while True:
            if deadline.expired():
                return _Outcome(
                    wanted,
                    None,
                    WriteReport(
                        unfinished, ("deadline reached before writing every unique-user marker",)
                    ),
                )
            failure: ClientError | BotoCoreError
            try:
                old = self._update(wanted)
            except ClientError as error:
                code = error.response.get("Error", {}).get("Code")
                if code == CONDITION_FAILED:
                    item = _item_in(error)
                    holder = None if item is None else _holder(item, wanted.counter[0].metric)
                    if item is None or holder is None:
                        return _Outcome(
                            wanted,
                            None,
                            WriteReport(
                                unfinished,
                                (f"UpdateItem: marker without a readable {WRITER_ATTRIBUTE}",),
                            ),
                        )
                    return self._settle(wanted, holder, item)
                if is_data_refusal(error):
                    message = error.response.get("Error", {}).get("Message", "")
                    return _Outcome(
                        wanted,
                        None,
                        WriteReport(
                            NO_CUT,
                            (),
                            {wanted.record: f"UpdateItem (unique-user marker): {message}"},
                        ),
                    )
                failure = error
            except BotoCoreError as error:
                failure = error
            else:
                return self._settle(wanted, writer_of(wanted.record), old, written=True)
            transient_failures += 1
            if not is_transient(failure) or transient_failures > self._max_transient_retries:
                return _Outcome(wanted, None, failed_write(failure, "UpdateItem", unfinished))
            self._backoff.pause(transient_failures - 1)

    def _settle(self, wanted: _Wanted, holder: str, item: Item, written: bool = False) -> _Outcome:
        """The marker is durable and holds `holder`: remembered, and ours when it is our
        record (a write of ours, or a retry of one whose answer was lost) or an earlier record
        of a replayed event of ours. `item` is the item as it was before our write (`written`)
        or as it is now, holding the marker."""
        key = wanted.counter[0]
        holder_record = record_of(holder)
        counting = wanted.counting_sequence(holder_record)
        joins: tuple[str, ...] = ()
        if key.granularity is Granularity.EXPERIMENT:
            earlier = _metrics_written(item) if written else _metrics_before(item, key.metric)
            joins = joined_metrics(key.metric, earlier)
        if holder_record is not None:
            # The joins are the marker's (the metrics written before it), whoever counts it.
            with self._lock:
                self._written[(wanted.key, key.metric)] = (holder_record, joins)
        return _Outcome(wanted, counting, joins=joins if counting is not None else ())

    def _update(self, wanted: _Wanted) -> Item:
        """The conditional write; returns the item as it was before it (empty when new)."""
        key = wanted.counter[0]
        partition, sort = wanted.key
        values: dict[str, AttributeValueTypeDef] = {":by": string(writer_of(wanted.record))}
        if key.granularity is Granularity.EXPERIMENT:
            marker, order = experiment_marker_attributes(key.metric)
            names = {"#by": marker, "#o": order, "#n": _MARKER_COUNT}
            update = "SET #by = :by, #o = if_not_exists(#n, :zero) + :one, #n = if_not_exists(#n, :zero) + :one"
            values[":zero"] = number(0)
            values[":one"] = number(1)
        else:
            names = {"#by": WRITER_ATTRIBUTE}
            update = "SET #by = :by"
        if self._ttl is not None:
            update += f", {TTL_ATTRIBUTE} = :expires"
            values[":expires"] = number(self._expiry(key))
        answer = self._client.update_item(
            TableName=self._table_name,
            Key={"partition_key": string(partition), "sort_key": string(sort)},
            UpdateExpression=update,
            ConditionExpression="attribute_not_exists(#by)",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ReturnValues="ALL_OLD",
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
        return answer.get("Attributes", {})

    def _expiry(self, key: MetricKey) -> int:
        """An hour's or day's markers expire `ttl_days` after the end of their day; experiment
        markers `ttl_days` after they are written (a user back after that counts again)."""
        assert self._ttl is not None
        if key.granularity is Granularity.EXPERIMENT:
            start = self._clock.now().astimezone(UTC)
        else:
            start = Granularity.DAY.window_start(key.window_start) + timedelta(days=1)
        return int((start + self._ttl).timestamp())

    # -- reading (operators' reports in user-set mode) -------------------------------------------

    def users(self, keys: Collection[MetricKey]) -> dict[MetricKey, frozenset[str]]:
        """One query per marker partition serves a day and its hours alike."""
        partitions = sorted({p for key in keys for p in marker_partitions(key)})
        by_partition = dict(
            zip(partitions, self._executor.map(self._sort_keys, partitions), strict=True)
        )
        users: dict[MetricKey, frozenset[str]] = {}
        for key in keys:
            found: set[str] = set()
            legacy = (
                None
                if key.granularity is Granularity.EXPERIMENT
                else legacy_marker_partition_key(key)
            )
            marker_attribute = experiment_marker_attributes(key.metric)[0]
            for partition in marker_partitions(key):
                for sort_key, attributes in by_partition[partition]:
                    if key.granularity is Granularity.EXPERIMENT:
                        if marker_attribute in attributes:
                            found.add(sort_key)
                        continue
                    user_id = _user_of(key, sort_key, legacy_partition=partition == legacy)
                    if user_id is not None:
                        found.add(user_id)
            users[key] = frozenset(found)
        return users

    def _sort_keys(self, partition: str) -> list[tuple[str, frozenset[str]]]:
        """Each item's sort key and attribute names (an experiment-to-date item's tell which
        metrics' markers it holds)."""
        return [
            (read_string(item, "sort_key"), frozenset(item))
            for item in query_items(
                self._client,
                {
                    "TableName": self._table_name,
                    "KeyConditionExpression": "partition_key = :pk",
                    "ExpressionAttributeValues": {":pk": string(partition)},
                },
            )
        ]


def _user_of(key: MetricKey, sort_key: str, legacy_partition: bool) -> str | None:
    """The user an hour's or day's marker of `key`'s partition names, when it counts in `key`'s
    window. Legacy partitions hold hour markers only; a day's users there are all of its
    hours'."""
    if key.granularity is Granularity.DAY:
        if legacy_partition:
            return sort_key.split("#", 1)[1]
        if sort_key.startswith(DAY_MARKER_SORT_PREFIX):
            return sort_key[len(DAY_MARKER_SORT_PREFIX) :]
        return None
    hour = f"{key.window_start:%H}#"
    return sort_key[len(hour) :] if sort_key.startswith(hour) else None


def _item_in(error: ClientError) -> Item | None:
    item = cast(dict[str, object], error.response).get("Item")
    return cast(Item, item) if isinstance(item, dict) else None


def _holder(item: Item, metric: str) -> str | None:
    """The record a marker item holds for `metric` (hour and day items hold one metric's)."""
    name = (
        experiment_marker_attributes(metric)[0]
        if isinstance(item.get(_MARKER_COUNT), dict)
        else WRITER_ATTRIBUTE
    )
    value = item.get(name)
    if not isinstance(value, dict) or not isinstance(value.get("S"), str):
        return None
    return value["S"]


def _metrics_written(item: Item) -> list[str]:
    """The metrics whose experiment-to-date marker the user's item holds."""
    return [name[2:] for name in item if name.startswith("m#")]


def _metrics_before(item: Item, metric: str) -> list[str]:
    """The metrics whose marker was written into the user's item before `metric`'s."""
    orders = {
        name[2:]: int(value["N"])
        for name, value in item.items()
        if name.startswith("o#") and isinstance(value, dict) and "N" in value
    }
    mine = orders.get(metric)
    if mine is None:
        return []
    return [other for other, order in orders.items() if order < mine]
