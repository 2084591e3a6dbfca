"""The replay ledger in the aggregation table: one `REPLAY#<event_id>` claim item per replayed
event, one `REPLAYRUN#<lane>` item per run, conditional writes only (docs/replay.md)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from application.ports import Clock, RecordId, ReplayClaim, ReplayLedger
from infrastructure.aws.dynamodb_codec import (
    BATCH_GET_LIMIT,
    Backoff,
    Item,
    MalformedItemError,
    chunked,
    number,
    read_items,
    read_string,
    string,
)
from infrastructure.aws.errors import is_transient, translate
from infrastructure.dynamodb_layout import LEDGER_SORT_KEY, TTL_ATTRIBUTE, ledger_partition_key

__all__ = ["LEDGER_SORT_KEY", "DynamoDbReplayLedger", "ledger_partition_key", "run_partition_key"]

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

RUN_SORT_KEY = "RUN"
CONDITION_FAILED = "ConditionalCheckFailedException"
_T = TypeVar("_T")
# Placeholders for every attribute written or read: clear of DynamoDB's reserved words.
_NAMES = {
    "#pk": "partition_key",
    "#lane": "lane",
    "#seq": "sequence",
    "#at": "claimed_at",
    "#applied": "applied",
    "#archived": "archived",
    "#earlier": "earlier_holders",
    "#ttl": TTL_ATTRIBUTE,
}


def run_partition_key(lane: str) -> str:
    return f"REPLAYRUN#{lane}"


class DynamoDbReplayLedger(ReplayLedger):
    """A claim is an UpdateItem conditioned on the item being absent or already this claim (a
    retry whose response was lost), returning the old image when another run holds it; a
    takeover is conditioned on the claim being unchanged. Items expire after `ttl_days`, which
    must outlive any replay of the same events (400 days by default)."""

    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        clock: Clock,
        ttl_days: int = 400,
        max_workers: int = 8,
        max_attempts: int = 5,
        backoff: Backoff | None = None,
    ) -> None:
        self._client = client
        self._table_name = table_name
        self._clock = clock
        self._ttl = timedelta(days=ttl_days)
        self._max_workers = max_workers
        self._max_attempts = max_attempts
        self._backoff = backoff or Backoff()

    # -- runs -----------------------------------------------------------------------------------

    def start_run(self, lane: str) -> None:
        now = self._clock.now().astimezone(UTC)
        self._retrying(
            "PutItem",
            lambda: self._client.put_item(
                TableName=self._table_name,
                Item={
                    "partition_key": string(run_partition_key(lane)),
                    "sort_key": string(RUN_SORT_KEY),
                    "started_at": string(now.isoformat()),
                    TTL_ATTRIBUTE: number(self._expiry(now)),
                },
            ),
        )

    def finish_run(self, lane: str) -> None:
        now = self._clock.now().astimezone(UTC)
        self._retrying(
            "UpdateItem",
            lambda: self._client.update_item(
                TableName=self._table_name,
                Key=self._run_key(lane),
                UpdateExpression="SET finished_at = :now",
                ExpressionAttributeValues={":now": string(now.isoformat())},
            ),
        )

    def finished_runs(self, lanes: Collection[str]) -> set[str]:
        finished: set[str] = set()
        for chunk in chunked(sorted(lanes), BATCH_GET_LIMIT):
            items = read_items(
                self._client,
                self._table_name,
                [self._run_key(lane) for lane in chunk],
                "#pk, finished_at",
                {"#pk": "partition_key"},
                self._backoff,
                consistent_read=True,
            )
            prefix = len(run_partition_key(""))
            finished.update(
                read_string(item, "partition_key")[prefix:]
                for item in items
                if "finished_at" in item
            )
        return finished

    # -- claims ---------------------------------------------------------------------------------

    def claim(self, claims: Sequence[ReplayClaim]) -> dict[str, tuple[ReplayClaim, bool]]:
        if not claims:
            return {}
        with ThreadPoolExecutor(max_workers=min(self._max_workers, len(claims))) as pool:
            results = list(pool.map(self._claim_one, claims))
        return {claim.event_id: result for claim, result in zip(claims, results, strict=True)}

    def _claim_one(self, claim: ReplayClaim) -> tuple[ReplayClaim, bool]:
        values: dict[str, AttributeValueTypeDef] = {
            ":lane": string(claim.lane),
            ":seq": number(claim.sequence),
            ":at": string(claim.claimed_at.astimezone(UTC).isoformat()),
            ":ttl": number(self._expiry(claim.claimed_at)),
        }

        def request() -> tuple[ReplayClaim, bool]:
            try:
                answer = self._client.update_item(
                    TableName=self._table_name,
                    Key=self._claim_key(claim.event_id),
                    UpdateExpression="SET #lane = :lane, #seq = :seq, #at = :at, #ttl = :ttl",
                    ConditionExpression=(
                        "attribute_not_exists(#pk) OR (#lane = :lane AND #seq = :seq)"
                    ),
                    ExpressionAttributeNames={
                        name: _NAMES[name] for name in ("#pk", "#lane", "#seq", "#at", "#ttl")
                    },
                    ExpressionAttributeValues=values,
                    ReturnValues="ALL_OLD",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != CONDITION_FAILED:
                    raise
                old = error.response.get("Item")
                if not isinstance(old, dict):
                    raise MalformedItemError(
                        "the claim's condition failed without an old image"
                    ) from error
                return _claim_of(claim.event_id, old), True
            old_image = answer.get("Attributes")
            if not old_image:
                return claim, False
            # Our own claim from an earlier attempt: what it recorded stays.
            kept = _claim_of(claim.event_id, old_image)
            return ReplayClaim(
                claim.event_id,
                claim.lane,
                claim.sequence,
                claim.claimed_at,
                kept.applied,
                kept.archived,
                kept.complete,
                kept.earlier_holders,
            ), True

        return self._retrying("UpdateItem", request)

    def take_over(self, held: ReplayClaim, new: ReplayClaim) -> bool:
        values: dict[str, AttributeValueTypeDef] = {
            ":old_lane": string(held.lane),
            ":old_seq": number(held.sequence),
            ":old_at": string(held.claimed_at.astimezone(UTC).isoformat()),
            ":lane": string(new.lane),
            ":seq": number(new.sequence),
            ":at": string(new.claimed_at.astimezone(UTC).isoformat()),
        }
        update = "SET #lane = :lane, #seq = :seq, #at = :at"
        names = ["#lane", "#seq", "#at"]
        removed = []
        if new.applied:
            values[":applied"] = {"SS": sorted(new.applied)}
            update += ", #applied = :applied"
        else:
            removed.append("#applied")
        if new.earlier_holders:
            values[":earlier"] = {"SS": sorted(map(_holder_name, new.earlier_holders))}
            update += ", #earlier = :earlier"
        else:
            removed.append("#earlier")
        if removed:
            update += " REMOVE " + ", ".join(removed)
        names += ["#applied", "#earlier"]

        def request() -> bool:
            try:
                self._client.update_item(
                    TableName=self._table_name,
                    Key=self._claim_key(held.event_id),
                    UpdateExpression=update,
                    ConditionExpression="#lane = :old_lane AND #seq = :old_seq AND #at = :old_at",
                    ExpressionAttributeNames={name: _NAMES[name] for name in names},
                    ExpressionAttributeValues=values,
                )
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") == CONDITION_FAILED:
                    return False
                raise
            return True

        return self._retrying("UpdateItem", request)

    def mark_archived(self, event_ids: Collection[str]) -> None:
        def mark(event_id: str) -> None:
            def request() -> None:
                try:
                    self._client.update_item(
                        TableName=self._table_name,
                        Key=self._claim_key(event_id),
                        UpdateExpression="SET #archived = :yes",
                        ConditionExpression="attribute_exists(#pk)",
                        ExpressionAttributeNames={"#pk": "partition_key", "#archived": "archived"},
                        ExpressionAttributeValues={":yes": {"BOOL": True}},
                    )
                except ClientError as error:
                    if error.response.get("Error", {}).get("Code") != CONDITION_FAILED:
                        raise

            self._retrying("UpdateItem", request)

        ids = list(event_ids)
        if ids:
            with ThreadPoolExecutor(max_workers=min(self._max_workers, len(ids))) as pool:
                list(pool.map(mark, ids))

    # -- helpers --------------------------------------------------------------------------------

    def _retrying(self, operation: str, request: Callable[[], _T]) -> _T:
        """The request, retried with backoff on transient failures; a condition-based request
        is safe to retry (its condition recognises its own earlier write)."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return request()
            except (ClientError, BotoCoreError) as error:
                if not is_transient(error):
                    raise translate(error, operation) from error
                if attempt >= self._max_attempts:
                    raise translate(error, operation) from error
                self._backoff.pause(attempt - 1)

    def _expiry(self, moment: datetime) -> int:
        return int((moment.astimezone(UTC) + self._ttl).timestamp())

    @staticmethod
    def _claim_key(event_id: str) -> Item:
        return {
            "partition_key": string(ledger_partition_key(event_id)),
            "sort_key": string(LEDGER_SORT_KEY),
        }

    @staticmethod
    def _run_key(lane: str) -> Item:
        return {"partition_key": string(run_partition_key(lane)), "sort_key": string(RUN_SORT_KEY)}


