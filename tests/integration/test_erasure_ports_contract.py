"""One contract for erasure's ports, in memory and against moto's server: the personal items
(markers, event ids, claims), the archive editor and the dead-letter backlogs."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from mypy_boto3_dynamodb import DynamoDBClient
from mypy_boto3_s3 import S3Client
from mypy_boto3_sqs import SQSClient

from application.ports import (
    ArchiveEditor,
    DeadLetterBacklog,
    DeadLetterQueue,
    EventArchive,
    MetricStore,
    NoDeadline,
    PersonalItemStore,
    RecentEventIndex,
    ReplayClaim,
    ReplayLedger,
)
from domain.archiving import ArchiveObject
from domain.erasure import EventIdItem, PersonalItem, ReplayClaimItem, UniqueUserMarker
from domain.errors import (
    ArchiveObjectChangedError,
    InfrastructureConfigurationError,
    PipelineError,
)
from domain.metrics import EXPERIMENT_WINDOW_START, Granularity, MetricDelta, MetricKey
from domain.records import KinesisCoordinates
from domain.rejections import DeadLetter, RejectionReason
from infrastructure.aws.dynamodb_codec import Backoff
from infrastructure.aws.dynamodb_metric_store import DynamoDbMetricStore
from infrastructure.aws.dynamodb_personal_items import DynamoDbPersonalItemStore
from infrastructure.aws.dynamodb_recent_events import DynamoDbRecentEventIndex
from infrastructure.aws.dynamodb_replay_ledger import DynamoDbReplayLedger
from infrastructure.aws.s3_archive import S3EventArchive
from infrastructure.aws.s3_archive_editor import S3ArchiveEditor
from infrastructure.aws.sqs_dead_letters import S3DeadLetterStore, SqsDeadLetterQueue
from infrastructure.clock import ManualClock
from infrastructure.in_memory.archive import InMemoryEventArchive
from infrastructure.in_memory.dead_letters import InMemoryDeadLetterQueue
from infrastructure.in_memory.metric_store import InMemoryMetricStore
from infrastructure.in_memory.personal_items import InMemoryPersonalItemStore
from infrastructure.in_memory.recent_events import InMemoryRecentEventIndex
from infrastructure.in_memory.replay_ledger import InMemoryReplayLedger
from infrastructure.in_memory.unique_user_markers import InMemoryUniqueUserMarkers
from operations.aws.dead_letter_backlogs import SqsDeadLetterBacklog
from operations.aws.provisioning import ensure_aggregation_table
from tests.aws_resources import create_bucket

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
HOUR = datetime(2026, 11, 20, 10, tzinfo=UTC)
SHARD = "shardId-000000000000"
FAST = Backoff(sleep=lambda _: None)


@dataclass
class Table:
    items: PersonalItemStore
    metrics: MetricStore
    events: RecentEventIndex
    ledger: ReplayLedger


@pytest.fixture(params=["in_memory", "dynamodb"])
def table(request: pytest.FixtureRequest) -> Table:
    if request.param == "in_memory":
        markers = InMemoryUniqueUserMarkers()
        metrics, events, ledger = (
            InMemoryMetricStore(markers),
            InMemoryRecentEventIndex(),
            InMemoryReplayLedger(),
        )
        return Table(InMemoryPersonalItemStore(markers, events, ledger), metrics, events, ledger)
    client: DynamoDBClient = request.getfixturevalue("dynamodb_client")
    name: str = request.getfixturevalue("unique_name")
    ensure_aggregation_table(client, name)
    clock = ManualClock(NOW)
    return Table(
        DynamoDbPersonalItemStore(client, name, FAST),
        DynamoDbMetricStore(client, name, clock=clock),
        DynamoDbRecentEventIndex(client, name, clock, backoff=FAST),
        DynamoDbReplayLedger(client, name, clock, backoff=FAST),
    )


def _delta(users: tuple[str, ...]) -> MetricDelta:
    key = MetricKey("exp-1", "control", "click", Granularity.HOUR, HOUR)
    sequences = tuple(range(1, len(users) + 1))
    return MetricDelta(key, SHARD, sequences, users, tuple(Decimal(1) for _ in users))


def _marker(user_id: str, hour: datetime = HOUR) -> UniqueUserMarker:
    return UniqueUserMarker("exp-1", "control", "click", Granularity.HOUR, hour, user_id)


def test_a_users_experiment_markers_of_every_metric_are_found_and_erased_together(
    table: Table,
) -> None:
    deltas = [
        MetricDelta(
            MetricKey("exp-1", "control", metric, Granularity.EXPERIMENT, EXPERIMENT_WINDOW_START),
            SHARD,
            (sequence,),
            ("u1",),
            (None,),
        )
        for sequence, metric in ((1, "exposure"), (2, "click"))
    ]
    assert table.metrics.apply(deltas, NoDeadline()).complete
    markers: set[PersonalItem] = {
        UniqueUserMarker(
            "exp-1", "control", metric, Granularity.EXPERIMENT, EXPERIMENT_WINDOW_START, "u1"
        )
        for metric in ("exposure", "click")
    }

    assert table.items.present(markers) == markers
    table.items.delete(markers)

    assert table.items.present(markers) == set()
    [exposure, click] = [
        s.measures.unique_users
        for metric in ("exposure", "click")
        for s in table.metrics.snapshots("exp-1", Granularity.EXPERIMENT)
        if s.key.metric == metric
    ]
    assert (exposure, click) == (1, 1)  # the counts are aggregates: they stay


def test_present_finds_exactly_the_stored_items_and_delete_removes_them(table: Table) -> None:
    assert table.metrics.apply([_delta(("u1", "u2"))], NoDeadline()).complete
    table.events.remember({"e1": (SHARD, 1), "e2": (SHARD, 2)})
    table.ledger.claim([ReplayClaim("e1", "replay-1", 1, NOW)])
    asked: set[PersonalItem] = {
        _marker("u1"),
        _marker("u2"),
        _marker("u1", datetime(2026, 11, 20, 11, tzinfo=UTC)),
        EventIdItem("e1"),
        EventIdItem("e3"),
        ReplayClaimItem("e1"),
        ReplayClaimItem("e2"),
    }

    assert table.items.present(asked) == {
        _marker("u1"),
        _marker("u2"),
        EventIdItem("e1"),
        ReplayClaimItem("e1"),
    }
    table.items.delete({_marker("u1"), EventIdItem("e1"), ReplayClaimItem("e1")})

    assert table.items.present(asked) == {_marker("u2")}
    [snapshot] = table.metrics.snapshots("exp-1", Granularity.HOUR, user_sets=True)
    assert snapshot.user_ids == frozenset({"u2"})
    assert snapshot.measures.unique_users == 2  # a count is an aggregate, like the events
    assert snapshot.measures.event_count == 2  # the counter itself is untouched
    assert table.events.lookup(["e1", "e2"]).keys() == {"e2"}


def test_deleting_absent_items_is_harmless(table: Table) -> None:
    table.items.delete({_marker("nobody"), EventIdItem("none"), ReplayClaimItem("none")})

    assert table.items.present({_marker("nobody")}) == set()


def test_an_item_with_a_key_dynamodb_refuses_is_never_present(table: Table) -> None:
    huge = "u" * 1500
    assert table.items.present({_marker(huge), EventIdItem(huge), ReplayClaimItem(huge)}) == set()


def test_more_items_than_one_request_takes_are_found_and_deleted(table: Table) -> None:
    users = tuple(f"user-{n:03d}" for n in range(130))
    assert table.metrics.apply([_delta(users)], NoDeadline()).complete
    markers = {_marker(user) for user in users}

    assert table.items.present(markers) == markers
    table.items.delete(markers)
    assert table.items.present(markers) == set()


# -- the archive -----------------------------------------------------------------------------


@dataclass
class Archive:
    editor: ArchiveEditor
    writer: EventArchive
    rival: ArchiveEditor
    """Another editor of the same archive, as another erasure's process has."""


