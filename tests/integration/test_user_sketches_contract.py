"""The UserSketches contract, held by the in-memory and the DynamoDB sketches alike: idempotent
adds, unions over write shards and windows, writers racing on one item, refusals of the keys
DynamoDB cannot hold."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.client import BaseClient
from mypy_boto3_dynamodb import DynamoDBClient

from application.ports import Deadline, NoDeadline
from application.shard_cut import ShardCut
from application.unique_users import NO_USERS, UserSketches
from domain.metrics import Granularity, MetricDelta, MetricKey
from infrastructure.aws.dynamodb_codec import Backoff
from infrastructure.aws.dynamodb_user_sketches import DynamoDbUserSketches
from infrastructure.aws.permissions import (
    LAMBDA_PARTITION_KEY_PREFIXES,
    LAMBDA_PERMISSIONS,
    Resource,
)
from infrastructure.dynamodb_layout import counter_sort_key
from infrastructure.in_memory.user_sketches import InMemoryUserSketches
from infrastructure.user_sketch import UserSketch
from operations.aws.provisioning import ensure_aggregation_table
from tests.aws_calls import CallRecorder
from tests.metric_deltas import SHARD_A, SHARD_B

DAY = datetime(2026, 11, 20, tzinfo=UTC)


def hour(start: int, variant_id: str = "control", metric: str = "click") -> MetricKey:
    return MetricKey("exp-1", variant_id, metric, Granularity.HOUR, DAY + timedelta(hours=start))


def day() -> MetricKey:
    return MetricKey("exp-1", "control", "click", Granularity.DAY, DAY)


def delta(
    key: MetricKey, user_ids: Sequence[str], shard_id: str = SHARD_A, first: int = 1
) -> MetricDelta:
    """The delta of records `first`, `first + 1`, ... of a shard, one per user id."""
    return MetricDelta(
        key,
        shard_id,
        tuple(range(first, first + len(user_ids))),
        tuple(user_ids),
        (None,) * len(user_ids),
    )


class Expired(Deadline):
    def expired(self) -> bool:
        return True


def no_sleep(_: float) -> None:
    return None


@dataclass
class Backend:
    """The sketches under test, and a way to open another writer on the same storage."""

    sketches: UserSketches
    another_writer: Callable[[], UserSketches]


@pytest.fixture(params=["in_memory", "dynamodb"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param == "in_memory":
        sketches = InMemoryUserSketches()
        yield Backend(sketches, lambda: sketches)
        return
    client: DynamoDBClient = request.getfixturevalue("dynamodb_client")
    table: str = request.getfixturevalue("unique_name")
    ensure_aggregation_table(client, table)
    opened: list[DynamoDbUserSketches] = []

    def open_writer() -> DynamoDbUserSketches:
        writer = DynamoDbUserSketches(
            client,
            table,
            max_workers=4,
            backoff=Backoff(sleep=no_sleep),
            max_conflict_retries=1_000,
        )
        opened.append(writer)
        return writer

    yield Backend(open_writer(), open_writer)
    for writer in opened:
        writer.close()


@pytest.fixture
def sketches(backend: Backend) -> UserSketches:
    return backend.sketches


def add(sketches: UserSketches, *deltas: MetricDelta) -> None:
    report = sketches.add(deltas, NoDeadline())
    assert report.complete, report
    assert report.refused == {}


def exactly(users: Sequence[str] | set[str]) -> Any:
    """The estimate a sketch of exactly these users gives: an adapter that lost or doubled no
    user answers with it, to the last bit."""
    return UserSketch.of(users).unique_estimate()


def test_a_window_counts_its_distinct_users(sketches: UserSketches) -> None:
    add(sketches, delta(hour(10), ["u1", "u2", "u1"]), delta(hour(11), ["u3"]))

    estimates = sketches.estimates([hour(10), hour(11)])

    assert {key: estimate.users for key, estimate in estimates.items()} == {
        hour(10): 2,
        hour(11): 1,
    }
    assert estimates[hour(10)].lower_bound <= 2 <= estimates[hour(10)].upper_bound


def test_redelivering_the_same_deltas_changes_no_estimate(sketches: UserSketches) -> None:
    deltas = [
        delta(hour(10), ["u1", "u2"]),
        delta(day(), ["u1", "u2"]),
        delta(hour(10), ["u3"], SHARD_B),
    ]
    add(sketches, *deltas)
    before = sketches.estimates([hour(10), day()])

    add(sketches, *deltas)
    add(sketches, deltas[0])

    assert sketches.estimates([hour(10), day()]) == before
    assert before[hour(10)] == exactly(["u1", "u2", "u3"])


def test_the_sketches_of_two_shards_union_each_user_counted_once(sketches: UserSketches) -> None:
    add(
        sketches,
        delta(hour(10), ["u1", "u2"], SHARD_A),
        delta(hour(10), ["u2", "u3"], SHARD_B),
    )

    assert sketches.estimates([hour(10)]) == {hour(10): exactly(["u1", "u2", "u3"])}


def test_a_range_of_windows_counts_each_user_once(sketches: UserSketches) -> None:
    add(
        sketches,
        delta(hour(10), ["u1", "u2"]),
        delta(hour(11), ["u2", "u3"], first=3),
        delta(hour(12), ["u4"], SHARD_B),
    )

    assert sketches.union_estimate([hour(10), hour(11), hour(12)]) == exactly(
        ["u1", "u2", "u3", "u4"]
    )
    assert sketches.union_estimate([hour(10), hour(11)]).users == 3
    assert sketches.union_estimate([]) == NO_USERS


def test_counters_of_other_variants_and_metrics_keep_their_own_users(
    sketches: UserSketches,
) -> None:
    add(
        sketches,
        delta(hour(10), ["u1"]),
        delta(hour(10, variant_id="treatment"), ["u2", "u3"]),
        delta(hour(10, metric="purchase"), ["u4"]),
        delta(hour(10, variant_id="a#b"), ["u5"]),
    )

    estimates = sketches.estimates(
        [hour(10), hour(10, "treatment"), hour(10, metric="purchase"), hour(10, "a#b")]
    )

    assert [estimate.users for estimate in estimates.values()] == [1, 2, 1, 1]


def test_a_window_without_users_has_none(sketches: UserSketches) -> None:
    assert sketches.estimates([hour(3), day()]) == {hour(3): NO_USERS, day(): NO_USERS}


def test_ten_thousand_users_are_estimated_within_the_stated_error(sketches: UserSketches) -> None:
    users = [f"user-{number}" for number in range(10_000)]
    for start in range(0, len(users), 2_000):
        chunk = users[start : start + 2_000]
        add(
            sketches,
            delta(hour(10), chunk[:1_000], SHARD_A, first=start + 1),
            delta(hour(10), chunk[1_000:], SHARD_B, first=start + 1),
        )

    estimate = sketches.estimates([hour(10)])[hour(10)]

    assert estimate == exactly(users)
    assert estimate.estimate == pytest.approx(10_000, rel=0.02)  # docs/performance.md


def test_two_writers_racing_on_one_item_lose_no_user(backend: Backend) -> None:
    writers = [backend.sketches, backend.another_writer()]
    users = {
        writer: [f"w{index}-u{number}" for number in range(400)]
        for index, writer in enumerate(writers)
    }
    failures: list[BaseException] = []

    def write(writer: UserSketches) -> None:
        try:
            own = users[writer]
            for start in range(0, len(own), 20):
                # The same shard: every write goes to the same item.
                add(writer, delta(hour(10), own[start : start + 20], SHARD_A, first=start + 1))
        except BaseException as error:  # the test asserts on it, in its own thread
            failures.append(error)

    threads = [threading.Thread(target=write, args=(writer,)) for writer in writers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    everyone = [user for own in users.values() for user in own]
    assert backend.sketches.estimates([hour(10)]) == {hour(10): exactly(everyone)}


def test_a_delta_whose_key_dynamodb_cannot_hold_is_refused_through_each_record_the_rest_added(
    sketches: UserSketches,
) -> None:
    too_long = "v" * 1_100  # the sort key is over DynamoDB's 1,024 bytes

    report = sketches.add(
        [delta(hour(10), ["u1"]), delta(hour(10, variant_id=too_long), ["u2", "u3"], first=2)],
        NoDeadline(),
    )

    assert report.complete
    assert set(report.refused) == {(SHARD_A, 2), (SHARD_A, 3)}
    assert all("user sketch" in why for why in report.refused.values())
    assert sketches.estimates([hour(10), hour(10, too_long)]) == {
        hour(10): exactly(["u1"]),
        hour(10, too_long): NO_USERS,
    }


def test_past_the_deadline_nothing_is_added_and_each_shard_is_unfinished_from_its_first_record(
    sketches: UserSketches,
) -> None:
    report = sketches.add(
        [
            delta(hour(10), ["u1"], first=5),
            delta(hour(11), ["u2"], first=6),
            delta(hour(10), ["u3"], SHARD_B, first=3),
        ],
        Expired(),
    )

    assert report.cut == ShardCut({SHARD_A: 5, SHARD_B: 3})
    assert sketches.estimates([hour(10), hour(11)]) == {hour(10): NO_USERS, hour(11): NO_USERS}


# -- DynamoDB: the layout, the calls, the race lost too often -----------------------------


@pytest.fixture
def aggregation_table(dynamodb_client: DynamoDBClient, unique_name: str) -> str:
    ensure_aggregation_table(dynamodb_client, unique_name)
    return unique_name


def dynamodb_sketches(client: DynamoDBClient, table: str, **options: Any) -> DynamoDbUserSketches:
    options.setdefault("backoff", Backoff(sleep=no_sleep))
    return DynamoDbUserSketches(client, table, max_workers=4, **options)


def test_each_counter_write_shard_keeps_its_own_versioned_item_under_the_counters_sort_key(
    dynamodb_client: DynamoDBClient, aggregation_table: str
) -> None:
    sketches = dynamodb_sketches(dynamodb_client, aggregation_table)
    add(sketches, delta(hour(10), ["u1"], SHARD_A), delta(hour(10), ["u2"], SHARD_B))
    add(sketches, delta(hour(10), ["u3"], SHARD_A, first=2))
    add(sketches, delta(hour(10), ["u3"], SHARD_A, first=2))  # a redelivery: no write

    items = dynamodb_client.scan(TableName=aggregation_table)["Items"]

    assert sorted(
        (item["partition_key"]["S"], item["sort_key"]["S"], item["version"]["N"]) for item in items
    ) == [
        ("SKETCH#exp-1#W00", counter_sort_key(hour(10)), "2"),
        ("SKETCH#exp-1#W01", counter_sort_key(hour(10)), "1"),
    ]
    sketch_of_w00 = next(item for item in items if item["partition_key"]["S"].endswith("W00"))
    assert UserSketch.from_bytes(sketch_of_w00["sketch"]["B"]) == UserSketch.of(["u1", "u3"])
    sketches.close()


def test_the_lambda_path_calls_only_what_the_function_is_granted(
    dynamodb_client: DynamoDBClient, aggregation_table: str
) -> None:
    recorder = CallRecorder()
    recorder.attach(dynamodb_client)
    sketches = dynamodb_sketches(dynamodb_client, aggregation_table)

    add(sketches, delta(hour(10), ["u1", "u2"]), delta(day(), ["u1", "u2"]))
    add(sketches, delta(hour(10), ["u3"], SHARD_B))
    sketches.estimates([hour(10), day()])

    assert recorder.actions <= LAMBDA_PERMISSIONS[Resource.AGGREGATION_TABLE]
    for action, partition_keys in recorder.partition_keys.items():
        prefixes = tuple(LAMBDA_PARTITION_KEY_PREFIXES[action])
        assert all(key.startswith(prefixes) for key in partition_keys), action
    sketches.close()


class CompetingWriter:
    """Before each of the client's UpdateItem calls, another writer adds a new user to the same
    item: the call's condition on the version it read always fails."""

    def __init__(self, competitor: UserSketches) -> None:
        self._competitor = competitor
        self.users: list[str] = []

    def attach(self, client: BaseClient) -> None:
        client.meta.events.register("before-call.dynamodb.UpdateItem", self._compete)

    def _compete(self, **_: Any) -> None:
        user = f"competitor-{len(self.users)}"
        self.users.append(user)
        add(self._competitor, delta(hour(10), [user], SHARD_A, first=100 + len(self.users)))


def test_a_writer_that_keeps_losing_the_race_leaves_its_shard_unfinished_from_its_first_record(
    dynamodb_client: DynamoDBClient, endpoint_url: str, aggregation_table: str
) -> None:
    import boto3

    losing_client: DynamoDBClient = boto3.client("dynamodb", endpoint_url=endpoint_url)
    competitor = dynamodb_sketches(dynamodb_client, aggregation_table)
    race = CompetingWriter(competitor)
    race.attach(losing_client)
    loser = dynamodb_sketches(losing_client, aggregation_table, max_conflict_retries=2)

    report = loser.add(
        [delta(hour(10), ["u1", "u2"], SHARD_A, first=7), delta(hour(11), ["u9"], SHARD_B)],
        NoDeadline(),
    )

    assert report.cut == ShardCut({SHARD_A: 7})
    assert loser.estimates([hour(10), hour(11)]) == {
        hour(10): exactly(race.users),
        hour(11): exactly(["u9"]),
    }
    loser.close()
    competitor.close()
