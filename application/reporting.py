"""The report use case: an experiment's counters read from the metric store, grouped into
totals per variant and metric, and the statistics of `domain.statistics` over them.

Every user count is of distinct users over the whole range, so a user active on several days
counts once (the statistics' independent trials). When the range holds all of the experiment's
events, those are the experiment-to-date counters' stored counts: a read of a few items per
variant and metric, whatever the number of users. Otherwise (a part of the experiment, or
counters written before the stored counts) they are the unions of the windows' user sets, read
from the first-seen markers: exact too, at a cost that grows with the users.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from application.ports import ExperimentRepository, MetricSnapshot, MetricStore
from application.unique_users import UserSketches
from domain.experiments import Experiment
from domain.metrics import NO_MEASURES, Granularity, Measures, MetricKey
from domain.statistics import (
    CONTROL_VARIANT,
    EXPOSURE_METRIC,
    DistinctUsers,
    MetricRate,
    SampleRatioCheck,
    VariantMetric,
    metric_rates,
    sample_ratio_check,
)


@dataclass(frozen=True, slots=True)
class VariantMetricTotal:
    """One metric of one variant over the report's range: the sum of its windows' measures,
    and its distinct users over them."""

    variant_id: str
    metric: str
    measures: Measures
    unique_users: int
    windows: int


class UsersCounted(StrEnum):
    """Where a report's distinct users over its range come from."""

    STORED = "stored counts"
    """The experiment-to-date counters (the range holds all of the experiment's events)."""
    USER_SETS = "user sets"
    """The unions of the windows' first-seen markers."""
    SKETCHES = "sketches (approximate)"
    """`UNIQUE_USERS=sketch`: unions of the windows' sketches, within the sketch's error."""


@dataclass(frozen=True, slots=True)
class ExperimentReport:
    experiment_id: str
    experiment: Experiment | None
    granularity: Granularity
    start: datetime | None
    end: datetime | None
    windows: tuple[MetricSnapshot, ...]
    totals: tuple[VariantMetricTotal, ...]
    rates: tuple[MetricRate, ...]
    sample_ratio: SampleRatioCheck | None
    control_variant: str | None
    users_counted: UsersCounted = UsersCounted.USER_SETS

    @property
    def variant_ids(self) -> tuple[str, ...]:
        return variant_ids_of(self.experiment, self.windows)

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metrics with a counter in range."""
        return tuple(sorted({s.key.metric for s in self.windows}))

    @property
    def windows_without_users(self) -> tuple[MetricSnapshot, ...]:
        """The windows that hold events but no unique user where this report reads them:
        counted in the other unique-users mode (`UNIQUE_USERS`: each mode keeps its own
        items) or before unique users were kept, or (user sets) whose users' markers were
        erased. Every window counted in the report's mode holds its first event's user, so the
        distinct users miss these windows' users."""
        return tuple(
            window
            for window in self.windows
            if window.measures.event_count > 0 and users_in(window) == 0
        )


def users_in(window: MetricSnapshot) -> int:
    """A window's unique users as read: its user set when read with it, else its count."""
    return len(window.user_ids) if window.user_ids is not None else window.measures.unique_users


class UnknownControlVariantError(ValueError):
    """The control named for the comparison is none of the experiment's variants."""

    def __init__(self, experiment_id: str, control: str, variant_ids: Sequence[str]) -> None:
        self.control = control
        self.variant_ids = tuple(variant_ids)
        super().__init__(
            f"experiment {experiment_id!r} has no variant {control!r} "
            f"(its variants: {', '.join(variant_ids)})"
        )


def distinct_users(snapshots: Iterable[MetricSnapshot]) -> dict[VariantMetric, frozenset[str]]:
    """The distinct users of each variant and metric over the snapshots' windows (each must
    carry its user set)."""
    users: dict[VariantMetric, set[str]] = {}
    for snapshot in snapshots:
        if snapshot.user_ids is None:
            raise ValueError(f"counter {snapshot.key} was read without its users")
        users.setdefault((snapshot.key.variant_id, snapshot.key.metric), set()).update(
            snapshot.user_ids
        )
    return {key: frozenset(ids) for key, ids in users.items()}


