"""A/A experiments in which users come back on several days, reported through the report path.

Both variants behave alike by construction, so every sample-ratio alarm and every difference
interval that excludes 0 is a false alarm. Users are assigned by a fair coin, each has their own
activity and conversion propensity (heavy users come back on many days, and convert on several),
and the counters are applied to the in-memory metric store as the pipeline applies them: one
daily delta per variant, metric and day, holding that day's records.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from application.reporting import ExperimentReport, read_report
from domain.experiments import Experiment, ExperimentStatus, Variant
from domain.metrics import Granularity, MetricDelta, MetricKey
from infrastructure.in_memory.metric_store import InMemoryMetricStore
from infrastructure.in_memory.repositories import InMemoryExperimentRepository

EXPERIMENT_ID = "exp-aa"
VARIANTS = ("control", "treatment")
FIRST_DAY = datetime(2026, 11, 2, tzinfo=UTC)
DAYS = 14
SHARD = "shardId-000000000000"


@dataclass(frozen=True, slots=True)
class AaSpec:
    users: int = 600
    days: int = DAYS
    exposure_per_active_day: float = 0.9
    # Beta(a, b) parameters of the per-user daily activity and daily conversion probabilities:
    # about 4 active days out of 14 on average, a few users on nearly every day.
    activity: tuple[float, float] = (1.2, 3.0)
    conversion: tuple[float, float] = (0.5, 4.0)


AA_EXPERIMENT = Experiment(
    experiment_id=EXPERIMENT_ID,
    name="A/A",
    status=ExperimentStatus.RUNNING,
    variants=tuple(Variant(variant_id=v, weight=1.0) for v in VARIANTS),
)


def aa_deltas(spec: AaSpec, rng: np.random.Generator) -> list[MetricDelta]:
    """One run's deltas: (variant, metric, day) -> the users who did it that day."""
    variant_of = rng.integers(0, len(VARIANTS), size=spec.users)
    activity = rng.beta(*spec.activity, size=spec.users)
    conversion = rng.beta(*spec.conversion, size=spec.users)
    active = rng.random((spec.users, spec.days)) < activity[:, None]
    exposed = active & (rng.random((spec.users, spec.days)) < spec.exposure_per_active_day)
    converted = active & (rng.random((spec.users, spec.days)) < conversion[:, None])
    deltas = []
    sequence = 0
    for day in range(spec.days):
        window = FIRST_DAY + timedelta(days=day)
        for metric, did in (("exposure", exposed), ("conversion", converted)):
            for index, variant_id in enumerate(VARIANTS):
                users = np.flatnonzero(did[:, day] & (variant_of == index))
                if users.size == 0:
                    continue
                sequences = tuple(range(sequence + 1, sequence + 1 + users.size))
                sequence += users.size
                # The day's records, all in its first hour: as a batch counts them, hourly and
                # daily, the hourly delta marking the users.
                for granularity in (Granularity.HOUR, Granularity.DAY):
                    deltas.append(
                        MetricDelta(
                            MetricKey(EXPERIMENT_ID, variant_id, metric, granularity, window),
                            SHARD,
                            sequences,
                            tuple(f"user-{u}" for u in users),
                            (None,) * users.size,
                        )
                    )
    return deltas


def aa_store(spec: AaSpec, rng: np.random.Generator) -> InMemoryMetricStore:
    from application.ports import NoDeadline

    store = InMemoryMetricStore()
    report = store.apply(aa_deltas(spec, rng), NoDeadline())
    assert report.complete
    assert not report.refused
    return store


def aa_report(spec: AaSpec, rng: np.random.Generator) -> ExperimentReport:
    """One A/A run over the whole 14-day range, through `read_report`."""
    return read_report(
        aa_store(spec, rng),
        InMemoryExperimentRepository([AA_EXPERIMENT]),
        EXPERIMENT_ID,
        Granularity.DAY,
        FIRST_DAY,
        FIRST_DAY + timedelta(days=spec.days),
    )


@dataclass(frozen=True, slots=True, repr=False)
class FalseAlarms:
    runs: int
    sample_ratio_alarms: int
    sample_ratio_p_below_5_percent: int
    differences_excluding_zero: int
    sample_ratio_p_values: tuple[float, ...]

    def __repr__(self) -> str:
        return (
            f"{self.runs} runs: sample-ratio alarms {self.sample_ratio_alarms / self.runs:.2%} "
            f"(p < 0.05 in {self.sample_ratio_p_below_5_percent / self.runs:.2%}), "
            f"A/A difference intervals excluding 0 "
            f"{self.differences_excluding_zero / self.runs:.2%}"
        )


def false_alarms(runs: int, seed: int, spec: AaSpec | None = None) -> FalseAlarms:
    rng = np.random.default_rng(seed)
    chosen = spec or AaSpec()
    alarms = below_5_percent = excluding_zero = 0
    p_values = []
    for _ in range(runs):
        report = aa_report(chosen, rng)
        srm = report.sample_ratio
        assert srm is not None
        assert srm.p_value is not None
        alarms += srm.mismatch
        p_values.append(srm.p_value)
        below_5_percent += srm.p_value < 0.05
        (treatment,) = (
            r for r in report.rates if r.variant_id == "treatment" and r.metric == "conversion"
        )
        interval = treatment.difference_interval
        assert interval is not None
        excluding_zero += 0.0 not in interval
    return FalseAlarms(runs, alarms, below_5_percent, excluding_zero, tuple(p_values))


if __name__ == "__main__":
    import sys
    import time

    started = time.monotonic()
    print(false_alarms(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000, seed=2026))
    print(f"{time.monotonic() - started:.1f} s")
