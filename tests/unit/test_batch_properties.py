"""Rules that hold for every batch, checked on generated batches."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from application.ports import (
    NO_EARLIER_RECORDS,
    Deadline,
    EarlierRecords,
    MetricSnapshot,
    MetricStore,
    WriteReport,
)
from application.process_batch import BatchProcessor, ProcessingSettings
from application.shard_cut import NO_CUT
from domain.metrics import Granularity, MetricDelta
from domain.records import RawRecord
from infrastructure.clock import ManualClock
from tests.containers import MemoryBackEnd
from tests.factories import NOW, assignment, experiment, record_of
from tests.faults.ports import MetricStoreInFront

EXPERIMENTS = ("exp-a", "exp-b", "exp-c")
USERS = tuple(f"user-{i}" for i in range(6))
METRICS = ("exposure", "click", "purchase")


def seeded_back_end() -> MemoryBackEnd:
    store = MemoryBackEnd.empty()
    store.experiments.put_all(experiment(e) for e in EXPERIMENTS)
    store.assignments.put_all(
        assignment(user, exp, "control" if (i + j) % 2 else "treatment")
        for i, user in enumerate(USERS[:-1])
        for j, exp in enumerate(EXPERIMENTS)
        if (i + j) % 3
    )
    return store


@st.composite
def batches(draw: st.DrawFn) -> list[RawRecord]:
    size = draw(st.integers(min_value=0, max_value=40))
    records: list[RawRecord] = []
    for sequence in range(1, size + 1):
        kind = draw(st.sampled_from(["valid", "valid", "valid", "duplicate", "invalid"]))
        if kind == "invalid" or (kind == "duplicate" and not records):
            records.append(record_of(draw(st.sampled_from([b"{", b"[]", b"null", b" "])), sequence))
            continue
        if kind == "duplicate":
            earlier = draw(st.sampled_from(records))
            records.append(
                RawRecord(
                    earlier.coordinates.__class__(
                        earlier.coordinates.shard_id, str(sequence), "pk", NOW.timestamp()
                    ),
                    earlier.data,
                )
            )
            continue
        payload: dict[str, object] = {
            "event_id": f"e-{sequence}",
            "event_type": draw(st.sampled_from(METRICS)),
            "user_id": draw(st.sampled_from(USERS)),
            "timestamp": (NOW - timedelta(minutes=draw(st.integers(0, 60 * 30)))).isoformat(),
        }
        if draw(st.booleans()):
            payload["value"] = draw(st.sampled_from([0.5, 1.25, 19.99, 100]))
        if draw(st.integers(0, 4)) == 0:
            payload["experiment_id"] = draw(st.sampled_from(EXPERIMENTS))
        records.append(record_of(json.dumps(payload).encode(), sequence))
    return records


def processor(store: MemoryBackEnd, metrics: MetricStore | None = None) -> BatchProcessor:
    faulty = {} if metrics is None else {"metric_store_adapter": metrics}
    return store.processor(
        clock=ManualClock(NOW), processing_settings=ProcessingSettings(), **faulty
    )


def all_snapshots(store: MemoryBackEnd, granularity: Granularity) -> list[MetricSnapshot]:
    return [s for e in EXPERIMENTS for s in store.metrics.snapshots(e, granularity)]


@given(batches())
@settings(max_examples=60, deadline=None)
def test_counters_add_up_to_the_attributed_pairs_and_the_distinct_users(
    records: list[RawRecord],
) -> None:
    store = seeded_back_end()
    result = processor(store).process(records)
    archived = [json.loads(line) for line in store.archive.lines()]
    expected_counts: Counter[tuple[str, str, str, Granularity, datetime]] = Counter()
    expected_users: dict[tuple[str, str, str, Granularity, datetime], set[str]] = {}
    for event in archived:
        moment = datetime.fromisoformat(event["timestamp"])
        for a in event["_pipeline"]["attributions"]:
            for granularity in Granularity:
                key = (
                    a["experiment_id"],
                    a["variant_id"],
                    event["event_type"],
                    granularity,
                    granularity.window_start(moment),
                )
                expected_counts[key] += 1
                expected_users.setdefault(key, set()).add(event["user_id"])

    assert result.attributions == sum(expected_counts.values()) // len(Granularity)
    actual = {
        (
            s.key.experiment_id,
            s.key.variant_id,
            s.key.metric,
            s.key.granularity,
            s.key.window_start,
        ): (s.measures.event_count, s.unique_users)
        for granularity in Granularity
        for s in all_snapshots(store, granularity)
    }
    assert actual == {
        key: (count, len(expected_users[key])) for key, count in expected_counts.items()
    }


class SometimesFailingStore(MetricStoreInFront):
    """A real in-memory store behind a switch that refuses some deltas (no effect) this time."""

    def __init__(self, inner: MetricStore, refuse: frozenset[int]) -> None:
        super().__init__(inner)
        self.refuse = refuse

    def apply(
        self,
        deltas: Sequence[MetricDelta],
        deadline: Deadline,
        earlier_records: EarlierRecords = NO_EARLIER_RECORDS,
    ) -> WriteReport:
        unfinished = NO_CUT
        accepted = []
        for index, delta in enumerate(deltas):
            if index in self.refuse:
                unfinished = unfinished.lowered_to(delta.shard_id, delta.first_sequence)
            else:
                accepted.append(delta)
        self.inner.apply(accepted, deadline, earlier_records)
        return WriteReport(unfinished, ("refused",) if unfinished else ())


@given(batches(), st.sets(st.integers(0, 30), max_size=6))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_every_record_ends_in_exactly_one_outcome(
    records: list[RawRecord], refuse: set[int]
) -> None:
    store = seeded_back_end()
    result = processor(store, SometimesFailingStore(store.metrics, frozenset(refuse))).process(
        records
    )
    dead = sum(result.dead_lettered.values())
    assert result.processed + result.duplicates + dead + len(result.failures) == len(records)
    failed = {c.sequence for c in result.failures}
    if failed:
        assert failed == {r.sequence for r in records if r.sequence >= min(failed)}


@given(batches(), st.lists(st.sets(st.integers(0, 30), max_size=6), min_size=1, max_size=4))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_redelivering_from_the_reported_failure_until_done_counts_like_one_clean_pass(
    records: list[RawRecord], refusals: list[set[int]]
) -> None:
    clean = seeded_back_end()
    processor(clean).process(records)

    faulty = seeded_back_end()
    pending = records
    for refuse in [*refusals, set()]:
        result = processor(
            faulty, SometimesFailingStore(faulty.metrics, frozenset(refuse))
        ).process(pending)
        if not result.failures:
            break
        resume = result.failures[0].sequence
        pending = [r for r in records if r.sequence >= resume]
    for granularity in Granularity:
        expected = [
            (s.key, s.measures.event_count, s.measures.value_sum, s.unique_users)
            for s in all_snapshots(clean, granularity)
        ]
        actual = [
            (s.key, s.measures.event_count, s.measures.value_sum, s.unique_users)
            for s in all_snapshots(faulty, granularity)
        ]
        assert actual == expected
