"""The report over time, for charts: per-variant series over every window of the range.

Windows are laid out on a regular grid from the first window with a counter to the last, so a
window in which nothing was counted is there too. It is `counted` when the experiment has a
counter of any metric or variant in it: the pipeline was counting the experiment then, so a
variant without a counter of the metric did nothing (zero). A window with no counter at all
tells nothing (the pipeline may have been down, or no one came), so charts leave it a gap.

Cumulative series are the report's statistics as they stood at the end of each window: distinct
users from the range's first window up to and including that one, with the same intervals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from application.ports import MetricSnapshot
from application.reporting import ExperimentReport
from domain.metrics import Granularity
from domain.statistics import EXPOSURE_METRIC, Interval, wilson_interval


@dataclass(frozen=True, slots=True)
class WindowGrid:
    """Every window start from the first counted window to the last, and which were counted."""

    granularity: Granularity
    starts: tuple[datetime, ...]
    counted: tuple[bool, ...]

    def partial(self, now: datetime) -> int | None:
        """The index of the window still in progress at `now`, if the grid holds it."""
        length = self.granularity.length
        for index in range(len(self.starts) - 1, -1, -1):
            if self.starts[index] <= now < self.starts[index] + length:
                return index
        return None


def window_grid(windows: Sequence[MetricSnapshot], granularity: Granularity) -> WindowGrid:
    """The grid of `windows`' granularity over the span of their window starts."""
    counted = {s.key.window_start for s in windows if s.key.granularity is granularity}
    if not counted:
        return WindowGrid(granularity, (), ())
    first, last = min(counted), max(counted)
    starts = []
    moment = first
    while moment <= last:
        starts.append(moment)
        moment = granularity.window_start(moment + granularity.length)
    return WindowGrid(granularity, tuple(starts), tuple(s in counted for s in starts))


@dataclass(frozen=True, slots=True)
class CumulativePoint:
    """`successes` of `trials` distinct users from the range's start to the end of the window."""

    successes: int
    trials: int
    interval: Interval | None

    @property
    def estimate(self) -> float | None:
        return self.successes / self.trials if self.trials else None


@dataclass(frozen=True, slots=True)
class VariantSeries:
    """One variant's cumulative statistic at every window of the grid.

    For `exposure`, the variant's share of all exposed users (its exposed users out of every
    variant's), with `expected` the share its configured weight gives; for another metric, the
    rate the report gives (the exposed users who did the metric, out of the exposed users).
    """

    variant_id: str
    points: tuple[CumulativePoint, ...]
    expected: float | None


def cumulative_series(
    report: ExperimentReport, metric: str
) -> tuple[WindowGrid, list[VariantSeries]]:
    grid = window_grid(report.windows, report.granularity)
    variant_ids = report.variant_ids
    users_by_window: dict[tuple[datetime, str, str], frozenset[str]] = {}
    for s in report.windows:
        if s.user_ids is None:
            raise ValueError("cumulative series need the windows' user sets (user_sets=True)")
        users_by_window[(s.key.window_start, s.key.variant_id, s.key.metric)] = s.user_ids
    no_one: frozenset[str] = frozenset()
    exposed: dict[str, set[str]] = {v: set() for v in variant_ids}
    did: dict[str, set[str]] = {v: set() for v in variant_ids}
    points: dict[str, list[CumulativePoint]] = {v: [] for v in variant_ids}
    for start in grid.starts:
        for variant_id in variant_ids:
            exposed[variant_id] |= users_by_window.get((start, variant_id, EXPOSURE_METRIC), no_one)
            did[variant_id] |= users_by_window.get((start, variant_id, metric), no_one)
        all_exposed = sum(len(users) for users in exposed.values())
        for variant_id in variant_ids:
            if metric == EXPOSURE_METRIC:
                successes, trials = len(exposed[variant_id]), all_exposed
            else:
                successes = len(did[variant_id] & exposed[variant_id])
                trials = len(exposed[variant_id])
            interval = wilson_interval(successes, trials) if trials else None
            points[variant_id].append(CumulativePoint(successes, trials, interval))
    return grid, [
        VariantSeries(v, tuple(points[v]), _weight_share(report, v, metric)) for v in variant_ids
    ]


def _weight_share(report: ExperimentReport, variant_id: str, metric: str) -> float | None:
    if metric != EXPOSURE_METRIC or report.experiment is None:
        return None
    weights = {v.variant_id: v.weight for v in report.experiment.variants}
    total = sum(weights.values())
    return weights.get(variant_id, 0.0) / total if total > 0 else None