def stored_distinct_users(to_date: Iterable[MetricSnapshot]) -> DistinctUsers:
    """The distinct users the experiment-to-date counters hold: each counter's unique users,
    and the exposed users who did its metric, joined by its own records and by the exposure
    counter's (`domain.statistics.joined_metrics`)."""
    snapshots = list(to_date)
    did = {(s.key.variant_id, s.key.metric): s.measures.unique_users for s in snapshots}
    joined: dict[VariantMetric, int] = {}
    for snapshot in snapshots:
        for metric, users in snapshot.joined.items():
            key = (snapshot.key.variant_id, metric)
            joined[key] = joined.get(key, 0) + users
    return DistinctUsers(did, {key: joined.get(key, 0) for key in did})


def sketched_distinct_users(
    snapshots: Sequence[MetricSnapshot], sketches: UserSketches
) -> tuple[list[MetricSnapshot], DistinctUsers]:
    """Sketch mode: each window's unique users estimated from its sketch, and over the range
    the union of the windows' sketches; the exposed users who did a metric by inclusion and
    exclusion (did + exposed - either), within the sum of the three estimates' errors."""
    per_window = sketches.estimates([s.key for s in snapshots])
    windows = [
        replace(s, measures=replace(s.measures, unique_users=per_window[s.key].users))
        for s in snapshots
    ]
    keys: dict[VariantMetric, list[MetricKey]] = {}
    for s in snapshots:
        keys.setdefault((s.key.variant_id, s.key.metric), []).append(s.key)
    did = {pair: sketches.union_estimate(of).users for pair, of in keys.items()}
    joined = {}
    for (variant_id, metric), of in keys.items():
        exposed = keys.get((variant_id, EXPOSURE_METRIC))
        if metric == EXPOSURE_METRIC or exposed is None:
            joined[(variant_id, metric)] = did[(variant_id, metric)] if exposed else 0
            continue
        either = sketches.union_estimate([*of, *exposed]).users
        both = did[(variant_id, metric)] + did[(variant_id, EXPOSURE_METRIC)] - either
        joined[(variant_id, metric)] = max(
            0, min(both, did[(variant_id, metric)], did[(variant_id, EXPOSURE_METRIC)])
        )
    return windows, DistinctUsers(did, joined)


def holds_every_event(windows: Sequence[MetricSnapshot], to_date: Sequence[MetricSnapshot]) -> bool:
    """Whether the range's windows hold every event the experiment-to-date counters do, so
    their stored counts are the range's: the same (variant, metric) pairs, the same event
    counts (a stricter range would miss some), and stored counts present (counters written
    before them have none)."""
    in_range: dict[VariantMetric, int] = {}
    for window in windows:
        key = (window.key.variant_id, window.key.metric)
        in_range[key] = in_range.get(key, 0) + window.measures.event_count
    counted = {
        (s.key.variant_id, s.key.metric): s.measures.event_count
        for s in to_date
        if s.measures.unique_users > 0
    }
    return len(counted) == len(to_date) and counted == in_range


def variant_totals(
    snapshots: Iterable[MetricSnapshot], distinct: DistinctUsers
) -> list[VariantMetricTotal]:
    measures: dict[VariantMetric, Measures] = {}
    windows: dict[VariantMetric, int] = {}
    for snapshot in snapshots:
        key = (snapshot.key.variant_id, snapshot.key.metric)
        measures[key] = measures.get(key, NO_MEASURES) + snapshot.measures
        windows[key] = windows.get(key, 0) + 1
    totals = []
    for key in sorted(measures):
        variant_id, metric = key
        totals.append(
            VariantMetricTotal(
                variant_id, metric, measures[key], distinct.did.get(key, 0), windows[key]
            )
        )
    return totals


def variant_ids_of(
    experiment: Experiment | None, snapshots: Iterable[MetricSnapshot]
) -> tuple[str, ...]:
    """The configured variants in their order, then those only the counters know, sorted."""
    configured = [v.variant_id for v in experiment.variants] if experiment else []
    observed = sorted({s.key.variant_id for s in snapshots} - set(configured))
    return (*configured, *observed)


