"""Committed event ids in the aggregation table, so producer re-sends are recognised after a cold
start: one `EVENT#<event_id>` item per id, expiring after a retention (docs/exactly-once.md)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from datetime import timedelta
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from application.ports import Clock, NoDeadline, RecentEventIndex, SeenEvent
from domain.errors import TransientInfrastructureError
from infrastructure.aws.dynamodb_codec import (
    BATCH_GET_LIMIT,
    BATCH_WRITE_LIMIT,
    Backoff,
    Item,
    MalformedItemError,
    chunked,
    number,
    put_items,
    read_items,
    read_string,
    string,
)
from infrastructure.aws.errors import translate
from infrastructure.dynamodb_layout import (
    EVENT_PREFIX,
    EVENT_SORT_KEY,
    TTL_ATTRIBUTE,
    event_partition_key,
)

__all__ = ["EVENT_PREFIX", "EVENT_SORT_KEY", "DynamoDbRecentEventIndex", "event_partition_key"]

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

DEFAULT_TTL_DAYS = 7

_SHARD = "shard_id"
_SEQUENCE = "sequence"
# Placeholders for every projected name: they stay clear of DynamoDB's reserved words.
_PROJECTED_NAMES = {"#k": "partition_key", "#s": _SHARD, "#q": _SEQUENCE}
_PROJECTION = ", ".join(_PROJECTED_NAMES)

logger = logging.getLogger(__name__)


class DynamoDbRecentEventIndex(RecentEventIndex):
    """One item per committed event id: the (shard, sequence) of the record that carried it.

    `lookup` reads with BatchGetItem (100 keys a request, strongly consistent: the next batch of
    a shard may run in a new container right after the previous one wrote); `remember` puts with
    BatchWriteItem (25 items a request). Chunks run in parallel; what DynamoDB hands back
    unprocessed is retried with bounded backoff, and what is still left raises
    `TransientInfrastructureError`, as do throttling and transport faults that outlast botocore's
    retries. Each item carries `expires_at`, so the table's TTL removes it after `ttl_days`.

    A put replaces an item of the same id: the use case only remembers ids that `lookup` found
    unknown or carried by the same record, so the stored record stays the first one.
    """

    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        clock: Clock,
        ttl_days: int = DEFAULT_TTL_DAYS,
        max_workers: int = 8,
        executor: Executor | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self._client = client
        self._table_name = table_name
        self._clock = clock
        self._ttl = timedelta(days=ttl_days)
        self._max_workers = max_workers
        self._executor = executor
        self._executor_lock = threading.Lock()
        self._backoff = backoff or Backoff()

    def lookup(self, event_ids: Collection[str]) -> dict[str, SeenEvent]:
        chunks = chunked(list(dict.fromkeys(event_ids)), BATCH_GET_LIMIT)
        if len(chunks) <= 1:
            found = [self._read_chunk(chunk) for chunk in chunks]
        else:
            found = list(self._pool().map(self._read_chunk, chunks))
        return {event_id: seen for part in found for event_id, seen in part.items()}

    def remember(self, events: Mapping[str, SeenEvent]) -> None:
        expires_at = number(int((self._clock.now() + self._ttl).timestamp()))
        items: list[Item] = [
            {
                "partition_key": string(event_partition_key(event_id)),
                "sort_key": string(EVENT_SORT_KEY),
                _SHARD: string(shard_id),
                _SEQUENCE: string(str(sequence)),
                TTL_ATTRIBUTE: expires_at,
            }
            for event_id, (shard_id, sequence) in events.items()
        ]
        chunks = chunked(items, BATCH_WRITE_LIMIT)
        if len(chunks) <= 1:
            for chunk in chunks:
                self._write_chunk(chunk)
        else:
            list(self._pool().map(self._write_chunk, chunks))  # re-raises a chunk's failure

    def _read_chunk(self, event_ids: Sequence[str]) -> dict[str, SeenEvent]:
        keys: list[Item] = [
            {
                "partition_key": string(event_partition_key(event_id)),
                "sort_key": string(EVENT_SORT_KEY),
            }
            for event_id in event_ids
        ]
        items = read_items(
            self._client,
            self._table_name,
            keys,
            _PROJECTION,
            _PROJECTED_NAMES,
            self._backoff,
            consistent_read=True,
        )
        seen: dict[str, SeenEvent] = {}
        for item in items:
            try:
                event_id = read_string(item, "partition_key").removeprefix(EVENT_PREFIX)
                seen[event_id] = (read_string(item, _SHARD), int(read_string(item, _SEQUENCE)))
            except (MalformedItemError, ValueError) as error:
                # Not an item this adapter wrote: the id counts as unknown (counted, not dropped).
                logger.warning(
                    "skipping malformed event-id item %r: %s",
                    item.get("partition_key"),
                    error,
                    extra={"table": self._table_name},
                )
        return seen

    def _write_chunk(self, items: Sequence[Item]) -> None:
        try:
            left = put_items(self._client, self._table_name, items, self._backoff, NoDeadline())
        except (ClientError, BotoCoreError) as error:
            raise translate(error, "BatchWriteItem") from error
        if left:
            raise TransientInfrastructureError(
                "BatchWriteItem", f"{len(left)} event ids still unprocessed after retries"
            )

    def _pool(self) -> Executor:
        with self._executor_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=self._max_workers, thread_name_prefix="recent-events"
                )
            return self._executor
