from __future__ import annotations

import base64
import json
from typing import cast

from application.process_batch import ProcessingSettings
from application.replay import ReplayItem, ReplayOptions, ReplayProcessor, ReplayStatus
from domain.metrics import Granularity
from domain.records import KinesisCoordinates, RawRecord
from domain.rejections import RejectionReason
from infrastructure.clock import ManualClock
from tests.containers import MemoryBackEnd
from tests.factories import NOW, assignment, event_payload, experiment


def setup() -> tuple[MemoryBackEnd, ReplayProcessor]:
    store = MemoryBackEnd.empty()
    store.experiments.put_all([experiment("exp-1")])
    store.assignments.put_all([assignment("user-1", "exp-1", "control")])
    processor = store.operations_container_sharing(
        clock=ManualClock(NOW), processing_settings=ProcessingSettings()
    ).replay_processor()
    return store, processor


LANE = "replay-20261120T100000-00000001"


def item(
    source: str, payload: bytes | dict[str, object], sequence: int = 1, lane: str = LANE
) -> ReplayItem:
    data = json.dumps(payload).encode() if isinstance(payload, dict) else payload
    coordinates = KinesisCoordinates(lane, str(sequence), "pk", NOW.timestamp())
    return ReplayItem(source, RawRecord(coordinates, base64.b64encode(data).decode()))


def counts(store: MemoryBackEnd) -> list[tuple[str, int, int]]:
    return [
        (s.key.metric, s.measures.event_count, s.unique_users)
        for s in store.metrics.snapshots("exp-1", Granularity.DAY)
    ]


def test_replaying_the_same_events_twice_counts_them_once() -> None:
    store, processor = setup()
    items = [item("m1", event_payload(event_id="a")), item("m2", event_payload(event_id="b"), 2)]
    first = processor.replay(items, ReplayOptions())
    second = processor.replay(items, ReplayOptions())
    assert [o.status for o in first.outcomes] == [ReplayStatus.APPLIED, ReplayStatus.APPLIED]
    assert [o.status for o in second.outcomes] == [ReplayStatus.ALREADY_APPLIED] * 2
    assert counts(store) == [("click", 2, 1)]
    assert first.settled_sources() == ["m1", "m2"]


def test_records_still_invalid_are_not_settled_and_say_why() -> None:
    _, processor = setup()
    result = processor.replay([item("m1", b"{broken")], ReplayOptions())
    [outcome] = result.outcomes
    assert outcome.status is ReplayStatus.INVALID
    assert outcome.reason is RejectionReason.INVALID_JSON
    assert result.settled_sources() == []


def test_a_dry_run_validates_without_writing() -> None:
    store, processor = setup()
    result = processor.replay(
        [item("m1", event_payload(event_id="a"))], ReplayOptions(dry_run=True)
    )
    assert [o.status for o in result.outcomes] == [ReplayStatus.VALID]
    assert counts(store) == []
    assert list(store.archive.lines()) == []


def test_a_replay_of_the_archive_does_not_archive_again() -> None:
    store, processor = setup()
    processor.replay([item("line-1", event_payload(event_id="a"))], ReplayOptions(archive=False))
    assert counts(store) == [("click", 1, 1)]
    assert list(store.archive.lines()) == []


def test_replayed_events_are_archived_with_their_enrichment() -> None:
    store, processor = setup()
    processor.replay([item("m1", event_payload(event_id="a"))], ReplayOptions())
    [line] = list(store.archive.lines())
    assert json.loads(line)["_pipeline"]["attributions"][0]["variant_id"] == "control"


def test_replayed_events_are_archived_under_their_run_lane_so_an_archive_replay_can_tell() -> None:
    store, processor = setup()
    processor.replay([item("m1", event_payload(event_id="a"), sequence=7)], ReplayOptions())
    [line] = list(store.archive.lines())
    kinesis = json.loads(line)["_pipeline"]["kinesis"]
    assert (kinesis["shard_id"], kinesis["sequence_number"]) == (LANE, "7")


def test_a_record_that_makes_the_decoder_raise_is_invalid_and_the_others_are_applied() -> None:
    store, processor = setup()
    # A value no Kinesis event hands out (its data is not text): decoding it raises.
    broken = ReplayItem(
        "m2", RawRecord(KinesisCoordinates(LANE, "2", "pk", NOW.timestamp()), cast(str, 12345))
    )
    items = [item("m1", event_payload(event_id="a")), broken, item("m3", event_payload(), 3)]

    result = processor.replay(items, ReplayOptions())

    assert [o.status for o in result.outcomes] == [
        ReplayStatus.APPLIED,
        ReplayStatus.INVALID,
        ReplayStatus.APPLIED,
    ]
    assert result.outcomes[1].reason is RejectionReason.UNPROCESSABLE
    assert "TypeError" in result.outcomes[1].detail
    assert counts(store) == [("click", 2, 1)]