@pytest.fixture(params=["in_memory", "s3"])
def archive(request: pytest.FixtureRequest) -> Archive:
    if request.param == "in_memory":
        memory = InMemoryEventArchive(prefix="events/")
        return Archive(memory, memory, memory)
    s3: S3Client = request.getfixturevalue("s3_client")
    bucket: str = request.getfixturevalue("unique_name")
    create_bucket(s3, bucket)
    return Archive(
        S3ArchiveEditor(s3, bucket), S3EventArchive(s3, bucket), S3ArchiveEditor(s3, bucket)
    )


def _object(lines: list[bytes]) -> ArchiveObject:
    return ArchiveObject(
        "year=2026/month=11/day=20/hour=10/",
        SHARD,
        1,
        len(lines),
        len(lines),
        b"".join(line + b"\n" for line in lines),
        tuple(f"e{n}" for n in range(len(lines))),
        tuple(range(1, len(lines) + 1)),
    )


def test_an_object_is_rewritten_under_its_key_and_deleted(archive: Archive) -> None:
    lines = [json.dumps({"user_id": f"u{n}"}).encode() for n in range(3)]
    assert archive.writer.store([_object(lines)], NoDeadline()).complete
    [key] = list(archive.editor.object_keys())
    read = archive.editor.read_lines(key)
    assert read.lines == tuple(lines)

    archive.editor.replace(key, lines[1:], read.version)

    assert list(archive.editor.object_keys()) == [key]
    rewritten = archive.editor.read_lines(key)
    assert rewritten.lines == tuple(lines[1:])
    assert rewritten.version != read.version
    archive.editor.delete(key, rewritten.version)
    archive.editor.delete(key, rewritten.version)  # harmless when absent
    assert list(archive.editor.object_keys()) == []


