"""The report use case: windows in range, totals per variant and metric over distinct users, and
the statistics of each variant against the control."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from application.ports import MetricSnapshot
from application.reporting import UnknownControlVariantError, build_report
from domain.experiments import Experiment, ExperimentStatus, Variant
from domain.metrics import Granularity, Measures, MetricKey
from domain.statistics import EXPOSURE_METRIC, DistinctUsers, wilson_interval

DAY = datetime(2026, 11, 20, tzinfo=UTC)


def _experiment(weights: Mapping[str, float]) -> Experiment:
    return Experiment(
        experiment_id="exp-1",
        name="Checkout",
        status=ExperimentStatus.RUNNING,
        variants=tuple(Variant(variant_id=v, weight=w) for v, w in weights.items()),
    )


def _users(count: int, prefix: str = "user") -> frozenset[str]:
    return frozenset(f"{prefix}-{i}" for i in range(count))


def _snapshot(
    variant_id: str,
    metric: str,
    users: int | frozenset[str],
    events: int | None = None,
    value_sum: str = "0",
    value_count: int = 0,
    window_start: datetime = DAY,
    granularity: Granularity = Granularity.DAY,
) -> MetricSnapshot:
    """A counter whose users are `users`, or, given a count, users `user-0` onwards (the same
    users in every window and metric of a variant: give sets to tell them apart)."""
    key = MetricKey("exp-1", variant_id, metric, granularity, window_start)
    user_ids = _users(users, variant_id) if isinstance(users, int) else users
    return MetricSnapshot(
        key,
        Measures(events if events is not None else len(user_ids), Decimal(value_sum), value_count),
        user_ids,
    )


def test_the_report_computes_rates_lift_and_means_per_variant() -> None:
    snapshots = [
        _snapshot("control", EXPOSURE_METRIC, 1_000),
        _snapshot("control", "conversion", 100, events=130),
        _snapshot("control", "purchase", 40, events=50, value_sum="1000.50", value_count=50),
        _snapshot("treatment", EXPOSURE_METRIC, 1_000),
        _snapshot("treatment", "conversion", 120, events=150),
    ]

    report = build_report(
        "exp-1", _experiment({"control": 1, "treatment": 1}), snapshots, Granularity.DAY
    )

    totals = {(t.variant_id, t.metric): t for t in report.totals}
    assert totals[("control", "purchase")].measures.value_mean == Decimal("20.01")
    assert totals[("control", "conversion")].measures.event_count == 130
    rates = {(r.variant_id, r.metric): r for r in report.rates}
    treatment = rates[("treatment", "conversion")]
    assert treatment.rate == pytest.approx(0.12)
    assert treatment.lift == pytest.approx(0.2)
    assert treatment.difference == pytest.approx(0.02)
    assert treatment.difference_interval is not None
    assert treatment.difference_interval.low < 0.02 < treatment.difference_interval.high
    assert rates[("control", "conversion")].lift is None
    assert rates[("treatment", "purchase")].rate == 0.0
    assert report.control_variant == "control"
    assert report.sample_ratio is not None
    assert report.sample_ratio.mismatch is False


def test_a_user_active_in_several_windows_counts_once_over_the_range() -> None:
    snapshots = [
        _snapshot("control", EXPOSURE_METRIC, _users(10), window_start=DAY),
        _snapshot("control", EXPOSURE_METRIC, _users(12), window_start=DAY + timedelta(days=1)),
    ]

    report = build_report("exp-1", None, snapshots, Granularity.DAY)

    assert report.totals[0].unique_users == 12
    assert report.totals[0].measures.event_count == 22
    assert report.totals[0].windows == 2
    assert report.sample_ratio is None


def test_the_report_keeps_only_windows_in_its_range_and_granularity() -> None:
    hour = datetime(2026, 11, 20, 10, tzinfo=UTC)
    snapshots = [
        _snapshot("control", "click", 1, window_start=hour, granularity=Granularity.HOUR),
        _snapshot(
            "control",
            "click",
            2,
            window_start=hour + timedelta(hours=1),
            granularity=Granularity.HOUR,
        ),
        _snapshot(
            "control",
            "click",
            4,
            window_start=hour + timedelta(hours=2),
            granularity=Granularity.HOUR,
        ),
        _snapshot("control", "click", 8, window_start=DAY),
    ]

    report = build_report(
        "exp-1",
        None,
        snapshots,
        Granularity.HOUR,
        hour + timedelta(hours=1),
        hour + timedelta(hours=2),
    )

    assert [s.unique_users for s in report.windows] == [2]


def test_users_who_did_the_metric_without_an_exposure_are_left_out_of_the_rate() -> None:
    snapshots = [
        _snapshot("control", EXPOSURE_METRIC, _users(5)),
        _snapshot("control", "click", _users(3) | _users(5, "unexposed")),
    ]

    report = build_report("exp-1", None, snapshots, Granularity.DAY)

    (rate,) = report.rates
    assert (rate.users, rate.exposed_users, rate.unexposed_users) == (3, 5, 5)
    assert rate.rate == pytest.approx(0.6)
    assert rate.interval == wilson_interval(3, 5)


def test_an_exposure_and_a_conversion_on_different_days_make_one_converted_user() -> None:
    snapshots = [
        _snapshot("control", EXPOSURE_METRIC, frozenset({"a", "b"}), window_start=DAY),
        _snapshot("control", "conversion", frozenset({"a"}), window_start=DAY + timedelta(days=3)),
        _snapshot("treatment", EXPOSURE_METRIC, frozenset({"c", "d"}), window_start=DAY),
        _snapshot("treatment", EXPOSURE_METRIC, frozenset({"c"}), window_start=DAY + timedelta(1)),
    ]

    report = build_report("exp-1", None, snapshots, Granularity.DAY)

    rates = {r.variant_id: r for r in report.rates}
    assert (rates["control"].users, rates["control"].exposed_users) == (1, 2)
    assert (rates["treatment"].users, rates["treatment"].exposed_users) == (0, 2)
    assert rates["treatment"].difference == pytest.approx(-0.5)


def test_the_control_can_be_any_variant_and_must_be_one_of_them() -> None:
    snapshots = [
        _snapshot("a", EXPOSURE_METRIC, 100),
        _snapshot("a", "conversion", 10),
        _snapshot("b", EXPOSURE_METRIC, 100),
        _snapshot("b", "conversion", 20),
    ]
    experiment = _experiment({"a": 1, "b": 1})

    report = build_report("exp-1", experiment, snapshots, Granularity.DAY, control_variant="a")

    assert report.control_variant == "a"
    rates = {r.variant_id: r for r in report.rates}
    assert rates["b"].lift == pytest.approx(1.0)
    assert rates["a"].lift is None
    with pytest.raises(UnknownControlVariantError, match="has no variant 'control'"):
        build_report("exp-1", experiment, snapshots, Granularity.DAY)


def test_an_experiment_with_no_variant_at_all_has_no_control_and_no_error() -> None:
    report = build_report("exp-1", None, [], Granularity.DAY)

    assert report.control_variant is None
    assert report.rates == ()


@given(
    windows=st.lists(
        st.tuples(
            st.sampled_from(["control", "treatment"]),
            st.sampled_from([EXPOSURE_METRIC, "click", "purchase"]),
            st.integers(min_value=0, max_value=23),
            st.frozensets(st.sampled_from([f"user-{i}" for i in range(30)]), max_size=30),
            st.integers(min_value=0, max_value=100_000),
        ),
        unique_by=lambda w: (w[0], w[1], w[2]),
        max_size=40,
    )
)
def test_report_totals_count_events_and_distinct_users_over_the_windows(
    windows: list[tuple[str, str, int, frozenset[str], int]],
) -> None:
    hour = datetime(2026, 11, 20, tzinfo=UTC)
    snapshots = [
        _snapshot(
            v,
            m,
            users,
            events=len(users) + extra,
            window_start=hour + timedelta(hours=h),
            granularity=Granularity.HOUR,
        )
        for v, m, h, users, extra in windows
    ]

    report = build_report(
        "exp-1", _experiment({"control": 1, "treatment": 1}), snapshots, Granularity.HOUR
    )

    def users_of(variant_id: str, metric: str) -> set[str]:
        return {
            user
            for s in snapshots
            if (s.key.variant_id, s.key.metric) == (variant_id, metric)
            for user in s.user_ids or ()
        }

    for total in report.totals:
        mine = [
            s
            for s in snapshots
            if (s.key.variant_id, s.key.metric) == (total.variant_id, total.metric)
        ]
        assert total.measures.event_count == sum(s.measures.event_count for s in mine)
        assert total.unique_users == len(users_of(total.variant_id, total.metric))
        assert total.windows == len(mine)
    for rate in report.rates:
        exposed = users_of(rate.variant_id, EXPOSURE_METRIC)
        did = users_of(rate.variant_id, rate.metric)
        assert (rate.users, rate.exposed_users) == (len(did & exposed), len(exposed))
        assert rate.unexposed_users == len(did - exposed)
        if rate.interval is not None and rate.rate is not None:
            assert rate.interval.low <= rate.rate <= rate.interval.high


def test_windows_with_events_but_no_unique_users_are_named() -> None:
    with_users = _snapshot("control", EXPOSURE_METRIC, 10)
    empty_set = _snapshot("control", "click", frozenset(), events=3)
    no_events = _snapshot("green", "click", frozenset(), events=0)
    stored_none = MetricSnapshot(
        MetricKey("exp-1", "green", EXPOSURE_METRIC, Granularity.DAY, DAY), Measures(5)
    )
    stored_some = MetricSnapshot(
        MetricKey("exp-1", "green", "view", Granularity.DAY, DAY), Measures(5, unique_users=2)
    )

    from_sets = build_report("exp-1", None, [with_users, empty_set, no_events], Granularity.DAY)
    from_counts = build_report(
        "exp-1",
        None,
        [stored_none, stored_some],
        Granularity.DAY,
        control_variant="green",
        stored=DistinctUsers({("green", EXPOSURE_METRIC): 0, ("green", "view"): 2}, {}),
    )

    assert [w.key for w in from_sets.windows_without_users] == [empty_set.key]
    assert [w.key for w in from_counts.windows_without_users] == [stored_none.key]