def _in_range(
    snapshots: Sequence[MetricSnapshot],
    experiment_id: str,
    granularity: Granularity,
    start: datetime | None,
    end: datetime | None,
) -> tuple[MetricSnapshot, ...]:
    """The experiment's counters of `granularity` whose window starts in [start, end), in key
    order."""
    return tuple(
        sorted(
            (
                s
                for s in snapshots
                if s.key.experiment_id == experiment_id
                and s.key.granularity is granularity
                and (start is None or s.key.window_start >= start)
                and (end is None or s.key.window_start < end)
            ),
            key=lambda s: s.key,
        )
    )


def build_report(
    experiment_id: str,
    experiment: Experiment | None,
    snapshots: Sequence[MetricSnapshot],
    granularity: Granularity,
    start: datetime | None = None,
    end: datetime | None = None,
    control_variant: str = CONTROL_VARIANT,
    stored: DistinctUsers | None = None,
) -> ExperimentReport:
    """The report of one experiment from the counters of its windows in [start, end): its
    distinct users are `stored` (the experiment-to-date counts, when the range holds every
    event) or else the unions of the windows' user sets.

    Raises `UnknownControlVariantError` when the experiment has variants and `control_variant`
    is none of them (with no variant at all there is nothing to compare, and no control).
    """
    windows = _in_range(snapshots, experiment_id, granularity, start, end)
    variant_ids = variant_ids_of(experiment, windows)
    if variant_ids and control_variant not in variant_ids:
        raise UnknownControlVariantError(experiment_id, control_variant, variant_ids)
    control = control_variant if variant_ids else None
    distinct = stored if stored is not None else DistinctUsers.of_sets(distinct_users(windows))
    exposed = {
        variant_id: users
        for (variant_id, metric), users in distinct.did.items()
        if metric == EXPOSURE_METRIC
    }
    return ExperimentReport(
        experiment_id=experiment_id,
        experiment=experiment,
        granularity=granularity,
        start=start,
        end=end,
        windows=windows,
        totals=tuple(variant_totals(windows, distinct)),
        rates=tuple(metric_rates(distinct, variant_ids, control)),
        sample_ratio=sample_ratio_check(experiment, exposed) if experiment else None,
        control_variant=control,
        users_counted=UsersCounted.USER_SETS if stored is None else UsersCounted.STORED,
    )


def read_report(
    metric_store: MetricStore,
    experiment_repository: ExperimentRepository,
    experiment_id: str,
    granularity: Granularity,
    start: datetime | None = None,
    end: datetime | None = None,
    control_variant: str = CONTROL_VARIANT,
    user_sets: bool = False,
    sketches: UserSketches | None = None,
) -> ExperimentReport:
    """The report of an experiment's counters as stored now, its distinct users from the
    stored counts when the range holds every event, else (or with `user_sets`) from the user
    sets. Raises `UnknownControlVariantError` as `build_report` does."""
    experiment = experiment_repository.experiments([experiment_id]).get(experiment_id)
    if sketches is not None:
        snapshots = metric_store.snapshots(experiment_id, granularity, start, end)
        windows, estimated = sketched_distinct_users(snapshots, sketches)
        report = build_report(
            experiment_id, experiment, windows, granularity, start, end, control_variant, estimated
        )
        return replace(report, users_counted=UsersCounted.SKETCHES)
    snapshots = metric_store.snapshots(experiment_id, granularity, start, end, user_sets)
    stored = None
    if not user_sets:
        to_date = (
            snapshots
            if granularity is Granularity.EXPERIMENT
            else metric_store.snapshots(experiment_id, Granularity.EXPERIMENT)
        )
        if holds_every_event(snapshots, to_date):
            stored = stored_distinct_users(to_date)
        else:
            snapshots = metric_store.snapshots(experiment_id, granularity, start, end, True)
    return build_report(
        experiment_id, experiment, snapshots, granularity, start, end, control_variant, stored
    )
