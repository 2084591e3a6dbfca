"""One contract for the replay ledger's claims, in memory and in DynamoDB (moto's server)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from mypy_boto3_dynamodb import DynamoDBClient

from application.ports import ReplayClaim, ReplayLedger
from infrastructure.aws.dynamodb_codec import Backoff, string
from infrastructure.aws.dynamodb_replay_ledger import (
    LEDGER_SORT_KEY,
    DynamoDbReplayLedger,
    ledger_partition_key,
)
from infrastructure.clock import ManualClock
from infrastructure.in_memory.replay_ledger import InMemoryReplayLedger
from operations.aws.provisioning import ensure_aggregation_table
from tests.botocore_faults import LoseResponses

NOW = datetime(2026, 11, 20, 12, 0, 0, 123456, tzinfo=UTC)
FAST = Backoff(sleep=lambda _: None)


@pytest.fixture(params=["in_memory", "dynamodb"])
def ledger(request: pytest.FixtureRequest) -> Iterator[ReplayLedger]:
    if request.param == "in_memory":
        yield InMemoryReplayLedger()
        return
    client: DynamoDBClient = request.getfixturevalue("dynamodb_client")
    table: str = request.getfixturevalue("unique_name")
    ensure_aggregation_table(client, table)
    yield DynamoDbReplayLedger(client, table, ManualClock(NOW), backoff=FAST)


def claim(event_id: str, lane: str, sequence: int, at: datetime = NOW) -> ReplayClaim:
    return ReplayClaim(event_id, lane, sequence, at)


def test_a_claim_is_taken_once_and_a_retry_of_it_finds_it(ledger: ReplayLedger) -> None:
    first = ledger.claim([claim("a", "replay-1", 1), claim("b", "replay-1", 2)])
    again = ledger.claim([claim("a", "replay-1", 1, NOW + timedelta(seconds=5))])

    assert first == {
        "a": (claim("a", "replay-1", 1), False),
        "b": (claim("b", "replay-1", 2), False),
    }
    held, existed = again["a"]
    assert existed
    assert (held.lane, held.sequence) == ("replay-1", 1)


def test_another_runs_claim_is_returned_as_it_is_held(ledger: ReplayLedger) -> None:
    ledger.claim([claim("a", "replay-1", 7)])

    answer = ledger.claim([claim("a", "replay-2", 1, NOW + timedelta(minutes=1))])

    assert answer == {"a": (claim("a", "replay-1", 7), True)}


def test_a_takeover_succeeds_only_over_the_claim_still_held(ledger: ReplayLedger) -> None:
    [(held, _)] = ledger.claim([claim("a", "replay-1", 7)]).values()
    new = ReplayClaim("a", "replay-2", 1, NOW + timedelta(minutes=20), frozenset({"c1", "c2"}))
    rival = ReplayClaim("a", "replay-3", 4, NOW + timedelta(minutes=20))

    assert ledger.take_over(held, new)
    assert not ledger.take_over(held, rival)
    assert ledger.claim([claim("a", "replay-3", 4)]) == {"a": (new, True)}


def test_archived_claims_and_finished_runs_are_remembered(ledger: ReplayLedger) -> None:
    ledger.claim([claim("a", "replay-1", 1), claim("b", "replay-1", 2)])
    ledger.mark_archived(["a"])
    ledger.start_run("replay-1")
    ledger.start_run("replay-2")
    ledger.finish_run("replay-1")

    held = ledger.claim([claim("a", "replay-1", 1), claim("b", "replay-1", 2)])

    assert held["a"][0].archived
    assert not held["b"][0].archived
    assert ledger.finished_runs({"replay-1", "replay-2", "replay-9"}) == {"replay-1"}


def test_a_claim_whose_response_was_lost_is_recognised_as_ours(
    dynamodb_client: DynamoDBClient, unique_name: str
) -> None:
    ensure_aggregation_table(dynamodb_client, unique_name)
    ledger = DynamoDbReplayLedger(dynamodb_client, unique_name, ManualClock(NOW), backoff=FAST)
    lose = LoseResponses(times=1)
    lose.attach(dynamodb_client, "UpdateItem")

    [(held, existed)] = ledger.claim([claim("a", "replay-1", 3)]).values()

    assert lose.lost == 1
    # botocore sent it again: the condition let our own claim through, and said it existed.
    assert existed
    assert (held.lane, held.sequence) == ("replay-1", 3)


def test_an_item_of_the_transactional_ledger_counts_as_complete(
    dynamodb_client: DynamoDBClient, unique_name: str
) -> None:
    # Earlier versions wrote `REPLAY#<id>` in the same transaction as the counters.
    ensure_aggregation_table(dynamodb_client, unique_name)
    dynamodb_client.put_item(
        TableName=unique_name,
        Item={
            "partition_key": string(ledger_partition_key("a")),
            "sort_key": string(LEDGER_SORT_KEY),
            "replayed_at": string(NOW.isoformat()),
        },
    )
    ledger = DynamoDbReplayLedger(dynamodb_client, unique_name, ManualClock(NOW), backoff=FAST)

    [(held, existed)] = ledger.claim([claim("a", "replay-1", 1)]).values()

    assert existed
    assert held.complete


def test_a_takeover_keeps_every_earlier_holder_and_a_retry_of_the_claim_reads_them_back(
    ledger: ReplayLedger,
) -> None:
    [(first, _)] = ledger.claim([claim("a", "replay-1", 7)]).values()
    second = ReplayClaim(
        "a",
        "replay-2",
        1,
        NOW + timedelta(minutes=20),
        earlier_holders=frozenset({("replay-1", 7)}),
    )
    third = ReplayClaim(
        "a",
        "replay-3",
        4,
        NOW + timedelta(minutes=40),
        frozenset({"c1"}),
        earlier_holders=frozenset({("replay-1", 7), ("replay-2", 1)}),
    )

    assert ledger.take_over(first, second)
    assert ledger.claim([claim("a", "replay-9", 1)]) == {"a": (second, True)}
    assert ledger.take_over(second, third)
    [(held, existed)] = ledger.claim([claim("a", "replay-3", 4, NOW + timedelta(hours=1))]).values()

    assert existed
    assert held.earlier_holders == frozenset({("replay-1", 7), ("replay-2", 1)})
    assert held.applied == frozenset({"c1"})


def test_a_claim_item_written_before_earlier_holders_were_kept_reads_as_having_none(
    dynamodb_client: DynamoDBClient, unique_name: str
) -> None:
    ensure_aggregation_table(dynamodb_client, unique_name)
    dynamodb_client.put_item(
        TableName=unique_name,
        Item={
            "partition_key": string(ledger_partition_key("a")),
            "sort_key": string(LEDGER_SORT_KEY),
            "lane": string("replay-1"),
            "sequence": {"N": "7"},
            "claimed_at": string(NOW.isoformat()),
            "applied": {"SS": ["c1"]},
        },
    )
    ledger = DynamoDbReplayLedger(dynamodb_client, unique_name, ManualClock(NOW), backoff=FAST)

    [(held, existed)] = ledger.claim([claim("a", "replay-2", 1)]).values()

    assert existed
    assert held == ReplayClaim("a", "replay-1", 7, NOW, frozenset({"c1"}))
    assert held.earlier_holders == frozenset()
