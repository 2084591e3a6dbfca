"""Real-time metric counters: the keys they are kept under and the deltas a batch adds to them."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from domain.attribution import VariantKey
from domain.limits import COUNTER_CONTEXT
from domain.time import DAY_LABEL_FORMAT, HOUR_LABEL_FORMAT, day_of, hour_of, moment_of

EXPERIMENT_WINDOW_START = datetime(1970, 1, 1, tzinfo=UTC)
"""The one window of an experiment-to-date counter: every moment falls in it."""
EXPERIMENT_WINDOW_LABEL = "ALL"


class Granularity(StrEnum):
    HOUR = "hour"
    DAY = "day"
    EXPERIMENT = "experiment"
    """The experiment to date: one window holding every event, whose unique users are the
    experiment's distinct users (a sum of days' unique users would count a returning user on
    each day)."""

    def window_start(self, moment: datetime) -> datetime:
        utc = moment.astimezone(UTC)
        if self is Granularity.HOUR:
            return utc.replace(minute=0, second=0, microsecond=0)
        if self is Granularity.DAY:
            return utc.replace(hour=0, minute=0, second=0, microsecond=0)
        return EXPERIMENT_WINDOW_START

    @property
    def length(self) -> timedelta:
        """The length of a window; the experiment's one window has none."""
        if self is Granularity.HOUR:
            return timedelta(hours=1)
        if self is Granularity.DAY:
            return timedelta(days=1)
        raise ValueError("the experiment-to-date window has no length")


@dataclass(frozen=True, slots=True, order=True)
class MetricKey:
    """One counter: a metric of one experiment variant over one hourly or daily UTC window."""

    experiment_id: str
    variant_id: str
    metric: str
    granularity: Granularity
    window_start: datetime

    @property
    def window_label(self) -> str:
        if self.granularity is Granularity.HOUR:
            return self.window_start.strftime(HOUR_LABEL_FORMAT)
        if self.granularity is Granularity.DAY:
            return self.window_start.strftime(DAY_LABEL_FORMAT)
        return EXPERIMENT_WINDOW_LABEL


def to_decimal(value: float) -> Decimal:
    """The decimal a producer wrote: the shortest repr round-trips, so 19.99 stays 19.99."""
    return Decimal(repr(value))


@dataclass(frozen=True, slots=True)
class Measures:
    """What a counter adds up, defined once: the deltas, the stores (both write paths and their
    reads), the snapshots and the report's totals all hold this value.

    Every measure is additive (`+`), so that a counter is the sum of its deltas in any grouping;
    DynamoDB keeps each as a number attribute of the same name, added by one `ADD` (its update
    and its read are built from `MEASURE_NAMES`). Unique users are not a measure: a set does not
    add up across windows, so `unique_users` is the window's own count: the users whose
    first-seen marker for that window one of the counted records wrote (docs/storage.md, "Exact
    unique users"). It adds up across the deltas and write shards of one window, never across
    windows: the experiment-to-date counter holds the experiment's distinct users.

    A new measure is a field here with a zero default, its rule in `of_records`, `__add__` and
    `from_stored`, and its place in the report's output formats.
    """

    event_count: int = 0
    value_sum: Decimal = Decimal(0)
    """Exact: adding raises `decimal.Inexact` (a `decimal.DecimalException`) rather than round,
    which the contract's bound on `value` keeps out of reach of any batch."""
    value_count: int = 0
    """The events that carried a value: the denominator of the mean value."""
    unique_users: int = 0
    """The window's distinct users (see above); absent from counter items written before it
    existed, which read as 0."""

    @classmethod
    def of_records(
        cls, values: Iterable[Decimal | None], first_seen: Iterable[bool] = ()
    ) -> Measures:
        """The measures of records carrying these values (None: the event had no value), of
        which those flagged in `first_seen` each brought a user new to the window."""
        event_count = value_count = 0
        value_sum = Decimal(0)
        add = COUNTER_CONTEXT.add
        for value in values:
            event_count += 1
            if value is not None:
                value_sum = add(value_sum, value)
                value_count += 1
        return cls(event_count, value_sum, value_count, sum(first_seen))

    def __add__(self, other: Measures) -> Measures:
        """Decimals add in the current context: a store adds its counters in DynamoDB's
        (`decimal.localcontext(COUNTER_CONTEXT)`, which raises rather than round), a report
        its totals in Python's default one."""
        return Measures(
            self.event_count + other.event_count,
            self.value_sum + other.value_sum,
            self.value_count + other.value_count,
            self.unique_users + other.unique_users,
        )

    @classmethod
    def from_stored(cls, count: Callable[[str], int], amount: Callable[[str], Decimal]) -> Measures:
        """The measures as a store keeps them: `count(name)` reads a whole-number measure,
        `amount(name)` a decimal one."""
        return cls(
            count("event_count"), amount("value_sum"), count("value_count"), count("unique_users")
        )

    @property
    def value_mean(self) -> Decimal | None:
        """The mean `value` of the events that carried one."""
        if self.value_count == 0:
            return None
        return self.value_sum / self.value_count

    def as_numbers(self) -> dict[str, int | Decimal]:
        """Each measure by name, in `MEASURE_NAMES` order."""
        return {name: getattr(self, name) for name in MEASURE_NAMES}


MEASURE_NAMES: tuple[str, ...] = tuple(field.name for field in fields(Measures))
LATER_MEASURES: frozenset[str] = frozenset({"unique_users"})
"""Measures added after counters were first stored: an item without one holds zero of it."""
NO_MEASURES = Measures()


