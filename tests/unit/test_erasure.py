"""The erasure use case over the in-memory back end: a user's traces go, everyone else's and the
counters stay; a second run finds nothing; an interrupted run is finished by the next."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Collection, Iterator, Sequence
from datetime import UTC, datetime

import pytest

from application.erasure import ARCHIVE_WRITE_ATTEMPTS, Erased, ErasureReport, UserEraser
from application.ports import (
    ArchiveEditor,
    ArchiveObjectLines,
    MetricSnapshot,
    NoDeadline,
    ReplayClaim,
)
from domain.erasure import (
    EventIdItem,
    PersonalItem,
    ReplayClaimItem,
    UniqueUserMarker,
    archived_event,
    letter_owner,
)
from domain.errors import (
    ArchiveObjectChangedError,
    InfrastructureConfigurationError,
    TransientInfrastructureError,
)
from domain.metrics import Granularity
from domain.records import KinesisCoordinates
from domain.rejections import DeadLetter, RejectionReason
from infrastructure.in_memory.archive import InMemoryEventArchive
from infrastructure.in_memory.personal_items import InMemoryPersonalItemStore
from infrastructure.in_memory.unique_user_markers import InMemoryUniqueUserMarkers
from tests.containers import MemoryBackEnd, memory_operations_container
from tests.factories import NOW, assignment, event_payload, experiment, record_of

HOUR_11 = datetime(2026, 11, 20, 11, tzinfo=UTC)
_NO_DEADLINE = NoDeadline()


class World:
    def __init__(self) -> None:
        self.operations = memory_operations_container()
        self.store = MemoryBackEnd(self.operations)
        self.ledger = self.operations.in_memory_replay_ledger()
        self.store.experiments.put_all([experiment("exp-1"), experiment("exp-2")])
        self.store.assignments.put_all(
            [
                assignment("user-1", "exp-1", "control"),
                assignment("user-1", "exp-2", "treatment"),
                assignment("user-2", "exp-1", "treatment"),
                assignment("user-3", "exp-1", "control"),
            ]
        )
        self.items = self.operations.personal_item_store()

    def eraser(self) -> UserEraser:
        return self.operations.user_eraser()

    def counters(self) -> list[tuple[object, int, object, int]]:
        return [
            (s.key, s.measures.event_count, s.measures.value_sum, s.measures.value_count)
            for s in self._snapshots()
        ]

    def users(self) -> dict[object, frozenset[str]]:
        return {s.key: s.user_ids or frozenset() for s in self._snapshots(user_sets=True)}

    def _snapshots(self, user_sets: bool = False) -> list[MetricSnapshot]:
        return [
            s
            for exp in ("exp-1", "exp-2")
            for granularity in Granularity
            for s in self.store.metrics.snapshots(exp, granularity, user_sets=user_sets)
        ]

    def archived_users(self) -> list[str]:
        return [archived_event(line).user_id for line in self.store.archive.lines()]


def in_memory_markers(world: World) -> InMemoryUniqueUserMarkers:
    markers = world.store.metrics.markers
    assert isinstance(markers, InMemoryUniqueUserMarkers)
    return markers


def _letter(user_id: str, sequence: int, data: bytes | None = None) -> DeadLetter:
    body = (
        data
        if data is not None
        else json.dumps({"user_id": user_id, "event_id": f"bad-{sequence}"}).encode()
    )
    return DeadLetter(
        RejectionReason.MISSING_FIELD,
        "event_type is missing",
        KinesisCoordinates("shardId-000000000001", str(sequence), user_id, NOW.timestamp()),
        base64.b64encode(body).decode(),
    )


@pytest.fixture
def world() -> World:
    w = World()
    records = [
        record_of(event_payload(event_id="u1-a", user_id="user-1"), 1),
        record_of(event_payload(event_id="u2-a", user_id="user-2"), 2),
        record_of(
            event_payload(event_id="u1-b", user_id="user-1", event_type="purchase", value=5.0), 3
        ),
        record_of(
            event_payload(event_id="u3-a", user_id="user-3", timestamp="2026-11-20T10:05:00Z"), 4
        ),
        record_of(
            event_payload(event_id="u1-c", user_id="user-1", timestamp="2026-11-20T10:15:00Z"), 5
        ),
        record_of(
            event_payload(event_id="u1-d", user_id="user-1", timestamp="2026-11-20T09:40:00Z"), 6
        ),
    ]
    result = w.store.processor().process(records)
    assert not result.failures
    w.store.recent_events.remember({"u1-a": ("shardId-000000000001", 1)})
    w.store.dead_letters.send(
        [_letter("user-1", 10), _letter("user-2", 11), _letter("user-1", 12, b"{not json")],
        deadline=_NO_DEADLINE,
    )
    return w


def test_erasing_a_user_removes_their_markers_lines_event_ids_and_dead_letters(
    world: World,
) -> None:
    counters = world.counters()
    before = world.users()

    report = world.eraser().erase(["user-1"])

    assert "user-1" not in world.archived_users()
    assert sorted(world.archived_users()) == ["user-2", "user-3"]
    assert all("user-1" not in users for users in world.users().values())
    assert world.users() == {k: u - {"user-1"} for k, u in before.items()}
    assert world.counters() == counters
    assert world.store.recent_events.lookup(["u1-a", "u2-a"]).keys() == {"u2-a"}
    assert [
        letter_owner(letter).partition_key for letter in world.store.dead_letters.letters()
    ] == ["user-2"]
    assert report.erased[Erased.ARCHIVE_LINES] == 4
    assert report.erased[Erased.DEAD_LETTERS] == 2
    assert report.erased[Erased.EVENT_ID_ITEMS] >= 1
    # In exp-1/control and exp-2/treatment: clicks at 9, 10 and 11, a purchase at 11.
    # Four hours' markers, and the click's and the purchase's day and experiment markers.
    assert report.erased[Erased.UNIQUE_USER_MARKERS] == 2 * (4 + 2 + 2)
    assert report.touched


def test_a_second_run_touches_nothing_and_says_so(world: World) -> None:
    world.eraser().erase(["user-1"])
    counters, users = world.counters(), world.users()

    again = world.eraser().erase(["user-1"])

    assert not again.touched
    assert sum(again.erased.values()) == 0
    assert (world.counters(), world.users()) == (counters, users)


def test_a_dry_run_counts_what_the_real_run_then_erases(world: World) -> None:
    dry = world.eraser().erase(["user-1"], dry_run=True)
    real = world.eraser().erase(["user-1"])

    assert dry.dry_run
    assert dry.erased == real.erased
    assert dry.touched


def test_a_dry_run_leaves_every_store_as_it_was(world: World) -> None:
    lines = list(world.store.archive.lines())
    users = world.users()
    letters = world.store.dead_letters.letters()

    world.eraser().erase(["user-1"], dry_run=True)

    assert list(world.store.archive.lines()) == lines
    assert world.users() == users
    assert world.store.dead_letters.letters() == letters
    assert len(world.store.dead_letters.hold()) == len(letters)  # every letter was released


def test_objects_left_without_lines_are_deleted_and_the_others_keep_their_key(
    world: World,
) -> None:
    keys = {o.key for o in world.store.archive.objects()}

    report = world.eraser().erase(["user-1"])

    remaining = {o.key for o in world.store.archive.objects()}
    assert remaining < keys
    assert report.erased[Erased.ARCHIVE_OBJECTS_REWRITTEN] == len(remaining)
    assert report.erased[Erased.ARCHIVE_OBJECTS_DELETED] == len(keys) - len(remaining)
    for stored in world.store.archive.objects():
        assert stored.metadata["event-count"] == str(
            len(world.store.archive.read_lines(stored.key).lines)
        )


def test_several_users_are_erased_with_one_reading_of_the_archive(world: World) -> None:
    report = world.eraser().erase(["user-1", "user-3"])

    assert world.archived_users() == ["user-2"]
    assert report.archive_objects_read == 3  # the hours 9, 10 and 11 of one shard
    assert report.users == 2


def test_a_letter_whose_data_names_nobody_is_matched_by_its_partition_key(world: World) -> None:
    world.eraser().erase(["user-1"])

    assert all(
        letter.coordinates.partition_key != "user-1"
        for letter in world.store.dead_letters.letters()
    )


def test_replay_claims_of_the_users_events_are_removed(world: World) -> None:
    world.ledger.claim(
        [ReplayClaim("u1-b", "replay-x", 1, NOW), ReplayClaim("u2-a", "replay-x", 2, NOW)]
    )

    report = world.eraser().erase(["user-1"])

    assert world.ledger.claimed(["u1-b", "u2-a"]) == {"u2-a"}
    assert report.erased[Erased.REPLAY_CLAIMS] == 1


class _FailingDeletes(InMemoryPersonalItemStore):
    def delete(self, items: Collection[PersonalItem]) -> None:
        raise TransientInfrastructureError("BatchWriteItem", "throttled")


def test_an_interrupted_run_changes_no_line_and_a_rerun_finishes(world: World) -> None:
    lines = list(world.store.archive.lines())
    failing = _FailingDeletes(in_memory_markers(world), world.store.recent_events, world.ledger)

    with (
        pytest.raises(TransientInfrastructureError),
        world.operations.personal_item_store.override(failing),
    ):
        world.eraser().erase(["user-1"])

    assert list(world.store.archive.lines()) == lines
    assert len(world.store.dead_letters.hold()) == 3  # released again, none removed


def test_an_interrupted_run_is_finished_by_the_next(world: World) -> None:
    failing = _FailingDeletes(in_memory_markers(world), world.store.recent_events, world.ledger)
    with (
        pytest.raises(TransientInfrastructureError),
        world.operations.personal_item_store.override(failing),
    ):
        world.eraser().erase(["user-1"])

    world.eraser().erase(["user-1"])

    assert "user-1" not in world.archived_users()
    assert all("user-1" not in users for users in world.users().values())
    assert not world.eraser().erase(["user-1"]).touched


class _FailingRewrites(ArchiveEditor):
    """The in-memory archive, whose rewrites fail after `allowed` of them (S3 throttling)."""

    def __init__(self, archive: InMemoryEventArchive, allowed: int) -> None:
        self._archive = archive
        self._allowed = allowed

    def object_keys(self) -> Iterator[str]:
        return self._archive.object_keys()

    def read_lines(self, key: str) -> ArchiveObjectLines:
        return self._archive.read_lines(key)

    def replace(self, key: str, lines: Sequence[bytes], version: str) -> None:
        self._spend()
        self._archive.replace(key, lines, version)

    def delete(self, key: str, version: str) -> None:
        self._spend()
        self._archive.delete(key, version)

    def _spend(self) -> None:
        if self._allowed <= 0:
            raise TransientInfrastructureError("s3:PutObject", "SlowDown")
        self._allowed -= 1


def test_a_run_interrupted_while_rewriting_the_archive_is_finished_by_the_next(
    world: World,
) -> None:
    failing = _FailingRewrites(world.store.archive, allowed=1)
    with (
        pytest.raises(TransientInfrastructureError),
        world.operations.archive_editor.override(failing),
    ):
        world.eraser().erase(["user-1"])
    assert "user-1" in world.archived_users()  # one of the two objects is still to rewrite

    second = world.eraser().erase(["user-1"])

    assert second.erased[Erased.UNIQUE_USER_MARKERS] == 0  # gone in the first run
    assert second.erased[Erased.DEAD_LETTERS] == 0
    assert second.erased[Erased.ARCHIVE_LINES] > 0
    assert "user-1" not in world.archived_users()
    assert not world.eraser().erase(["user-1"]).touched


class _RacedEditor(ArchiveEditor):
    """The in-memory archive, where `rival` writes the object (as another erasure would)
    between each reading of it and the write that follows."""

    def __init__(self, archive: InMemoryEventArchive, rival: Callable[[str], None]) -> None:
        self._archive = archive
        self._rival = rival
        self.writes: list[str] = []

    def object_keys(self) -> Iterator[str]:
        return self._archive.object_keys()

    def read_lines(self, key: str) -> ArchiveObjectLines:
        return self._archive.read_lines(key)

    def replace(self, key: str, lines: Sequence[bytes], version: str) -> None:
        self.writes.append(key)
        self._rival(key)
        self._archive.replace(key, lines, version)

    def delete(self, key: str, version: str) -> None:
        self.writes.append(key)
        self._rival(key)
        self._archive.delete(key, version)


def test_two_erasures_rewriting_the_same_objects_at_once_both_take_effect(world: World) -> None:
    other = world.eraser()
    other_reports: list[ErasureReport] = []

    def erase_user_3_first(key: str) -> None:
        # user-3's erasure reads and rewrites the objects after user-1's has read them.
        if not other_reports:
            other_reports.append(other.erase(["user-3"]))

    raced = _RacedEditor(world.store.archive, erase_user_3_first)
    with world.operations.archive_editor.override(raced):
        report = world.eraser().erase(["user-1"])

    assert world.archived_users() == ["user-2"]
    assert report.erased[Erased.ARCHIVE_LINES] == 4
    assert other_reports[0].erased[Erased.ARCHIVE_LINES] == 1
    assert not world.eraser().erase(["user-1", "user-3"]).touched


def test_an_erasure_that_keeps_losing_the_race_for_an_object_fails_naming_it(
    world: World,
) -> None:
    archive = world.store.archive

    def rewrite_unchanged(key: str) -> None:
        read = archive.read_lines(key)
        archive.replace(key, read.lines, read.version)

    raced = _RacedEditor(archive, rewrite_unchanged)
    with (
        world.operations.archive_editor.override(raced),
        pytest.raises(ArchiveObjectChangedError, match="run the erasure again") as failure,
    ):
        world.eraser().erase(["user-1"])

    [key] = set(raced.writes)
    assert raced.writes == [key] * ARCHIVE_WRITE_ATTEMPTS
    assert failure.value.key == key
    assert key in str(failure.value)
    assert "user-1" in world.archived_users()


def test_the_in_memory_queue_refuses_a_handle_it_does_not_hold_as_sqs_does() -> None:
    store = MemoryBackEnd.empty()
    store.dead_letters.send([_letter("user-1", 1)], _NO_DEADLINE)
    [held] = store.dead_letters.hold()
    store.dead_letters.remove([held.handle])

    with pytest.raises(InfrastructureConfigurationError, match="ReceiptHandleIsInvalid"):
        store.dead_letters.release([held.handle])


def test_the_in_memory_archive_refuses_to_read_an_object_it_does_not_hold() -> None:
    store = MemoryBackEnd.empty()

    with pytest.raises(InfrastructureConfigurationError, match="NoSuchKey"):
        store.archive.read_lines("events/year=2026/missing.jsonl.gz")


def test_an_item_whose_key_dynamodb_would_refuse_is_never_present() -> None:
    w = World()
    too_long = "u" * 2000
    items: set[PersonalItem] = {
        UniqueUserMarker("exp-1", "control", "click", Granularity.HOUR, HOUR_11, too_long),
        EventIdItem(too_long),
        ReplayClaimItem(too_long),
    }

    assert w.items.present(items) == set()


def test_erasing_nobody_is_refused(world: World) -> None:
    with pytest.raises(ValueError, match="non-empty"):
        world.eraser().erase([])