def _claim_of(event_id: str, item: Item) -> ReplayClaim:
    """The claim an item records; an item of the transactional ledger (no lane) was written
    together with all of its event's counters."""
    if "lane" not in item:
        return ReplayClaim(event_id, "", 0, datetime.min.replace(tzinfo=UTC), complete=True)
    try:
        sequence = int(item["sequence"]["N"])
        claimed_at = datetime.fromisoformat(read_string(item, "claimed_at"))
    except (KeyError, ValueError) as error:
        raise MalformedItemError(f"replay claim of {event_id}: {error}") from error
    applied = item.get("applied", {})
    archived = item.get("archived", {})
    earlier = item.get("earlier_holders", {})
    return ReplayClaim(
        event_id,
        read_string(item, "lane"),
        sequence,
        claimed_at,
        frozenset(applied.get("SS", ())) if isinstance(applied, dict) else frozenset(),
        bool(archived.get("BOOL")) if isinstance(archived, dict) else False,
        earlier_holders=frozenset(
            _holder_of(event_id, name)
            for name in (earlier.get("SS", ()) if isinstance(earlier, dict) else ())
        ),
    )


def _holder_name(holder: RecordId) -> str:
    """An earlier holder in a claim's `earlier_holders` set: `<lane>/<sequence>`."""
    lane, sequence = holder
    return f"{lane}/{sequence}"


def _holder_of(event_id: str, name: str) -> RecordId:
    lane, _, sequence = name.rpartition("/")
    if not lane or not sequence.isdigit():
        raise MalformedItemError(f"replay claim of {event_id}: earlier holder {name!r}")
    return lane, int(sequence)
