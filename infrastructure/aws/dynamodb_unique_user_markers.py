"""Exact unique users in DynamoDB: one idempotent marker item per (counter, hour, user).

Layout and costs: docs/storage.md ("Exact unique users").
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError
from cachetools import LRUCache

from application.ports import COMPLETE, Deadline, RecordId, UniqueUserMarkers, WriteReport
from application.shard_cut import NO_CUT, ShardCut
from domain.metrics import Granularity, MetricDelta, MetricKey
from domain.time import DAY_LABEL_FORMAT
from infrastructure.aws.dynamodb_codec import (
    BATCH_WRITE_LIMIT,
    Backoff,
    Item,
    chunked,
    failed_write,
    number,
    put_items,
    query_items,
    read_string,
    settled,
    string,
)
from infrastructure.aws.errors import is_data_refusal, is_transient
from infrastructure.dynamodb_layout import marker_partition_key, marker_sort_key

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

MarkerKey = tuple[str, str]
"""(partition_key, sort_key) of one unique-user marker."""


class DynamoDbUniqueUserMarkers(UniqueUserMarkers):
    """Markers are plain puts, 25 to a `BatchWriteItem`: writing one twice is harmless, so they
    need no watermark. A warm container remembers (bounded LRU) the markers DynamoDB confirmed
    and never writes them again.

    The metric store writes a batch's markers beside its counters, on its own workers
    (`submit`), so that both go out at once; `mark` writes them alone.
    """

    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        max_workers: int = 16,
        executor: Executor | None = None,
        ttl_days: int | None = None,
        cache_size: int = 50_000,
        backoff: Backoff | None = None,
        max_transient_retries: int = 4,
    ) -> None:
        self._client = client
        self._table_name = table_name
        self._owns_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="unique-user-markers"
        )
        self._ttl = None if ttl_days is None else timedelta(days=ttl_days)
        self._written: LRUCache[MarkerKey, bool] = LRUCache(maxsize=cache_size)
        self._lock = threading.Lock()
        self._backoff = backoff or Backoff()
        self._max_transient_retries = max_transient_retries

    def close(self) -> None:
        if self._owns_executor:
            self._executor.shutdown(wait=True)

    # -- writing -------------------------------------------------------------------------------

    def mark(self, deltas: Sequence[MetricDelta], deadline: Deadline) -> WriteReport:
        return settled(self.submit(deltas, deadline, self._executor))

    def submit(
        self, deltas: Sequence[MetricDelta], deadline: Deadline, executor: Executor
    ) -> list[Future[WriteReport]]:
        """`mark`'s writes, started on `executor`: one future per `BatchWriteItem` chunk."""
        markers = self._new_markers(deltas)
        return [
            executor.submit(self._write_markers, list(chunk), markers, deadline)
            for chunk in chunked(sorted(markers), BATCH_WRITE_LIMIT)
        ]

    def _new_markers(self, deltas: Sequence[MetricDelta]) -> dict[MarkerKey, ShardCut]:
        """The markers this batch needs that this container has not written yet, each with the
        cut that redelivers every record that needs it."""
        markers: dict[MarkerKey, list[RecordId]] = defaultdict(list)
        with self._lock:
            for delta in deltas:
                key = delta.key
                if key.granularity is not Granularity.HOUR:
                    # A day's users are the union of its hours' users, which the hourly deltas
                    # of the same records already mark.
                    continue
                partition = marker_partition_key(
                    key.experiment_id, key.variant_id, key.metric, key.window_start
                )
                for user_id, sequence in delta.first_sequence_of_users().items():
                    marker = (partition, marker_sort_key(key.window_start, user_id))
                    if marker in self._written:
                        continue
                    markers[marker].append((delta.shard_id, sequence))
        return {marker: ShardCut.of(records) for marker, records in markers.items()}

    def _write_markers(
        self,
        chunk: list[MarkerKey],
        sources: Mapping[MarkerKey, ShardCut],
        deadline: Deadline,
    ) -> WriteReport:
        def unfinished_of(keys: Sequence[MarkerKey]) -> ShardCut:
            return NO_CUT.merged(*(sources[key] for key in keys))

        transient_failures = 0
        while True:
            if deadline.expired():
                return WriteReport(
                    unfinished_of(chunk),
                    ("deadline reached before writing every unique-user marker",),
                )
            try:
                left = put_items(
                    self._client,
                    self._table_name,
                    [self._marker_item(key) for key in chunk],
                    self._backoff,
                    deadline,
                )
                break
            except (ClientError, BotoCoreError) as error:
                if is_data_refusal(error):
                    return self._isolate_refused_markers(chunk, sources, deadline, error)
                transient_failures += 1
                if not is_transient(error) or transient_failures > self._max_transient_retries:
                    return failed_write(error, "BatchWriteItem", unfinished_of(chunk))
                self._backoff.pause(transient_failures - 1)
        not_written = {
            (read_string(item, "partition_key"), read_string(item, "sort_key")) for item in left
        }
        with self._lock:
            for key in chunk:
                if key not in not_written:
                    self._written[key] = True
        if not not_written:
            return COMPLETE
        return WriteReport(
            unfinished_of(sorted(not_written)),
            (f"BatchWriteItem: {len(not_written)} unique-user markers still unprocessed",),
        )

    def _isolate_refused_markers(
        self,
        chunk: list[MarkerKey],
        sources: Mapping[MarkerKey, ShardCut],
        deadline: Deadline,
        error: ClientError | BotoCoreError,
    ) -> WriteReport:
        """DynamoDB refused this batch's data: write the markers one by one; a marker refused
        alone is reported through the records that needed it first."""
        if len(chunk) == 1:
            message = getattr(error, "response", {}).get("Error", {}).get("Message", "")
            return WriteReport(
                NO_CUT,
                (),
                dict.fromkeys(
                    sources[chunk[0]].as_dict().items(),
                    f"BatchWriteItem (unique-user marker): {message}",
                ),
            )
        reports = [self._write_markers([key], sources, deadline) for key in chunk]
        return WriteReport(
            NO_CUT.merged(*(report.cut for report in reports)),
            tuple(problem for report in reports for problem in report.problems),
            {where: why for report in reports for where, why in report.refused.items()},
        )

    def _marker_item(self, key: MarkerKey) -> Item:
        partition, sort = key
        item: Item = {"partition_key": string(partition), "sort_key": string(sort)}
        if self._ttl is not None:
            day = datetime.strptime(partition.rsplit("#", 1)[1], DAY_LABEL_FORMAT).replace(
                tzinfo=UTC
            )
            expires = day + timedelta(days=1) + self._ttl
            item["expires_at"] = number(int(expires.timestamp()))
        return item

    # -- reading (operators' reports) -----------------------------------------------------------

    def users(self, keys: Collection[MetricKey]) -> dict[MetricKey, frozenset[str]]:
        """One query per (experiment, variant, metric, day) partition serves the day and its
        hours alike (instead of one per hour: same read units, up to 24 times fewer requests)."""
        partitions = sorted({_partition_of(key) for key in keys})
        by_partition = dict(
            zip(partitions, self._executor.map(self._users_by_hour, partitions), strict=True)
        )
        users: dict[MetricKey, frozenset[str]] = {}
        for key in keys:
            hours = by_partition[_partition_of(key)]
            if key.granularity is Granularity.HOUR:
                users[key] = frozenset(hours.get(f"{key.window_start:%H}", ()))
            else:
                users[key] = frozenset().union(*hours.values())
        return users

    def _users_by_hour(self, partition: str) -> dict[str, set[str]]:
        hours: dict[str, set[str]] = defaultdict(set)
        for item in query_items(
            self._client,
            {
                "TableName": self._table_name,
                "KeyConditionExpression": "partition_key = :pk",
                "ExpressionAttributeValues": {":pk": string(partition)},
                "ProjectionExpression": "sort_key",
            },
        ):
            hour, user_id = read_string(item, "sort_key").split("#", 1)
            hours[hour].add(user_id)
        return hours


def _partition_of(key: MetricKey) -> str:
    return marker_partition_key(key.experiment_id, key.variant_id, key.metric, key.window_start)
