"""The aggregation table's items that name a user or their events, addressed by exact key:
BatchGetItem to find which exist, BatchWriteItem `DeleteRequest`s to delete them. No Query, no
Scan (docs/cli.md, `forget-user`)."""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from application.ports import PersonalItemStore
from domain.erasure import EventIdItem, PersonalItem, UniqueUserMarker
from domain.errors import TransientInfrastructureError
from domain.metrics import Granularity
from infrastructure.aws.dynamodb_codec import (
    BATCH_GET_LIMIT,
    BATCH_WRITE_LIMIT,
    Backoff,
    Item,
    chunked,
    delete_keys,
    read_items,
    read_string,
    string,
)
from infrastructure.aws.errors import translate
from infrastructure.dynamodb_layout import (
    EVENT_SORT_KEY,
    LEDGER_SORT_KEY,
    event_partition_key,
    key_size_problem,
    ledger_partition_key,
    legacy_marker_key,
    marker_key,
    previous_marker_key,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

_NAMES = {"#k": "partition_key", "#s": "sort_key"}


def item_keys(item: PersonalItem) -> list[tuple[str, str]]:
    """(partition_key, sort_key) of the item (docs/storage.md); a marker may also be stored under
    its key of the previous marker buckets, and an hour's in the layout before markers were
    write-sharded."""
    if isinstance(item, UniqueUserMarker):
        keys = [marker_key(item.counter, item.user_id)]
        previous = previous_marker_key(item.counter, item.user_id)
        if previous != keys[0]:
            keys.append(previous)
        if item.granularity is Granularity.HOUR:
            keys.append(legacy_marker_key(item.counter, item.user_id))
        return keys
    if isinstance(item, EventIdItem):
        return [(event_partition_key(item.event_id), EVENT_SORT_KEY)]
    return [(ledger_partition_key(item.event_id), LEDGER_SORT_KEY)]


def _key(partition_key: str, sort_key: str) -> Item:
    return {"partition_key": string(partition_key), "sort_key": string(sort_key)}


class DynamoDbPersonalItemStore(PersonalItemStore):
    """`present`: BatchGetItem, 100 keys a request, strongly consistent, projecting the keys
    only; `delete`: BatchWriteItem, 25 `DeleteRequest`s a request. What DynamoDB hands back
    unprocessed is retried with bounded backoff; what is still left raises
    `TransientInfrastructureError`. A key DynamoDB would refuse for its size is never asked for
    (no such item can exist, and one such key would fail its whole request)."""

    def __init__(
        self, client: DynamoDBClient, table_name: str, backoff: Backoff | None = None
    ) -> None:
        self._client = client
        self._table_name = table_name
        self._backoff = backoff or Backoff()

    def present(self, items: Collection[PersonalItem]) -> set[PersonalItem]:
        # A user's experiment-to-date markers of one variant, one per metric, are one item.
        by_key: dict[tuple[str, str], list[PersonalItem]] = {}
        for item in items:
            for key in item_keys(item):
                if key_size_problem(*key) is None:
                    by_key.setdefault(key, []).append(item)
        found: set[PersonalItem] = set()
        for chunk in chunked(sorted(by_key), BATCH_GET_LIMIT):
            stored = read_items(
                self._client,
                self._table_name,
                [_key(*key) for key in chunk],
                "#k, #s",
                _NAMES,
                self._backoff,
                consistent_read=True,
            )
            for answer in stored:
                key = (read_string(answer, "partition_key"), read_string(answer, "sort_key"))
                found.update(by_key[key])
        return found

    def delete(self, items: Collection[PersonalItem]) -> None:
        keys = sorted({key for item in items for key in item_keys(item)})
        for chunk in chunked(keys, BATCH_WRITE_LIMIT):
            try:
                left = delete_keys(
                    self._client, self._table_name, [_key(*key) for key in chunk], self._backoff
                )
            except (ClientError, BotoCoreError) as error:
                raise translate(error, "BatchWriteItem") from error
            if left:
                raise TransientInfrastructureError(
                    "BatchWriteItem", f"{len(left)} deletes still unprocessed after retries"
                )