@dataclass(frozen=True, slots=True)
class MetricDelta:
    """What one batch adds to one counter, with the records it came from.

    The per-record columns (`sequences`, `user_ids`, `values`, in strictly increasing sequence
    order) let a store that has already applied a prefix of these records apply only the rest
    (see `after`). `first_seen`, when not empty, flags per record whether it brought its user new
    to the counter's window (its first-seen marker is this record's): the store sets it once the
    markers are written, and the flags travel with their records through `after` and `part`.
    """

    key: MetricKey
    shard_id: str
    sequences: tuple[int, ...]
    user_ids: tuple[str, ...]
    values: tuple[Decimal | None, ...]
    first_seen: tuple[bool, ...] = ()
    joins: tuple[tuple[int, tuple[str, ...]], ...] = ()
    """Experiment-to-date counters only: (sequence, metrics) of the records that made their user
    one of the variant's exposed users who did each of these metrics (the later of the user's
    exposure and their first event of the metric does, once). Set by the store with
    `first_seen`; it is how a report counts exposed users who did a metric without reading
    users."""
    events_counted: bool = True
    """False for what a store applies of records it refused to count (an unstorable number):
    their users only, whose markers the records hold (see `users_only`)."""

    @property
    def event_count(self) -> int:
        """The number of records (a refused delta is split by halves of them)."""
        return len(self.sequences)

    @property
    def measures(self) -> Measures:
        """What these records add to the counter: exact, see `Measures.of_records`."""
        if not self.events_counted:
            return Measures(unique_users=sum(self.first_seen))
        return Measures.of_records(self.values, self.first_seen)

    def users_only(self) -> MetricDelta | None:
        """What is left to apply of records refused for their numbers: the users whose marker
        they hold (and the exposed users they join), without their events; None when they
        hold none. Counted under the same watermark, so still once."""
        if not any(self.first_seen) and not self.joins:
            return None
        return replace(self, events_counted=False)

    @property
    def users(self) -> frozenset[str]:
        return frozenset(self.user_ids)

    @property
    def first_sequence(self) -> int:
        return self.sequences[0]

    @property
    def last_sequence(self) -> int:
        return self.sequences[-1]

    def after(self, watermark: int) -> MetricDelta | None:
        """The part of this delta from records beyond `watermark`; None when nothing is left."""
        if watermark < self.first_sequence:
            return self
        # Sequences are strictly increasing within a delta.
        start = bisect_right(self.sequences, watermark)
        if start == len(self.sequences):
            return None
        return self.part(start, len(self.sequences))

    def before(self, sequence: int) -> MetricDelta | None:
        """The part of this delta from records below `sequence`; None when nothing is left."""
        stop = bisect_left(self.sequences, sequence)
        if stop == 0:
            return None
        return self if stop == len(self.sequences) else self.part(0, stop)

    def part(self, start: int, stop: int) -> MetricDelta:
        """The records at positions [start, stop) of this delta, as a delta of their own."""
        return MetricDelta(
            self.key,
            self.shard_id,
            self.sequences[start:stop],
            self.user_ids[start:stop],
            self.values[start:stop],
            self.first_seen[start:stop],
            self._joins_between(start, stop),
            self.events_counted,
        )

    def _joins_between(self, start: int, stop: int) -> tuple[tuple[int, tuple[str, ...]], ...]:
        if not self.joins or start >= stop:
            return ()
        low, high = self.sequences[start], self.sequences[stop - 1]
        return tuple(join for join in self.joins if low <= join[0] <= high)

    def with_joins(self, joins: Mapping[int, tuple[str, ...]]) -> MetricDelta:
        """This delta with the records' joins (see `joins`), by sequence."""
        return replace(
            self,
            joins=tuple(
                sorted((sequence, metrics) for sequence, metrics in joins.items() if metrics)
            ),
        )

    def joined_users(self) -> dict[str, int]:
        """Per metric, the exposed users who did it that these records join (see `joins`)."""
        joined: dict[str, int] = {}
        for _, metrics in self.joins:
            for metric in metrics:
                joined[metric] = joined.get(metric, 0) + 1
        return joined

    def with_first_seen(self, first_records: Collection[int]) -> MetricDelta:
        """This delta with its records flagged: those whose sequence is in `first_records`."""
        return replace(
            self, first_seen=tuple(sequence in first_records for sequence in self.sequences)
        )

    def first_sequence_of_users(self) -> dict[str, int]:
        """Each user's earliest record in this delta: the record that writes the user's
        first-seen marker for the window, and the one a unique user is counted with."""
        first: dict[str, int] = {}
        for sequence, user_id in zip(self.sequences, self.user_ids, strict=True):
            first.setdefault(user_id, sequence)
        return first


GRANULARITIES: tuple[Granularity, ...] = tuple(Granularity)


def counters_of(metric: str, event_us: int, variants: Iterable[VariantKey]) -> frozenset[MetricKey]:
    """The counters an event of `metric` at `event_us` (epoch microseconds) adds to when it
    counts for `variants`: each variant's hourly, daily and experiment-to-date counter."""
    windows = (
        (Granularity.HOUR, moment_of(hour_of(event_us))),
        (Granularity.DAY, moment_of(day_of(event_us))),
        (Granularity.EXPERIMENT, EXPERIMENT_WINDOW_START),
    )
    return frozenset(
        [
            MetricKey(experiment_id, variant_id, metric, granularity, window_start)
            for experiment_id, variant_id in variants
            for granularity, window_start in windows
        ]
    )
