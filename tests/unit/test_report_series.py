"""The report over time: the window grid (counted, gaps, the window in progress) and the
cumulative per-variant statistics, checked against a direct count for all inputs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from application.ports import MetricSnapshot
from application.report_series import cumulative_series, window_grid
from application.reporting import build_report
from domain.experiments import Experiment, ExperimentStatus, Variant
from domain.metrics import Granularity, Measures, MetricKey
from domain.statistics import EXPOSURE_METRIC, wilson_interval

HOUR = datetime(2026, 11, 20, 10, tzinfo=UTC)
EXPERIMENT = Experiment(
    experiment_id="exp-1",
    name="Checkout",
    status=ExperimentStatus.RUNNING,
    variants=(Variant(variant_id="control", weight=3), Variant(variant_id="treatment", weight=1)),
)


def _snapshot(variant_id: str, metric: str, hour: int, users: frozenset[str]) -> MetricSnapshot:
    key = MetricKey("exp-1", variant_id, metric, Granularity.HOUR, HOUR + timedelta(hours=hour))
    return MetricSnapshot(key, Measures(len(users)), users)


def test_the_grid_has_every_window_and_knows_which_were_counted() -> None:
    windows = [
        _snapshot("control", "click", 0, frozenset({"a"})),
        _snapshot("treatment", EXPOSURE_METRIC, 1, frozenset({"b"})),
        _snapshot("control", "click", 3, frozenset({"a"})),
    ]

    grid = window_grid(windows, Granularity.HOUR)

    assert grid.starts == tuple(HOUR + timedelta(hours=h) for h in range(4))
    assert grid.counted == (True, True, False, True)
    assert grid.partial(HOUR + timedelta(hours=3, minutes=20)) == 3
    assert grid.partial(HOUR + timedelta(hours=4)) is None


def test_a_day_grid_steps_by_days() -> None:
    key = MetricKey("exp-1", "control", "click", Granularity.DAY, HOUR.replace(hour=0))
    later = MetricKey("exp-1", "control", "click", Granularity.DAY, key.window_start + timedelta(2))
    windows = [
        MetricSnapshot(key, Measures(1), frozenset({"a"})),
        MetricSnapshot(later, Measures(1), frozenset({"a"})),
    ]

    grid = window_grid(windows, Granularity.DAY)

    assert grid.counted == (True, False, True)


def test_the_exposure_share_is_against_the_configured_weight() -> None:
    windows = [
        _snapshot("control", EXPOSURE_METRIC, 0, frozenset({"a", "b", "c"})),
        _snapshot("treatment", EXPOSURE_METRIC, 0, frozenset({"d"})),
        _snapshot("treatment", EXPOSURE_METRIC, 1, frozenset({"d", "e"})),
    ]
    report = build_report("exp-1", EXPERIMENT, windows, Granularity.HOUR)

    _, series = cumulative_series(report, EXPOSURE_METRIC)

    shares = {s.variant_id: s for s in series}
    assert shares["control"].expected == pytest.approx(0.75)
    assert shares["treatment"].expected == pytest.approx(0.25)
    assert [(p.successes, p.trials) for p in shares["treatment"].points] == [(1, 4), (2, 5)]
    assert shares["treatment"].points[1].interval == wilson_interval(2, 5)


users = st.frozensets(st.sampled_from("abcdefghij"), min_size=1, max_size=10)


@given(
    counters=st.lists(
        st.tuples(
            st.sampled_from(["control", "treatment"]),
            st.sampled_from([EXPOSURE_METRIC, "conversion"]),
            st.integers(min_value=0, max_value=8),
            users,
        ),
        unique_by=lambda c: (c[0], c[1], c[2]),
        min_size=1,
        max_size=30,
    )
)
def test_a_cumulative_point_is_the_report_of_the_range_up_to_its_window(
    counters: list[tuple[str, str, int, frozenset[str]]],
) -> None:
    windows = [_snapshot(v, m, h, u) for v, m, h, u in counters]
    report = build_report("exp-1", EXPERIMENT, windows, Granularity.HOUR)

    grid, series = cumulative_series(report, "conversion")

    for index, start in enumerate(grid.starts):

        def users_of(variant_id: str, metric: str, until: datetime = start) -> set[str]:
            return {
                user
                for v, m, h, u in counters
                if (v, m) == (variant_id, metric) and HOUR + timedelta(hours=h) <= until
                for user in u
            }

        for variant in series:
            exposed = users_of(variant.variant_id, EXPOSURE_METRIC)
            converted = users_of(variant.variant_id, "conversion") & exposed
            point = variant.points[index]
            assert (point.successes, point.trials) == (len(converted), len(exposed))
            assert point.interval == (
                wilson_interval(len(converted), len(exposed)) if exposed else None
            )
        assert grid.counted[index] == any(HOUR + timedelta(hours=c[2]) == start for c in counters)
