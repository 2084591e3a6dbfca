"""Experiment statistics: rates with confidence intervals, lift, the sample-ratio check.

Pure functions over counts of distinct users and the experiment's configuration. Every user
count is of distinct users over the report's whole range, which is what makes the users of a
variant independent trials, as the intervals and the sample-ratio test assume.

Statistics used (all two-sided, 95% by default, fixed-horizon: valid for one look at a range
chosen in advance, with no correction for looking repeatedly and stopping when it looks good):
- the exposed users of a variant are its distinct users with an `exposure` event in range;
- the rate of a metric is the variant's exposed users who also did the metric in range, over its
  exposed users (users who did it without an exposure are counted apart and left out), with a
  Wilson score interval: it stays inside [0, 1] and behaves well for small counts and rates near
  0 or 1, where the normal (Wald) interval fails;
- the lift of a variant is its rate relative to the control's, `(p_v - p_c) / p_c`, and the
  difference `p_v - p_c` gets Newcombe's hybrid score interval (method 10 of Newcombe 1998),
  built from the two Wilson intervals;
- the sample-ratio-mismatch (SRM) check is Pearson's chi-square goodness of fit of the exposed
  users per variant against the configured variant weights, flagged when p < 0.001.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from domain.experiments import Experiment

EXPOSURE_METRIC = "exposure"
CONTROL_VARIANT = "control"
SRM_P_VALUE_THRESHOLD = 0.001
CONFIDENCE_LEVEL = 0.95
Z_95 = 1.959963984540054  # the 97.5% quantile of the standard normal distribution: two-sided 95%


@dataclass(frozen=True, slots=True)
class Interval:
    low: float
    high: float

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> Interval:
    """Wilson's score interval for a binomial proportion `successes / trials`."""
    if trials <= 0 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials and trials > 0, got {successes}/{trials}")
    p = successes / trials
    z2 = z * z
    denominator = 1 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denominator
    half_width = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / denominator
    # At 0 and n the exact bound is 0 or 1; rounding must not push it past the estimate.
    low = 0.0 if successes == 0 else max(0.0, min(p, centre - half_width))
    high = 1.0 if successes == trials else min(1.0, max(p, centre + half_width))
    return Interval(low, high)


def newcombe_difference_interval(
    successes_a: int, trials_a: int, successes_b: int, trials_b: int, z: float = Z_95
) -> Interval:
    """Newcombe's hybrid score interval for the difference of proportions `p_b - p_a`."""
    p_a = successes_a / trials_a
    p_b = successes_b / trials_b
    a = wilson_interval(successes_a, trials_a, z)
    b = wilson_interval(successes_b, trials_b, z)
    difference = p_b - p_a
    low = difference - math.sqrt((p_b - b.low) ** 2 + (a.high - p_a) ** 2)
    high = difference + math.sqrt((b.high - p_b) ** 2 + (p_a - a.low) ** 2)
    return Interval(max(-1.0, low), min(1.0, high))


def chi_square_survival(statistic: float, degrees_of_freedom: int) -> float:
    """P(X >= statistic) for X chi-square distributed with integer degrees of freedom.

    Closed form by the recurrence Q(x; k + 2) = Q(x; k) + (x/2)^(k/2) e^(-x/2) / Gamma(k/2 + 1),
    starting from Q(x; 1) = erfc(sqrt(x/2)) and Q(x; 2) = e^(-x/2).
    """
    if degrees_of_freedom < 1:
        raise ValueError(f"degrees of freedom must be at least 1, got {degrees_of_freedom}")
    half = statistic / 2
    if half <= 0:  # also a statistic so small that halving it underflows
        return 1.0
    if degrees_of_freedom % 2:
        k = 1
        survival = math.erfc(math.sqrt(half))
    else:
        k = 2
        survival = math.exp(-half)
    while k < degrees_of_freedom:
        survival += math.exp((k / 2) * math.log(half) - half - math.lgamma(k / 2 + 1))
        k += 2
    return min(1.0, survival)


@dataclass(frozen=True, slots=True)
class SampleRatioCheck:
    """Exposed users per variant against the configured weights.

    `p_value` is None when there is nothing to test (no exposures, fewer than two weighted
    variants); `mismatch` is then False and `reason` says why.
    """

    observed: Mapping[str, int]
    expected: Mapping[str, float]
    statistic: float | None
    degrees_of_freedom: int
    p_value: float | None
    mismatch: bool
    reason: str


