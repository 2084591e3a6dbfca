"""Replay runs against each other: one event is counted once whichever runs bring it, an
interrupted run's events are finished by the next one, and a running one's are left alone."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import timedelta

from application.ports import (
    NO_EARLIER_RECORDS,
    Deadline,
    EarlierRecords,
    MetricStore,
    WriteReport,
)
from application.process_batch import ProcessingSettings
from application.replay import (
    CLAIM_LEASE,
    ReplayItem,
    ReplayOptions,
    ReplayStatus,
    new_lane,
)
from application.shard_cut import ShardCut
from domain.metrics import Granularity, MetricDelta
from domain.records import KinesisCoordinates, RawRecord
from infrastructure.clock import ManualClock
from infrastructure.in_memory.metric_store import InMemoryMetricStore
from tests.containers import MemoryBackEnd
from tests.factories import NOW, assignment, event_payload, experiment
from tests.faults.ports import MetricStoreInFront


class DailyCountersFailOnce(MetricStoreInFront):
    """Applies the hourly counters and leaves the daily ones unfinished, once: a run
    interrupted half-way through an event's counters."""

    def __init__(self, inner: InMemoryMetricStore) -> None:
        super().__init__(inner)
        self.failures_left = 1

    def apply(
        self,
        deltas: Sequence[MetricDelta],
        deadline: Deadline,
        earlier_records: EarlierRecords = NO_EARLIER_RECORDS,
    ) -> WriteReport:
        if self.failures_left == 0:
            return self.inner.apply(deltas, deadline, earlier_records)
        self.failures_left -= 1
        hourly = [d for d in deltas if d.key.granularity is Granularity.HOUR]
        daily = [d for d in deltas if d.key.granularity is Granularity.DAY]
        self.inner.apply(hourly, deadline, earlier_records)
        unfinished = ShardCut.of((d.shard_id, d.first_sequence) for d in daily)
        return WriteReport(unfinished, ("UpdateItem: ProvisionedThroughputExceeded",))


class DiesBetweenMarkersAndCounters(MetricStoreInFront):
    """Writes the users' first-seen markers, then dies before any counter update, for its first
    `deaths` calls: a replay run killed between the two steps of the store's write."""

    def __init__(self, inner: InMemoryMetricStore, deaths: int) -> None:
        super().__init__(inner)
        self.markers = inner.markers
        self.deaths_left = deaths

    def apply(
        self,
        deltas: Sequence[MetricDelta],
        deadline: Deadline,
        earlier_records: EarlierRecords = NO_EARLIER_RECORDS,
    ) -> WriteReport:
        if self.deaths_left == 0:
            return self.inner.apply(deltas, deadline, earlier_records)
        self.deaths_left -= 1
        assert self.markers.mark(deltas, deadline, earlier_records).report.complete
        unfinished = ShardCut.of((d.shard_id, d.first_sequence) for d in deltas)
        return WriteReport(unfinished, ("killed before its counters",))


USERS = {"a": "user-1", "b": "user-2", "c": "user-1", "d": "user-1"}
"""Whose events the tests replay (any other event is user-1's)."""


class World:
    def __init__(self, interrupt_first_write: bool = False, deaths_after_markers: int = 0) -> None:
        self.store = MemoryBackEnd.empty()
        self.store.experiments.put_all([experiment("exp-1")])
        self.store.assignments.put_all(
            [assignment(user, "exp-1", "control") for user in sorted(set(USERS.values()))]
        )
        self.clock = ManualClock(NOW)
        faulty: dict[str, MetricStore] = {}
        if interrupt_first_write:
            faulty["metric_store_adapter"] = DailyCountersFailOnce(self.store.metrics)
        if deaths_after_markers:
            faulty["metric_store_adapter"] = DiesBetweenMarkersAndCounters(
                self.store.metrics, deaths_after_markers
            )
        operations = self.store.operations_container_sharing(
            clock=self.clock, processing_settings=ProcessingSettings(), **faulty
        )
        self.ledger = operations.in_memory_replay_ledger()
        self.processor = operations.replay_processor()

    def run(self, event_ids: Sequence[str], finish: bool = True) -> list[ReplayStatus]:
        """One replay run of these events, under a lane of its own."""
        lane = new_lane(self.clock.now())
        self.ledger.start_run(lane)
        items = [
            ReplayItem(f"{lane}:{n}", record(lane, n, event_id))
            for n, event_id in enumerate(event_ids, start=1)
        ]
        result = self.processor.replay(items, ReplayOptions())
        if finish:
            self.ledger.finish_run(lane)
        return [outcome.status for outcome in result.outcomes]

    def counts(self) -> dict[Granularity, list[int]]:
        return {
            granularity: [
                s.measures.event_count for s in self.store.metrics.snapshots("exp-1", granularity)
            ]
            for granularity in Granularity
        }

    def unique_users(self) -> dict[Granularity, list[int]]:
        return {
            granularity: [
                s.measures.unique_users for s in self.store.metrics.snapshots("exp-1", granularity)
            ]
            for granularity in Granularity
        }

    def archived_event_ids(self) -> list[str]:
        return sorted(str(json.loads(line)["event_id"]) for line in self.store.archive.lines())


def record(lane: str, sequence: int, event_id: str) -> RawRecord:
    user_id = USERS.get(event_id, "user-1")
    data = json.dumps(event_payload(event_id=event_id, user_id=user_id)).encode()
    coordinates = KinesisCoordinates(lane, str(sequence), "pk", NOW.timestamp())
    return RawRecord(coordinates, base64.b64encode(data).decode())


