"""Experiment statistics: worked examples against published values, invariants for all inputs,
and the same numbers from statsmodels and SciPy."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import chi2, chisquare
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

from domain.experiments import Experiment, ExperimentStatus, Variant
from domain.statistics import (
    SRM_P_VALUE_THRESHOLD,
    chi_square_survival,
    newcombe_difference_interval,
    sample_ratio_check,
    wilson_interval,
)


def _experiment(weights: Mapping[str, float]) -> Experiment:
    return Experiment(
        experiment_id="exp-1",
        name="Checkout",
        status=ExperimentStatus.RUNNING,
        variants=tuple(Variant(variant_id=v, weight=w) for v, w in weights.items()),
    )


# Newcombe (1998), "Two-sided confidence intervals for the single proportion", Stat Med 17:857,
# table I, method 3 (Wilson score without continuity correction).
@pytest.mark.parametrize(
    ("successes", "trials", "low", "high"),
    [
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_interval_matches_the_published_examples(
    successes: int, trials: int, low: float, high: float
) -> None:
    interval = wilson_interval(successes, trials)

    assert interval.low == pytest.approx(low, abs=5e-5)
    assert interval.high == pytest.approx(high, abs=5e-5)


def test_newcombe_difference_interval_matches_the_published_example() -> None:
    # Newcombe (1998), "Interval estimation for the difference between independent
    # proportions", Stat Med 17:873, example (a) 56/70 - 48/80, method 10: 0.0524 to 0.3339.
    interval = newcombe_difference_interval(48, 80, 56, 70)

    assert interval.low == pytest.approx(0.0524, abs=5e-5)
    assert interval.high == pytest.approx(0.3339, abs=5e-5)


@pytest.mark.parametrize(
    ("statistic", "dof", "p_value"),
    [
        (3.841458820694124, 1, 0.05),
        (5.991464547107979, 2, 0.05),
        (16.26623619623813, 3, 0.001),
        (18.46682695290317, 4, 0.001),
        (20.515005652432873, 5, 0.001),
        (0.0, 3, 1.0),
        (2.0, 2, math.exp(-1)),
    ],
)
def test_chi_square_survival_matches_the_critical_values_table(
    statistic: float, dof: int, p_value: float
) -> None:
    assert chi_square_survival(statistic, dof) == pytest.approx(p_value, rel=1e-9)


def test_a_balanced_split_passes_the_sample_ratio_check() -> None:
    check = sample_ratio_check(
        _experiment({"control": 1, "treatment": 1}), {"control": 5_000, "treatment": 5_050}
    )

    assert check.mismatch is False
    assert check.p_value is not None
    assert check.p_value > 0.5


def test_a_broken_split_is_flagged_as_sample_ratio_mismatch() -> None:
    # 50/50 configured, 5000 vs 5400 exposed: chi-square 15.38, p about 8.8e-5.
    check = sample_ratio_check(
        _experiment({"control": 1, "treatment": 1}), {"control": 5_000, "treatment": 5_400}
    )

    assert check.statistic == pytest.approx(2 * 200**2 / 5_200, rel=1e-9)
    assert check.p_value == pytest.approx(8.79e-5, rel=1e-2)
    assert check.mismatch is True


def test_the_sample_ratio_check_uses_the_configured_weights() -> None:
    weights = {"control": 2, "treatment": 1}

    check = sample_ratio_check(_experiment(weights), {"control": 6_000, "treatment": 3_000})

    assert check.expected == {"control": 6_000.0, "treatment": 3_000.0}
    assert check.statistic == 0.0
    assert check.mismatch is False


def test_exposures_in_an_unconfigured_variant_are_a_mismatch() -> None:
    check = sample_ratio_check(
        _experiment({"control": 1, "treatment": 1}), {"control": 10, "rogue": 3}
    )

    assert check.mismatch is True
    assert "rogue" in check.reason


def test_nothing_is_tested_without_exposures() -> None:
    check = sample_ratio_check(_experiment({"control": 1, "treatment": 1}), {})

    assert check.p_value is None
    assert check.mismatch is False


counts = st.integers(min_value=0, max_value=10_000_000)


@given(data=st.data(), trials=st.integers(min_value=1, max_value=10_000_000))
def test_the_wilson_interval_lies_in_the_unit_interval_and_contains_the_estimate(
    data: st.DataObject, trials: int
) -> None:
    successes = data.draw(st.integers(min_value=0, max_value=trials))

    interval = wilson_interval(successes, trials)

    assert 0.0 <= interval.low <= successes / trials <= interval.high <= 1.0


@given(data=st.data(), trials=st.integers(min_value=1, max_value=100_000))
def test_the_wilson_interval_narrows_with_more_data(data: st.DataObject, trials: int) -> None:
    successes = data.draw(st.integers(min_value=0, max_value=trials))

    small = wilson_interval(successes, trials)
    large = wilson_interval(successes * 4, trials * 4)

    assert large.high - large.low <= small.high - small.low + 1e-12


@given(
    data=st.data(),
    trials_a=st.integers(min_value=1, max_value=1_000_000),
    trials_b=st.integers(min_value=1, max_value=1_000_000),
)
def test_the_difference_interval_contains_the_observed_difference_and_stays_in_range(
    data: st.DataObject, trials_a: int, trials_b: int
) -> None:
    successes_a = data.draw(st.integers(min_value=0, max_value=trials_a))
    successes_b = data.draw(st.integers(min_value=0, max_value=trials_b))

    interval = newcombe_difference_interval(successes_a, trials_a, successes_b, trials_b)

    difference = successes_b / trials_b - successes_a / trials_a
    assert -1.0 <= interval.low <= difference + 1e-12
    assert difference - 1e-12 <= interval.high <= 1.0


@given(
    statistic=st.floats(min_value=0, max_value=1_000, allow_nan=False),
    dof=st.integers(min_value=1, max_value=50),
)
def test_the_chi_square_survival_is_a_probability_that_falls_with_the_statistic(
    statistic: float, dof: int
) -> None:
    p_value = chi_square_survival(statistic, dof)

    assert 0.0 <= p_value <= 1.0
    assert chi_square_survival(statistic + 1.0, dof) <= p_value + 1e-12
    assert chi_square_survival(statistic, dof + 1) >= p_value - 1e-12


@given(
    weights=st.lists(st.integers(min_value=1, max_value=10), min_size=2, max_size=5),
    scale=st.integers(min_value=1, max_value=1_000),
)
def test_exposures_exactly_in_proportion_to_the_weights_never_mismatch(
    weights: list[int], scale: int
) -> None:
    configured = {f"v{i}": float(w) for i, w in enumerate(weights)}
    exposed = {f"v{i}": w * scale for i, w in enumerate(weights)}

    check = sample_ratio_check(_experiment(configured), exposed)

    assert check.statistic == pytest.approx(0.0, abs=1e-6)
    assert check.p_value == pytest.approx(1.0)
    assert check.mismatch is False


# Reference implementations: statsmodels and SciPy compute the same statistics independently.


@given(data=st.data(), trials=st.integers(min_value=1, max_value=10_000_000))
def test_the_wilson_interval_is_statsmodels_wilson_interval(
    data: st.DataObject, trials: int
) -> None:
    successes = data.draw(st.integers(min_value=0, max_value=trials))

    interval = wilson_interval(successes, trials)

    low, high = proportion_confint(successes, trials, alpha=0.05, method="wilson")
    assert interval.low == pytest.approx(float(low), abs=1e-12)
    assert interval.high == pytest.approx(float(high), abs=1e-12)


@given(
    data=st.data(),
    trials_a=st.integers(min_value=1, max_value=1_000_000),
    trials_b=st.integers(min_value=1, max_value=1_000_000),
)
def test_the_difference_interval_is_statsmodels_newcombe_interval(
    data: st.DataObject, trials_a: int, trials_b: int
) -> None:
    successes_a = data.draw(st.integers(min_value=0, max_value=trials_a))
    successes_b = data.draw(st.integers(min_value=0, max_value=trials_b))

    interval = newcombe_difference_interval(successes_a, trials_a, successes_b, trials_b)

    # statsmodels' difference is count1/nobs1 - count2/nobs2: the variant first.
    low, high = confint_proportions_2indep(
        successes_b, trials_b, successes_a, trials_a, method="newcomb", compare="diff"
    )
    assert interval.low == pytest.approx(float(low), abs=1e-12)
    assert interval.high == pytest.approx(float(high), abs=1e-12)


@given(
    exposed=st.lists(st.integers(min_value=0, max_value=100_000), min_size=2, max_size=6),
    weights=st.lists(st.integers(min_value=1, max_value=10), min_size=6, max_size=6),
)
def test_the_sample_ratio_check_is_scipys_chi_square_goodness_of_fit(
    exposed: list[int], weights: list[int]
) -> None:
    configured = {f"v{i}": float(w) for i, w in zip(range(len(exposed)), weights, strict=False)}
    observed = {f"v{i}": n for i, n in enumerate(exposed)}
    total = sum(exposed)

    check = sample_ratio_check(_experiment(configured), observed)

    if total == 0:
        assert check.p_value is None
        return
    expected = [total * configured[v] / sum(configured.values()) for v in observed]
    reference = chisquare(list(observed.values()), expected)
    assert check.degrees_of_freedom == len(exposed) - 1
    assert check.statistic == pytest.approx(float(reference.statistic), rel=1e-9, abs=1e-9)
    assert check.p_value == pytest.approx(float(reference.pvalue), rel=1e-7, abs=1e-300)
    assert check.mismatch is (float(reference.pvalue) < SRM_P_VALUE_THRESHOLD)


@given(
    statistic=st.floats(min_value=0, max_value=2_000, allow_nan=False),
    dof=st.integers(min_value=1, max_value=60),
)
def test_the_chi_square_survival_is_scipys(statistic: float, dof: int) -> None:
    assert chi_square_survival(statistic, dof) == pytest.approx(
        float(chi2.sf(statistic, dof)), rel=1e-7, abs=1e-300
    )
