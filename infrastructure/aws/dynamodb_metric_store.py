"""The real-time counters in DynamoDB: one conditional UpdateItem per counter, exactly once.

Layout, costs and the reasoning behind them: docs/storage.md.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import DecimalException, localcontext
from typing import TYPE_CHECKING, cast

from botocore.exceptions import BotoCoreError, ClientError
from cachetools import LRUCache

from application.ports import (
    COMPLETE,
    COUNTERS_SHARE_OF_TIME,
    NO_EARLIER_RECORDS,
    Clock,
    Deadline,
    EarlierRecords,
    MetricSnapshot,
    MetricStore,
    RecordId,
    ReservingDeadline,
    WriteReport,
    merged_reports,
)
from application.shard_cut import NO_CUT, ShardCut
from application.unique_users import UniqueUserMarkers, counted_deltas
from domain.limits import COUNTER_CONTEXT, delta_sum_problem
from domain.metrics import NO_MEASURES, Granularity, Measures, MetricDelta, MetricKey
from domain.records import padded_sequence
from infrastructure.aws.client_config import refund_retry_quota_on_answers
from infrastructure.aws.dynamodb_codec import (
    BATCH_GET_LIMIT,
    MEASURES_ADD,
    Backoff,
    Item,
    MalformedItemError,
    chunked,
    failed_write,
    measure_values,
    number,
    query_items,
    read_items,
    read_joined,
    read_measures,
    read_string,
    settled,
    string,
)
from infrastructure.aws.dynamodb_unique_user_markers import DynamoDbUniqueUserMarkers
from infrastructure.aws.errors import is_data_refusal, is_transient
from infrastructure.clock import SystemClock
from infrastructure.dynamodb_layout import (
    counter_partition_key,
    counter_partition_keys,
    counter_sort_key,
    counter_write_shard,
    granularity_prefix,
    joined_attribute,
    legacy_counter_partition_key,
    watermark_attribute,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

CONDITION_FAILED = "ConditionalCheckFailedException"

_COUNTER_UPDATE = (
    f"{MEASURES_ADD} "
    "SET #wm = :last, updated_at = :now, "
    "#experiment_id = if_not_exists(#experiment_id, :experiment_id), "
    "#variant_id = if_not_exists(#variant_id, :variant_id), "
    "#metric = if_not_exists(#metric, :metric), "
    "#granularity = if_not_exists(#granularity, :granularity), "
    "#window_start = if_not_exists(#window_start, :window_start)"
)
_COUNTER_CONDITION = "attribute_not_exists(#wm) OR #wm < :first"
_IDENTITY_NAMES = {
    f"#{name}": name
    for name in ("experiment_id", "variant_id", "metric", "granularity", "window_start")
}


class DynamoDbMetricStore(MetricStore):
    """Counters with a per-shard watermark; their unique users are `markers`' items, written
    beside the counters by the same workers.

    A counter is one item per write shard (`counter_write_shard` of the Kinesis shard): each
    item holds the measures and the watermarks of the Kinesis shards of its write shard only, and
    a report sums the items of a counter, those of the legacy unsharded layout included.

    Exactly once: each counter item remembers, per shard, the highest sequence number applied to
    it, and an update only succeeds if its records all lie beyond that mark. When the condition
    fails (a redelivery, or a retry of a request whose response was lost) the item's old image
    tells which records are already in, and only the rest is applied. Nothing is ever read and
    written back.
    """

    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        max_workers: int = 16,
        executor: Executor | None = None,
        clock: Clock | None = None,
        markers: UniqueUserMarkers | None = None,
        backoff: Backoff | None = None,
        max_condition_retries: int = 5,
        max_transient_retries: int = 4,
        watermark_cache_size: int = 200_000,
    ) -> None:
        self._client = client
        self._table_name = table_name
        self._owns_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="metric-store"
        )
        self._clock = clock or SystemClock()
        self._backoff = backoff or Backoff()
        self._own_markers: DynamoDbUniqueUserMarkers | None = None
        if markers is None:
            markers = self._own_markers = DynamoDbUniqueUserMarkers(
                client,
                table_name,
                executor=self._executor,
                backoff=self._backoff,
                max_transient_retries=max_transient_retries,
            )
        self._markers = markers
        self._max_condition_retries = max_condition_retries
        self._max_transient_retries = max_transient_retries
        self._confirmed: LRUCache[tuple[MetricKey, str], int] = LRUCache(
            maxsize=watermark_cache_size
        )
        """The watermark this container knows each (counter, shard) has reached: a redelivery
        sends nothing for records at or below it. Safe because a shard's records only move
        forward (one batch per shard at a time, in order) and a watermark never goes down."""
        self._confirmed_lock = threading.Lock()
        refund_retry_quota_on_answers(client, frozenset({CONDITION_FAILED}))

    def close(self) -> None:
        if self._own_markers is not None:
            self._own_markers.close()
        if self._owns_executor:
            self._executor.shutdown(wait=True)

    # -- writing -------------------------------------------------------------------------------

    def apply(
        self,
        deltas: Sequence[MetricDelta],
        deadline: Deadline,
        earlier_records: EarlierRecords = NO_EARLIER_RECORDS,
    ) -> WriteReport:
        # The markers first: each counter's update carries the unique users whose marker its
        # records hold, so it waits for them.
        claims = self._markers.mark(
            deltas, ReservingDeadline(deadline, COUNTERS_SHARE_OF_TIME), earlier_records
        )
        counters = self._apply_counters(counted_deltas(deltas, claims), deadline)
        return merged_reports((claims.report, counters))

    def _apply_counters(self, deltas: Sequence[MetricDelta], deadline: Deadline) -> WriteReport:
        # Deltas of one counter and shard go in sequence order through one worker: applied out
        # of order, a later delta would raise the watermark above an earlier one's records.
        per_counter: dict[tuple[MetricKey, str], list[MetricDelta]] = defaultdict(list)
        with self._confirmed_lock:
            confirmed = {
                counter: watermark
                for delta in deltas
                if (watermark := self._confirmed.get(counter := (delta.key, delta.shard_id)))
                is not None
            }
        for delta in deltas:
            counter = (delta.key, delta.shard_id)
            known = confirmed.get(counter)
            fresh = delta if known is None else delta.after(known)
            if fresh is not None:
                per_counter[counter].append(fresh)
        futures: list[Future[WriteReport]] = [
            self._executor.submit(self._apply_counter_deltas, same_counter, deadline)
            for same_counter in per_counter.values()
        ]
        return settled(futures)

    def _apply_counter_deltas(self, deltas: list[MetricDelta], deadline: Deadline) -> WriteReport:
        deltas.sort(key=lambda delta: delta.first_sequence)
        refused: dict[RecordId, str] = {}
        for index, delta in enumerate(deltas):
            outcome = self._apply_counter(delta, deadline)
            refused.update(outcome.refused)
            if outcome.cut:
                return WriteReport(
                    outcome.cut.merged(
                        ShardCut.of((d.shard_id, d.first_sequence) for d in deltas[index + 1 :])
                    ),
                    outcome.problems,
                    refused,
                )
        return WriteReport(NO_CUT, (), refused) if refused else COMPLETE

    def _apply_counter(self, delta: MetricDelta, deadline: Deadline) -> WriteReport:
        """One conditional update, trimmed by the old image when the condition fails, retried
        with backoff while a transient failure lasts and the deadline allows (each try is a
        request the redelivery would otherwise cost, and a batch cut at this counter's first
        record)."""
        remaining = delta
        counter = (delta.key, delta.shard_id)
        watermark_name = watermark_attribute(delta.shard_id)
        condition_failures = 0
        transient_failures = 0
        while True:
            if deadline.expired():
                return WriteReport(
                    ShardCut({delta.shard_id: remaining.first_sequence}),
                    ("deadline reached before updating every metric counter",),
                )
            failure: ClientError | BotoCoreError
            try:
                self._update_counter(remaining)
            except DecimalException:
                # The update's own numbers are out of DynamoDB's reach: refused before sending.
                message = delta_sum_problem(remaining.values) or "unstorable number"
                return self._isolate_refused(remaining, deadline, message)
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") == CONDITION_FAILED:
                    watermark = _watermark_in(error, watermark_name)
                    if watermark is None:
                        return WriteReport(
                            ShardCut({delta.shard_id: remaining.first_sequence}),
                            (f"UpdateItem: condition failed without a readable {watermark_name}",),
                        )
                    self._confirm(counter, watermark)
                    trimmed = remaining.after(watermark)
                    if trimmed is None:
                        return COMPLETE
                    remaining = trimmed
                    condition_failures += 1
                    if condition_failures >= self._max_condition_retries:
                        return WriteReport(
                            ShardCut({delta.shard_id: remaining.first_sequence}),
                            (
                                "UpdateItem: the watermark kept moving; another writer applies "
                                "the same shard",
                            ),
                        )
                    continue
                if is_data_refusal(error):
                    message = error.response.get("Error", {}).get("Message", "")
                    return self._isolate_refused(remaining, deadline, message)
                failure = error
            except BotoCoreError as error:
                failure = error
            else:
                self._confirm(counter, remaining.last_sequence)
                return COMPLETE
            transient_failures += 1
            if not is_transient(failure) or transient_failures > self._max_transient_retries:
                return failed_write(
                    failure, "UpdateItem", ShardCut({delta.shard_id: remaining.first_sequence})
                )
            self._backoff.pause(transient_failures - 1)

    def _isolate_refused(self, delta: MetricDelta, deadline: Deadline, message: str) -> WriteReport:
        """DynamoDB refused this update's data: find the records responsible by halves (the
        first half before the second, so the watermark rule holds) and apply the rest."""
        if delta.event_count == 1:
            refused = {
                (
                    delta.shard_id,
                    delta.first_sequence,
                ): f"UpdateItem: ValidationException: {message}"
            }
            users = delta.users_only() if delta.events_counted else None
            if users is None:
                return WriteReport(NO_CUT, (), refused)
            # The record's marker holds its user, whom no later record can count.
            counted = self._apply_counter(users, deadline)
            return WriteReport(counted.cut, counted.problems, refused)
        middle = delta.event_count // 2
        first = self._apply_counter(delta.part(0, middle), deadline)
        if first.cut:
            return WriteReport(first.cut, first.problems, first.refused)
        second = self._apply_counter(delta.part(middle, delta.event_count), deadline)
        return WriteReport(
            second.cut, first.problems + second.problems, {**first.refused, **second.refused}
        )

    def _confirm(self, counter: tuple[MetricKey, str], watermark: int) -> None:
        with self._confirmed_lock:
            known = self._confirmed.get(counter)
            if known is None or known < watermark:
                self._confirmed[counter] = watermark

    def _update_counter(self, delta: MetricDelta) -> None:
        key = delta.key
        values: dict[str, AttributeValueTypeDef] = {
            **measure_values(delta.measures),
            ":first": string(padded_sequence(delta.first_sequence)),
            ":last": string(padded_sequence(delta.last_sequence)),
            ":now": string(self._clock.now().astimezone(UTC).isoformat()),
            ":experiment_id": string(key.experiment_id),
            ":variant_id": string(key.variant_id),
            ":metric": string(key.metric),
            ":granularity": string(key.granularity.value),
            ":window_start": string(key.window_start.astimezone(UTC).isoformat()),
        }
        joined = delta.joined_users()
        joined_names = {
            f"#j{index}": joined_attribute(metric) for index, metric in enumerate(joined)
        }
        values.update({f":j{index}": number(count) for index, count in enumerate(joined.values())})
        update = _COUNTER_UPDATE
        if joined:
            adds = ", ".join(f"#j{index} :j{index}" for index in range(len(joined)))
            update = update.replace(" SET ", f", {adds} SET ", 1)
        self._client.update_item(
            TableName=self._table_name,
            Key={
                "partition_key": string(
                    counter_partition_key(key.experiment_id, counter_write_shard(delta.shard_id))
                ),
                "sort_key": string(counter_sort_key(key)),
            },
            UpdateExpression=update,
            ConditionExpression=_COUNTER_CONDITION,
            ExpressionAttributeNames={
                **joined_names,
                "#wm": watermark_attribute(delta.shard_id),
                **_IDENTITY_NAMES,
            },
            ExpressionAttributeValues=values,
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )

    # -- reading (operators' reports) -----------------------------------------------------------

    def watermarks(self, keys: Collection[MetricKey], shard_id: str) -> dict[MetricKey, int]:
        """Strongly consistent BatchGetItem of the counters, projected to their identity and the
        lane's watermark (a replay asks this of the few events another run held). The lane's
        watermark lives in its write shard's item; a legacy item may hold an older one, of the
        records applied before counters were write-sharded, so the higher of the two counts."""
        name = watermark_attribute(shard_id)
        write_shard = counter_write_shard(shard_id)
        # By item and stored experiment id: a legacy key, unescaped, may spell the key of
        # another experiment's write shard.
        by_item: dict[tuple[str, str, str], MetricKey] = {}
        for counter in keys:
            sort_key = counter_sort_key(counter)
            for partition_key in (
                counter_partition_key(counter.experiment_id, write_shard),
                legacy_counter_partition_key(counter.experiment_id),
            ):
                by_item[(partition_key, sort_key, counter.experiment_id)] = counter
        found: dict[MetricKey, int] = {}
        item_keys = sorted({(pk, sk) for pk, sk, _ in by_item})
        for chunk in chunked(item_keys, BATCH_GET_LIMIT):
            items = read_items(
                self._client,
                self._table_name,
                [{"partition_key": string(pk), "sort_key": string(sk)} for pk, sk in chunk],
                "#k, #s, #e, #wm",
                {"#k": "partition_key", "#s": "sort_key", "#e": "experiment_id", "#wm": name},
                self._backoff,
                consistent_read=True,
            )
            for item in items:
                key = by_item.get(
                    (
                        read_string(item, "partition_key"),
                        read_string(item, "sort_key"),
                        read_string(item, "experiment_id"),
                    )
                )
                value = item.get(name)
                if key is not None and value is not None and "S" in value:
                    found[key] = max(int(value["S"]), found.get(key, -1))
        return found

    def snapshots(
        self,
        experiment_id: str,
        granularity: Granularity,
        start: datetime | None = None,
        end: datetime | None = None,
        user_sets: bool = False,
    ) -> list[MetricSnapshot]:
        prefix = granularity_prefix(granularity)
        lower = prefix if start is None else prefix + _label(granularity, start)
        # '$' sorts right after '#': every sort key of the window containing `end` is below it.
        upper = prefix[:-1] + "$" if end is None else prefix + _label(granularity, end) + "$"
        # One Query per partition, all at once: only the write shards some Kinesis shard used
        # hold items, so the others answer empty at the cost of a request each.
        partitions = [
            self._executor.submit(
                query_items,
                self._client,
                {
                    "TableName": self._table_name,
                    "KeyConditionExpression": (
                        "partition_key = :pk AND sort_key BETWEEN :lo AND :hi"
                    ),
                    "ExpressionAttributeValues": {
                        ":pk": string(partition_key),
                        ":lo": string(lower),
                        ":hi": string(upper),
                    },
                },
            )
            for partition_key in counter_partition_keys(experiment_id)
        ]
        measures: dict[MetricKey, Measures] = {}
        joined: dict[MetricKey, dict[str, int]] = {}
        # Every item's sum is exact in DynamoDB's 38 digits, and so is their total: add them in
        # that context, which raises rather than round (Python's default keeps 28 digits).
        with localcontext(COUNTER_CONTEXT):
            for partition in partitions:
                for item in partition.result():
                    key = _metric_key(item)
                    # The stored identity decides: an escaped experiment id of one layout may
                    # spell another experiment's partition key of the other.
                    if key.experiment_id != experiment_id or key.granularity is not granularity:
                        continue
                    if (start is None or key.window_start >= start) and (
                        end is None or key.window_start < end
                    ):
                        measures[key] = measures.get(key, NO_MEASURES) + read_measures(item)
                        counted = joined.setdefault(key, {})
                        for metric, users in read_joined(item).items():
                            counted[metric] = counted.get(metric, 0) + users
        keys = sorted(measures)
        if not user_sets:
            return [MetricSnapshot(key, measures[key], None, joined[key]) for key in keys]
        user_ids = self._markers.users(keys)
        return [MetricSnapshot(key, measures[key], user_ids[key], joined[key]) for key in keys]


def _label(granularity: Granularity, moment: datetime) -> str:
    return MetricKey("", "", "", granularity, granularity.window_start(moment)).window_label


def _watermark_in(error: ClientError, attribute: str) -> int | None:
    item = cast(Mapping[str, object], error.response).get("Item")
    if not isinstance(item, dict):
        return None
    value = item.get(attribute)
    if not isinstance(value, dict) or not isinstance(value.get("S"), str):
        return None
    return int(value["S"])


def _metric_key(item: Item) -> MetricKey:
    try:
        return MetricKey(
            read_string(item, "experiment_id"),
            read_string(item, "variant_id"),
            read_string(item, "metric"),
            Granularity(read_string(item, "granularity")),
            datetime.fromisoformat(read_string(item, "window_start")).astimezone(UTC),
        )
    except ValueError as error:
        raise MalformedItemError(f"counter item {item.get('sort_key')}: {error}") from error