def _stored(archive: Archive, lines: list[bytes]) -> str:
    assert archive.writer.store([_object(lines)], NoDeadline()).complete
    [key] = list(archive.editor.object_keys())
    return key


def test_a_rewrite_from_a_stale_reading_is_refused_and_a_fresh_one_accepted(
    archive: Archive,
) -> None:
    lines = [json.dumps({"user_id": f"u{n}"}).encode() for n in range(3)]
    key = _stored(archive, lines)
    mine, theirs = archive.editor.read_lines(key), archive.rival.read_lines(key)
    archive.rival.replace(key, lines[1:], theirs.version)

    with pytest.raises(ArchiveObjectChangedError, match=key):
        archive.editor.replace(key, [lines[0], lines[2]], mine.version)
    with pytest.raises(ArchiveObjectChangedError, match=key):
        archive.editor.delete(key, mine.version)

    assert archive.editor.read_lines(key).lines == tuple(lines[1:])
    fresh = archive.editor.read_lines(key)
    archive.editor.replace(key, lines[2:], fresh.version)
    assert archive.editor.read_lines(key).lines == tuple(lines[2:])


def test_a_rewrite_of_an_object_deleted_since_it_was_read_is_refused(archive: Archive) -> None:
    lines = [json.dumps({"user_id": f"u{n}"}).encode() for n in range(2)]
    key = _stored(archive, lines)
    read = archive.editor.read_lines(key)
    archive.editor.delete(key, read.version)

    with pytest.raises(ArchiveObjectChangedError, match=key):
        archive.editor.replace(key, lines[1:], read.version)
    assert list(archive.editor.object_keys()) == []


def test_reading_an_object_that_is_not_there_is_refused(archive: Archive) -> None:
    with pytest.raises(InfrastructureConfigurationError, match="NoSuchKey"):
        archive.editor.read_lines("events/year=2026/none.jsonl.gz")


def test_an_object_is_never_rewritten_empty(archive: Archive) -> None:
    with pytest.raises(ValueError, match="delete it instead"):
        archive.editor.replace("events/x.jsonl.gz", [], "any version")


# -- the dead-letter backlog -----------------------------------------------------------------


@dataclass
class Backlog:
    backlog: DeadLetterBacklog
    queue: DeadLetterQueue


@pytest.fixture(params=["in_memory", "sqs"])
def backlog(request: pytest.FixtureRequest) -> Iterator[Backlog]:
    if request.param == "in_memory":
        memory = InMemoryDeadLetterQueue()
        yield Backlog(memory, memory)
        return
    sqs: SQSClient = request.getfixturevalue("sqs_client")
    s3: S3Client = request.getfixturevalue("s3_client")
    name: str = request.getfixturevalue("unique_name")
    create_bucket(s3, name)
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    clock = ManualClock(NOW)
    overflow = S3DeadLetterStore(s3, name)
    yield Backlog(
        SqsDeadLetterBacklog(sqs, url, s3, wait_seconds=0),
        SqsDeadLetterQueue(sqs, url, overflow, clock),
    )


def _letter(user_id: str, sequence: int) -> DeadLetter:
    data = json.dumps({"user_id": user_id}).encode()
    return DeadLetter(
        RejectionReason.MISSING_FIELD,
        "event_type is missing",
        KinesisCoordinates(SHARD, str(sequence), user_id, NOW.timestamp()),
        base64.b64encode(data).decode(),
    )


def test_held_letters_are_removed_or_given_back(backlog: Backlog) -> None:
    letters = [_letter("u1", 1), _letter("u2", 2), _letter("u1", 3)]
    assert backlog.queue.send(letters, NoDeadline()).complete

    held = backlog.backlog.hold()
    assert sorted(h.letter.sequence for h in held if h.letter) == [1, 2, 3]
    assert backlog.backlog.hold() == []  # held letters are out of sight
    mine = [h.handle for h in held if h.letter and h.letter.coordinates.partition_key == "u1"]
    others = [h.handle for h in held if h.handle not in mine]
    backlog.backlog.remove(mine)
    backlog.backlog.release(others)

    again = backlog.backlog.hold()
    assert [h.letter for h in again] == [letters[1]]
    backlog.backlog.release([h.handle for h in again])


def test_a_handle_not_held_is_refused(backlog: Backlog) -> None:
    with pytest.raises(PipelineError):
        backlog.backlog.remove(["not-a-receipt-handle"])
