"""Replayed events counted at most once per event id: a ledger item and the counter increments
written in one DynamoDB transaction."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from datetime import UTC, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from application.ports import (
    Clock,
    NoDeadline,
    ReplayedEvent,
    ReplayMetricStore,
    ReplayOutcome,
)
from domain.metrics import MetricKey
from infrastructure.aws.dynamodb_codec import Backoff, number, string
from infrastructure.aws.dynamodb_metric_store import DynamoDbMetricStore
from infrastructure.aws.errors import is_transient, translate
from infrastructure.dynamodb_layout import counter_partition_key, counter_sort_key

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

MAX_TRANSACTION_ITEMS = 100
LEDGER_SORT_KEY = "REPLAY"
_CANCELLED = "TransactionCanceledException"
_COUNTER_ADD = (
    "ADD event_count :n, value_sum :s, value_count :c "
    "SET updated_at = :now, "
    "#experiment_id = if_not_exists(#experiment_id, :experiment_id), "
    "#variant_id = if_not_exists(#variant_id, :variant_id), "
    "#metric = if_not_exists(#metric, :metric), "
    "#granularity = if_not_exists(#granularity, :granularity), "
    "#window_start = if_not_exists(#window_start, :window_start)"
)
_IDENTITY_NAMES = {
    f"#{name}": name
    for name in ("experiment_id", "variant_id", "metric", "granularity", "window_start")
}


def ledger_partition_key(event_id: str) -> str:
    return f"REPLAY#{event_id}"


class DynamoDbReplayMetricStore(ReplayMetricStore):
    """Each transaction holds, for a group of events, one `REPLAY#<event_id>` ledger item per
    event (put only if absent) and one `ADD` per counter they touch (at most 100 items).

    Exact under every retry: if the ledger item exists the whole transaction is cancelled, the
    cancellation reasons name the events already applied, and the rest is retried without them.
    A retry of a transaction whose response was lost finds its own ledger items. Unique users
    use the stream's idempotent markers, written first.
    """

    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        markers: DynamoDbMetricStore,
        clock: Clock,
        ledger_ttl_days: int = 400,
        max_attempts: int = 5,
        backoff: Backoff | None = None,
    ) -> None:
        self._client = client
        self._table_name = table_name
        self._markers = markers
        self._clock = clock
        self._ledger_ttl = timedelta(days=ledger_ttl_days)
        self._max_attempts = max_attempts
        self._backoff = backoff or Backoff()

    def apply_once(self, events: Sequence[ReplayedEvent]) -> ReplayOutcome:
        applied: set[str] = set()
        already: set[str] = set()
        failed: dict[str, str] = {}
        marked = self._markers.mark_users(
            [delta for event in events for delta in event.deltas], NoDeadline()
        )
        if not marked.complete:
            problem = "; ".join(marked.problems) or "unique-user markers not written"
            return ReplayOutcome(frozenset(), frozenset(), {e.event_id: problem for e in events})
        for group in _groups(events):
            self._apply_group(list(group), applied, already, failed)
        return ReplayOutcome(frozenset(applied), frozenset(already), failed)

    def _apply_group(
        self,
        group: list[ReplayedEvent],
        applied: set[str],
        already: set[str],
        failed: dict[str, str],
    ) -> None:
        attempt = 0
        while group:
            attempt += 1
            items = self._transaction(group)
            # One token per attempt: botocore's own retries of this request are idempotent.
            token = hashlib.sha256(f"{uuid.uuid4()}".encode()).hexdigest()[:36]
            try:
                self._client.transact_write_items(TransactItems=items, ClientRequestToken=token)
            except ClientError as error:
                code = error.response.get("Error", {}).get("Code", "")
                if code == _CANCELLED:
                    reasons = error.response.get("CancellationReasons", [])
                    done = {
                        event.event_id
                        for event, reason in zip(group, reasons, strict=False)
                        if reason.get("Code") == "ConditionalCheckFailed"
                    }
                    if done:
                        already.update(done)
                        group = [e for e in group if e.event_id not in done]
                        continue
                if not is_transient(error) and code != _CANCELLED:
                    raise translate(error, "TransactWriteItems") from error
                if attempt >= self._max_attempts:
                    problem = str(translate(error, "TransactWriteItems"))
                    failed.update({e.event_id: problem for e in group})
                    return
                self._backoff.pause(attempt)
                continue
            except BotoCoreError as error:
                if attempt >= self._max_attempts:
                    problem = str(translate(error, "TransactWriteItems"))
                    failed.update({e.event_id: problem for e in group})
                    return
                self._backoff.pause(attempt)
                continue
            applied.update(e.event_id for e in group)
            return

    def _transaction(self, group: Sequence[ReplayedEvent]) -> list[TransactWriteItemTypeDef]:
        now = self._clock.now().astimezone(UTC)
        expires = int((now + self._ledger_ttl).timestamp())
        items: list[TransactWriteItemTypeDef] = [
            {
                "Put": {
                    "TableName": self._table_name,
                    "Item": {
                        "partition_key": string(ledger_partition_key(event.event_id)),
                        "sort_key": string(LEDGER_SORT_KEY),
                        "replayed_at": string(now.isoformat()),
                        "expires_at": number(expires),
                    },
                    "ConditionExpression": "attribute_not_exists(partition_key)",
                }
            }
            for event in group
        ]
        totals: dict[MetricKey, tuple[int, Decimal, int]] = {}
        for event in group:
            for delta in event.deltas:
                count, value, valued = totals.get(delta.key, (0, Decimal(0), 0))
                totals[delta.key] = (
                    count + delta.event_count,
                    value + delta.value_sum,
                    valued + delta.value_count,
                )
        for key, (count, value, valued) in sorted(totals.items()):
            items.append(
                {
                    "Update": {
                        "TableName": self._table_name,
                        "Key": {
                            "partition_key": string(counter_partition_key(key.experiment_id)),
                            "sort_key": string(counter_sort_key(key)),
                        },
                        "UpdateExpression": _COUNTER_ADD,
                        "ExpressionAttributeNames": _IDENTITY_NAMES,
                        "ExpressionAttributeValues": {
                            ":n": number(count),
                            ":s": number(value),
                            ":c": number(valued),
                            ":now": string(now.isoformat()),
                            ":experiment_id": string(key.experiment_id),
                            ":variant_id": string(key.variant_id),
                            ":metric": string(key.metric),
                            ":granularity": string(key.granularity.value),
                            ":window_start": string(key.window_start.astimezone(UTC).isoformat()),
                        },
                    }
                }
            )
        return items


def _groups(events: Sequence[ReplayedEvent]) -> list[list[ReplayedEvent]]:
    """Consecutive events whose ledger items and distinct counters fit one transaction."""
    groups: list[list[ReplayedEvent]] = []
    current: list[ReplayedEvent] = []
    counters: set[MetricKey] = set()
    for event in events:
        keys = {delta.key for delta in event.deltas}
        if current and len(current) + 1 + len(counters | keys) > MAX_TRANSACTION_ITEMS:
            groups.append(current)
            current, counters = [], set()
        current.append(event)
        counters |= keys
    if current:
        groups.append(current)
    return groups
