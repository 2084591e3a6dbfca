"""An archive replay rebuilds counters as the stream counted them: each event for the variants
its archive line records, whatever the assignments and experiments say now."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence

import pytest

from application.enrichment import ArchivedAttributions
from application.process_batch import ProcessingSettings
from application.replay import ReplayItem, ReplayOptions, ReplayStatus
from domain.archiving import ArchiveLineError, archived_record_from_line, record_from_archive_line
from domain.events import AcceptedColumns
from domain.experiments import ExperimentStatus
from domain.metrics import Granularity, Measures, MetricKey
from domain.records import KinesisCoordinates, RawRecord
from infrastructure.clock import ManualClock
from infrastructure.in_memory.metric_store import InMemoryMetricStore
from operations.cli.replay_sources import ReplaySummary, in_stream_order, replay_archive
from tests.containers import MemoryBackEnd
from tests.factories import NOW, assignment, event_payload, experiment, record_of

Counters = dict[tuple[Granularity, MetricKey], Measures]

EVENTS = [
    event_payload(event_id="a", user_id="user-1"),
    event_payload(event_id="b", user_id="user-1", event_type="purchase", value=12.5),
    event_payload(event_id="c", user_id="user-2"),
    event_payload(event_id="d", user_id="user-3"),  # assigned to nothing: unattributed
]


class World:
    """A deployment whose stream counted `EVENTS` (user-1 in control, user-2 in treatment of
    exp-1), and whose counters can be lost (a table restored from a backup taken before)."""

    def __init__(self) -> None:
        self.store = MemoryBackEnd.empty()
        self.store.experiments.put_all([experiment("exp-1")])
        self.store.assignments.put_all(
            [assignment("user-1", "exp-1", "control"), assignment("user-2", "exp-1", "treatment")]
        )
        self.clock = ManualClock(NOW)
        stream = self.store.processor(clock=self.clock)
        records = [record_of(event, sequence) for sequence, event in enumerate(EVENTS, start=1)]
        assert stream.process(records).processed == len(EVENTS)
        self.counted_by_stream = counters(self.store.metrics)
        self.table = self.store.metrics

    def lose_the_counters(self) -> None:
        """The table restored from a backup taken before the stream counted anything."""
        self.table = InMemoryMetricStore()

    def replay_the_archive(self) -> ReplaySummary:
        operations = self.store.operations_container_sharing(
            clock=self.clock,
            processing_settings=ProcessingSettings(),
            in_memory_metric_store=self.table,
        )
        archived = in_stream_order(archived_record_from_line(line) for line in self.lines())
        summary = ReplaySummary("archive", dry_run=False)
        replay_archive(
            operations.archive_replay_processor,
            operations.replay_processor,
            archived,
            summary,
            batch_size=500,
            settings=ProcessingSettings(),
        )
        return summary

    def lines(self) -> list[bytes]:
        return list(self.store.archive.lines())


def counters(store: InMemoryMetricStore) -> Counters:
    return {
        (granularity, snapshot.key): snapshot.measures
        for experiment_id in store.experiment_ids()
        for granularity in Granularity
        for snapshot in store.snapshots(experiment_id, granularity)
    }


def variants_counted(store: InMemoryMetricStore) -> set[str]:
    return {key.variant_id for _, key in counters(store)}


def test_an_archive_replay_after_the_experiment_stopped_rebuilds_the_counters_as_they_were() -> (
    None
):
    world = World()
    world.store.experiments.put_all([experiment("exp-1", ExperimentStatus.COMPLETED)])
    world.lose_the_counters()
    assert counters(world.table) == {}

    summary = world.replay_the_archive()

    assert counters(world.table) == world.counted_by_stream
    assert len(world.counted_by_stream) > 4
    assert summary.outcomes == {"applied": 3, "unattributed": 1}


def test_a_user_re_assigned_after_the_event_is_counted_again_under_the_archived_variant() -> None:
    world = World()
    world.store.assignments.put_all(
        [assignment("user-1", "exp-1", "treatment", assigned_at=NOW), assignment("user-2")]
    )
    world.lose_the_counters()

    world.replay_the_archive()

    assert counters(world.table) == world.counted_by_stream
    assert variants_counted(world.table) == {"control", "treatment"}


def test_an_event_archived_unattributed_counts_nothing_even_once_its_user_is_assigned() -> None:
    world = World()
    early = NOW.replace(year=2025)
    world.store.assignments.put_all([assignment("user-3", "exp-1", "control", early)])
    world.lose_the_counters()

    summary = world.replay_the_archive()

    assert counters(world.table) == world.counted_by_stream
    assert summary.outcomes["unattributed"] == 1


def test_an_archive_replay_onto_a_healthy_table_adds_nothing() -> None:
    world = World()
    world.store.experiments.put_all([experiment("exp-1", ExperimentStatus.COMPLETED)])

    summary = world.replay_the_archive()

    assert counters(world.table) == world.counted_by_stream
    assert summary.outcomes == {"already_applied": 3, "unattributed": 1}


def test_events_an_earlier_replay_archived_are_counted_again_under_their_archived_variant() -> None:
    world = World()
    replayer = world.store.operations_container_sharing(
        clock=world.clock, processing_settings=ProcessingSettings()
    ).replay_processor()
    lane = "replay-20261120T100000-00000001"
    data = json.dumps(event_payload(event_id="e", user_id="user-2")).encode()
    coordinates = KinesisCoordinates(lane, "1", "pk", NOW.timestamp())
    replayed = RawRecord(coordinates, base64.b64encode(data).decode())
    result = replayer.replay([ReplayItem("letter-1", replayed)], ReplayOptions())
    assert [o.status for o in result.outcomes] == [ReplayStatus.APPLIED]
    counted = counters(world.store.metrics)
    world.store.assignments.put_all([assignment("user-2", "exp-1", "control", NOW)])
    world.lose_the_counters()

    summary = world.replay_the_archive()

    assert counters(world.table) == counted
    assert summary.outcomes == {"applied": 4, "unattributed": 1}


def test_an_archive_line_gives_back_the_variants_it_was_counted_for_in_order() -> None:
    world = World()
    by_event = {
        json.loads(base64.b64decode(a.record.data))["event_id"]: a
        for a in map(archived_record_from_line, world.lines())
    }

    assert by_event["a"].variants == (("exp-1", "control"),)
    assert by_event["c"].variants == (("exp-1", "treatment"),)
    assert by_event["d"].variants == ()
    assert by_event["a"].elapsed_seconds == (86_400.0 - 1_800.0,)


def _line(attributions: str) -> bytes:
    return (
        b'{"event_id":"e1","event_type":"click","user_id":"u1","timestamp":"2026-11-20T10:00:00Z",'
        b'"_pipeline":{' + attributions.encode() + b'"kinesis":{"shard_id":"shardId-1",'
        b'"sequence_number":"7","partition_key":"u1","approximate_arrival_timestamp":1.5},'
        b'"archive_schema_version":"1"}}'
    )


@pytest.mark.parametrize(
    "attributions",
    [
        "",
        '"attributions":{},',
        '"attributions":[{"experiment_id":"exp-1"}],',
        '"attributions":[{"experiment_id":1,"variant_id":"a","time_since_assignment_seconds":1}],',
    ],
)
def test_a_line_whose_attributions_cannot_be_read_is_not_one_this_pipeline_wrote(
    attributions: str,
) -> None:
    with pytest.raises(ArchiveLineError):
        archived_record_from_line(_line(attributions))
    # Its record alone still reads, as it always did.
    assert record_from_archive_line(_line(attributions)).sequence == 7


def test_archived_attributions_count_a_record_they_were_not_built_from_for_nothing() -> None:
    line = _line(
        '"attributions":[{"experiment_id":"exp-1","variant_id":"b",'
        '"time_since_assignment_seconds":2.5}],'
    )
    attributions = ArchivedAttributions([archived_record_from_line(line)])
    columns = _columns([("shardId-1", 7), ("shardId-1", 8), ("shardId-2", 7)])

    matches = attributions.match(columns)

    assert matches.variants == [(("exp-1", "b"),), (), ()]
    assert matches.elapsed_seconds == [(2.5,), (), ()]


def _columns(coordinates: Sequence[tuple[str, int]]) -> AcceptedColumns:
    columns = AcceptedColumns()
    columns.coordinates.extend(
        KinesisCoordinates(shard, str(sequence), "pk", 1.0) for shard, sequence in coordinates
    )
    return columns
