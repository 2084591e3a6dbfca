"""The report use case: an experiment's counters read from the metric store, grouped into
totals per variant and metric, and the statistics of `domain.statistics` over them.

Every user count is of distinct users over the whole range: a window's counter carries the set
of its users, and a total is the union of those sets over the range's windows, so a user active
on several days counts once (the statistics' independent trials).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from application.ports import ExperimentRepository, MetricSnapshot, MetricStore
from domain.experiments import Experiment
from domain.metrics import NO_MEASURES, Granularity, Measures
from domain.statistics import (
    CONTROL_VARIANT,
    EXPOSURE_METRIC,
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

    @property
    def variant_ids(self) -> tuple[str, ...]:
        return variant_ids_of(self.experiment, self.windows)

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metrics with a counter in range."""
        return tuple(sorted({s.key.metric for s in self.windows}))


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
    """The distinct users of each variant and metric over the snapshots' windows."""
    users: dict[VariantMetric, set[str]] = {}
    for snapshot in snapshots:
        users.setdefault((snapshot.key.variant_id, snapshot.key.metric), set()).update(
            snapshot.user_ids
        )
    return {key: frozenset(ids) for key, ids in users.items()}


def variant_totals(snapshots: Iterable[MetricSnapshot]) -> list[VariantMetricTotal]:
    measures: dict[VariantMetric, Measures] = {}
    windows: dict[VariantMetric, int] = {}
    users: dict[VariantMetric, set[str]] = {}
    for snapshot in snapshots:
        key = (snapshot.key.variant_id, snapshot.key.metric)
        measures[key] = measures.get(key, NO_MEASURES) + snapshot.measures
        windows[key] = windows.get(key, 0) + 1
        users.setdefault(key, set()).update(snapshot.user_ids)
    totals = []
    for key in sorted(measures):
        variant_id, metric = key
        totals.append(
            VariantMetricTotal(variant_id, metric, measures[key], len(users[key]), windows[key])
        )
    return totals


def variant_ids_of(
    experiment: Experiment | None, snapshots: Iterable[MetricSnapshot]
) -> tuple[str, ...]:
    """The configured variants in their order, then those only the counters know, sorted."""
    configured = [v.variant_id for v in experiment.variants] if experiment else []
    observed = sorted({s.key.variant_id for s in snapshots} - set(configured))
    return (*configured, *observed)


def build_report(
    experiment_id: str,
    experiment: Experiment | None,
    snapshots: Sequence[MetricSnapshot],
    granularity: Granularity,
    start: datetime | None = None,
    end: datetime | None = None,
    control_variant: str = CONTROL_VARIANT,
) -> ExperimentReport:
    """The report of one experiment from the counters of its windows in [start, end).

    Raises `UnknownControlVariantError` when the experiment has variants and `control_variant`
    is none of them (with no variant at all there is nothing to compare, and no control).
    """
    windows = tuple(
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
    variant_ids = variant_ids_of(experiment, windows)
    if variant_ids and control_variant not in variant_ids:
        raise UnknownControlVariantError(experiment_id, control_variant, variant_ids)
    control = control_variant if variant_ids else None
    users = distinct_users(windows)
    exposed = {
        variant_id: len(ids)
        for (variant_id, metric), ids in users.items()
        if metric == EXPOSURE_METRIC
    }
    return ExperimentReport(
        experiment_id=experiment_id,
        experiment=experiment,
        granularity=granularity,
        start=start,
        end=end,
        windows=windows,
        totals=tuple(variant_totals(windows)),
        rates=tuple(metric_rates(users, variant_ids, control)),
        sample_ratio=sample_ratio_check(experiment, exposed) if experiment else None,
        control_variant=control,
    )


def read_report(
    metric_store: MetricStore,
    experiment_repository: ExperimentRepository,
    experiment_id: str,
    granularity: Granularity,
    start: datetime | None = None,
    end: datetime | None = None,
    control_variant: str = CONTROL_VARIANT,
) -> ExperimentReport:
    """The report of an experiment's counters as stored now. Raises
    `UnknownControlVariantError` as `build_report` does."""
    experiment = experiment_repository.experiments([experiment_id]).get(experiment_id)
    snapshots = metric_store.snapshots(experiment_id, granularity, start, end)
    return build_report(
        experiment_id, experiment, snapshots, granularity, start, end, control_variant
    )