def test_two_runs_of_the_same_events_count_them_once_and_archive_them_once() -> None:
    world = World()

    assert world.run(["a", "b"]) == [ReplayStatus.APPLIED] * 2
    assert world.run(["b", "a", "c"]) == [
        ReplayStatus.ALREADY_APPLIED,
        ReplayStatus.ALREADY_APPLIED,
        ReplayStatus.APPLIED,
    ]

    assert world.counts() == {
        Granularity.HOUR: [3],
        Granularity.DAY: [3],
        Granularity.EXPERIMENT: [3],
    }
    assert world.archived_event_ids() == ["a", "b", "c"]


def test_an_interrupted_run_is_finished_by_the_next_for_what_it_had_not_applied() -> None:
    world = World(interrupt_first_write=True)

    first = world.run(["a"])
    assert first == [ReplayStatus.FAILED]
    assert world.counts() == {
        Granularity.HOUR: [1],
        Granularity.DAY: [],
        Granularity.EXPERIMENT: [],
    }

    assert world.run(["a"]) == [ReplayStatus.APPLIED]
    # The hourly counter the first run applied is not applied again.
    assert world.counts() == {
        Granularity.HOUR: [1],
        Granularity.DAY: [1],
        Granularity.EXPERIMENT: [1],
    }
    assert world.run(["a"]) == [ReplayStatus.ALREADY_APPLIED]
    assert world.counts() == {
        Granularity.HOUR: [1],
        Granularity.DAY: [1],
        Granularity.EXPERIMENT: [1],
    }
    assert world.archived_event_ids() == ["a"]


def test_the_events_of_a_run_still_going_are_left_to_it_until_its_lease_runs_out() -> None:
    world = World(interrupt_first_write=True)
    # A run that claimed "a", applied part of it and never said it finished (killed).
    assert world.run(["a"], finish=False) == [ReplayStatus.FAILED]

    world.clock.advance(CLAIM_LEASE - timedelta(seconds=1))
    assert world.run(["a"]) == [ReplayStatus.FAILED]
    assert world.counts() == {
        Granularity.HOUR: [1],
        Granularity.DAY: [],
        Granularity.EXPERIMENT: [],
    }

    world.clock.advance(timedelta(seconds=1))
    assert world.run(["a"]) == [ReplayStatus.APPLIED]
    assert world.counts() == {
        Granularity.HOUR: [1],
        Granularity.DAY: [1],
        Granularity.EXPERIMENT: [1],
    }


def test_a_run_replaying_its_own_coordinates_again_adds_only_what_is_missing() -> None:
    # An archive replay sends replayed events back under the coordinates they were counted
    # under: on a healthy store nothing changes.
    world = World()
    lane = new_lane(world.clock.now())
    items = [ReplayItem("line-1", record(lane, 1, "a")), ReplayItem("line-2", record(lane, 2, "b"))]
    first = world.processor.replay(items, ReplayOptions())
    again = world.processor.replay(items, ReplayOptions(archive=False))

    assert [o.status for o in first.outcomes] == [ReplayStatus.APPLIED] * 2
    assert [o.status for o in again.outcomes] == [ReplayStatus.ALREADY_APPLIED] * 2
    assert world.counts() == {
        Granularity.HOUR: [2],
        Granularity.DAY: [2],
        Granularity.EXPERIMENT: [2],
    }


def every_window(count: int) -> dict[Granularity, list[int]]:
    return {granularity: [count] for granularity in Granularity}


NOTHING: dict[Granularity, list[int]] = {granularity: [] for granularity in Granularity}


def test_a_run_taking_over_counts_the_users_whose_markers_the_dead_run_wrote_once() -> None:
    world = World(deaths_after_markers=1)
    assert world.run(["a", "b", "c"]) == [ReplayStatus.FAILED] * 3
    assert world.counts() == NOTHING

    # Its first record of user-1 is a new event: user-1's marker is the one "a" wrote in the
    # dead run, which this run took over as its third.
    assert world.run(["d", "b", "a", "c"]) == [ReplayStatus.APPLIED] * 4
    assert world.run(["a", "b", "c", "d"]) == [ReplayStatus.ALREADY_APPLIED] * 4

    assert world.counts() == every_window(4)
    assert world.unique_users() == every_window(2)


def test_a_run_taking_over_from_one_that_took_over_recognises_the_first_runs_markers() -> None:
    world = World(deaths_after_markers=2)
    assert world.run(["a", "b"]) == [ReplayStatus.FAILED] * 2
    # The second run finds the markers, and dies before its counters too, killed: its claims
    # are taken over once the lease is out.
    assert world.run(["b", "a"], finish=False) == [ReplayStatus.FAILED] * 2
    world.clock.advance(CLAIM_LEASE)

    assert world.run(["a", "b"]) == [ReplayStatus.APPLIED] * 2

    assert world.counts() == every_window(2)
    assert world.unique_users() == every_window(2)


def test_a_marker_a_dead_run_wrote_counts_for_its_event_and_never_for_another_events_record() -> (
    None
):
    world = World(deaths_after_markers=1)
    assert world.run(["a"]) == [ReplayStatus.FAILED]

    # "c" is user-1's too, claimed afresh: the marker "a" wrote in the dead run is not its own.
    assert world.run(["c"]) == [ReplayStatus.APPLIED]
    assert world.counts() == every_window(1)
    assert world.unique_users() == every_window(0)

    assert world.run(["a"]) == [ReplayStatus.APPLIED]
    assert world.counts() == every_window(2)
    assert world.unique_users() == every_window(1)
