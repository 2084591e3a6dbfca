"""UNIQUE_USERS=sketch through the product's container: the batch adds users to sketches instead
of writing first-seen markers, and the report estimates distinct users from them, close to the
exact report of the same events."""

from __future__ import annotations

import pytest

from application.reporting import UsersCounted, read_report
from domain.metrics import Granularity
from infrastructure.in_memory.unique_user_markers import InMemoryUniqueUserMarkers
from infrastructure.sketched_unique_users import UserSetsNotKeptError
from operations.synthetic.workload import WorkloadSpec, generate
from tests.containers import MemoryBackEnd, memory_settings

WORKLOAD = generate(WorkloadSpec(events=6_000, experiments=2, users=3_000, seed=5))
ERROR = 0.05
"""Per count, well beyond the sketch's measured 95th percentile (docs/performance.md): the
counts here are small, where a CPC sketch is nearly exact."""


def processed(unique_users: str) -> MemoryBackEnd:
    back_end = MemoryBackEnd.empty(memory_settings(unique_users=unique_users))
    back_end.experiments.put_all(WORKLOAD.experiments)
    back_end.assignments.put_all(WORKLOAD.assignments)
    back_end.processor().process(WORKLOAD.records())
    return back_end


@pytest.fixture(scope="module")
def exact() -> MemoryBackEnd:
    return processed("exact")


@pytest.fixture(scope="module")
def sketched() -> MemoryBackEnd:
    return processed("sketch")


def test_sketch_mode_writes_no_markers_and_stores_no_counts(sketched: MemoryBackEnd) -> None:
    markers = sketched.container.in_memory_unique_user_markers()
    assert isinstance(markers, InMemoryUniqueUserMarkers)
    snapshots = sketched.metrics.snapshots("exp-00", Granularity.DAY)
    assert snapshots
    assert all(s.measures.unique_users == 0 for s in snapshots)
    assert markers.users([s.key for s in snapshots]) == {s.key: frozenset() for s in snapshots}
    with pytest.raises(UserSetsNotKeptError):
        sketched.metrics.snapshots("exp-00", Granularity.DAY, user_sets=True)


@pytest.mark.parametrize("granularity", [Granularity.HOUR, Granularity.DAY])
def test_the_sketched_report_is_within_the_error_of_the_exact_one(
    exact: MemoryBackEnd, sketched: MemoryBackEnd, granularity: Granularity
) -> None:
    truth = read_report(exact.metrics, exact.experiments, "exp-00", granularity)
    estimate = read_report(
        sketched.metrics,
        sketched.experiments,
        "exp-00",
        granularity,
        sketches=sketched.container.user_sketches(),
    )

    assert estimate.users_counted is UsersCounted.SKETCHES
    assert [w.measures.event_count for w in estimate.windows] == [
        w.measures.event_count for w in truth.windows
    ]
    for mine, right in zip(estimate.windows, truth.windows, strict=True):
        assert mine.unique_users == pytest.approx(right.unique_users, rel=ERROR, abs=2)
    for mine_total, right_total in zip(estimate.totals, truth.totals, strict=True):
        assert (mine_total.measures.event_count, mine_total.measures.value_sum) == (
            right_total.measures.event_count,
            right_total.measures.value_sum,
        )
        assert mine_total.unique_users == pytest.approx(right_total.unique_users, rel=ERROR)
    for mine_rate, right_rate in zip(estimate.rates, truth.rates, strict=True):
        assert (mine_rate.variant_id, mine_rate.metric) == (
            right_rate.variant_id,
            right_rate.metric,
        )
        assert mine_rate.exposed_users == pytest.approx(right_rate.exposed_users, rel=ERROR)
        assert mine_rate.users == pytest.approx(right_rate.users, rel=3 * ERROR, abs=3)


def test_a_redelivered_batch_changes_no_estimate(sketched: MemoryBackEnd) -> None:
    sketches = sketched.container.user_sketches()
    keys = [s.key for s in sketched.metrics.snapshots("exp-00", Granularity.DAY)]
    before = sketches.estimates(keys)

    sketched.processor().process(WORKLOAD.records())

    assert sketches.estimates(keys) == before