def sample_ratio_check(
    experiment: Experiment,
    exposed_users: Mapping[str, int],
    threshold: float = SRM_P_VALUE_THRESHOLD,
) -> SampleRatioCheck:
    weights = {v.variant_id: v.weight for v in experiment.variants if v.weight > 0}
    observed = {variant_id: exposed_users.get(variant_id, 0) for variant_id in weights}
    stray = {v: n for v, n in exposed_users.items() if v not in weights and n > 0}
    total = sum(observed.values()) + sum(stray.values())
    if stray:
        names = ", ".join(sorted(stray))
        return SampleRatioCheck(
            {**observed, **stray},
            dict.fromkeys(stray, 0.0),
            None,
            0,
            None,
            True,
            f"exposed users in variants without a positive configured weight: {names}",
        )
    if len(weights) < 2:
        return SampleRatioCheck(
            observed, {}, None, 0, None, False, "fewer than two variants with a positive weight"
        )
    if total == 0:
        return SampleRatioCheck(observed, {}, None, 0, None, False, "no exposed users")
    weight_total = sum(weights.values())
    expected = {v: total * w / weight_total for v, w in weights.items()}
    statistic = sum((observed[v] - expected[v]) ** 2 / expected[v] for v in weights)
    dof = len(weights) - 1
    p_value = chi_square_survival(statistic, dof)
    mismatch = p_value < threshold
    reason = (
        f"p = {p_value:.3g} < {threshold}: the split does not match the weights"
        if mismatch
        else f"p = {p_value:.3g} >= {threshold}"
    )
    return SampleRatioCheck(observed, expected, statistic, dof, p_value, mismatch, reason)


@dataclass(frozen=True, slots=True)
class MetricRate:
    """Exposed users who did a metric per exposed user of the variant, against the control.

    `users` are the variant's exposed users who did the metric in range; `unexposed_users` did
    it without any exposure in range and are in neither side of the rate. `rate` and `interval`
    are None without exposed users; lift and difference are None without a usable control.
    """

    variant_id: str
    metric: str
    users: int
    exposed_users: int
    unexposed_users: int
    rate: float | None
    interval: Interval | None
    lift: float | None
    difference: float | None
    difference_interval: Interval | None


VariantMetric = tuple[str, str]
"""(variant_id, metric)."""


def joined_metrics(metric: str, earlier_metrics: Collection[str]) -> tuple[str, ...]:
    """The metrics whose exposed users a user's first `metric` event in a variant joins, when
    the user's earlier first events there were of `earlier_metrics`: an exposure joins every
    metric already done, a metric joins itself once the user was exposed. Each (user, metric)
    pair joins once, by whichever of its two first events comes later."""
    if metric == EXPOSURE_METRIC:
        return tuple(sorted(m for m in set(earlier_metrics) if m != EXPOSURE_METRIC))
    return (metric,) if EXPOSURE_METRIC in earlier_metrics else ()


@dataclass(frozen=True, slots=True)
class DistinctUsers:
    """A range's distinct users per (variant, metric): those who did the metric, and those of
    them who were also exposed in the variant. What the rates and totals need, whether counted
    from user sets or read as stored counts."""

    did: Mapping[VariantMetric, int]
    exposed_and_did: Mapping[VariantMetric, int]

    @classmethod
    def of_sets(cls, users: Mapping[VariantMetric, frozenset[str]]) -> DistinctUsers:
        no_one: frozenset[str] = frozenset()
        return cls(
            {key: len(ids) for key, ids in users.items()},
            {
                (variant_id, metric): len(ids & users.get((variant_id, EXPOSURE_METRIC), no_one))
                for (variant_id, metric), ids in users.items()
            },
        )

    def exposed(self, variant_id: str) -> int:
        return self.did.get((variant_id, EXPOSURE_METRIC), 0)


def metric_rates(
    users: Mapping[VariantMetric, frozenset[str]] | DistinctUsers,
    variant_ids: Sequence[str],
    control_variant: str | None,
    z: float = Z_95,
) -> list[MetricRate]:
    """For every metric other than exposure, its rate per exposed user in every variant."""
    distinct = users if isinstance(users, DistinctUsers) else DistinctUsers.of_sets(users)
    metrics = sorted({metric for _, metric in distinct.did} - {EXPOSURE_METRIC})
    rates = []
    for metric in metrics:
        control_trials = distinct.exposed(control_variant) if control_variant else 0
        control_successes = (
            distinct.exposed_and_did.get((control_variant, metric), 0) if control_variant else 0
        )
        for variant_id in variant_ids:
            successes = distinct.exposed_and_did.get((variant_id, metric), 0)
            trials = distinct.exposed(variant_id)
            unexposed = distinct.did.get((variant_id, metric), 0) - successes
            rate = successes / trials if trials else None
            interval = wilson_interval(successes, trials, z) if trials else None
            lift = difference = None
            difference_interval = None
            if variant_id != control_variant and rate is not None and control_trials:
                control_rate = control_successes / control_trials
                difference = rate - control_rate
                lift = difference / control_rate if control_rate > 0 else None
                difference_interval = newcombe_difference_interval(
                    control_successes, control_trials, successes, trials, z
                )
            rates.append(
                MetricRate(
                    variant_id,
                    metric,
                    successes,
                    trials,
                    unexposed,
                    rate,
                    interval,
                    lift,
                    difference,
                    difference_interval,
                )
            )
    return rates
