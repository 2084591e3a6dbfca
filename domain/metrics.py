"""Real-time metric counters: the keys they are kept under and the deltas a batch adds to them."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from itertools import islice
from operator import itemgetter, lt
from sys import intern

from domain.attribution import EnrichedEvent, VariantKey, as_columns
from domain.events import AcceptedColumns
from domain.limits import COUNTER_CONTEXT


class Granularity(StrEnum):
    HOUR = "hour"
    DAY = "day"

    def window_start(self, moment: datetime) -> datetime:
        utc = moment.astimezone(UTC)
        if self is Granularity.HOUR:
            return utc.replace(minute=0, second=0, microsecond=0)
        return utc.replace(hour=0, minute=0, second=0, microsecond=0)

    @property
    def length(self) -> timedelta:
        return timedelta(hours=1) if self is Granularity.HOUR else timedelta(days=1)


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
            return self.window_start.strftime("%Y-%m-%dT%H")
        return self.window_start.strftime("%Y-%m-%d")


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
    add up as a number, so the unique-user markers keep them apart.

    A new measure is a field here with a zero default, its rule in `of_records`, `__add__` and
    `from_stored`, and its place in the report's output formats.
    """

    event_count: int = 0
    value_sum: Decimal = Decimal(0)
    """Exact: adding raises `decimal.Inexact` (a `decimal.DecimalException`) rather than round,
    which the contract's bound on `value` keeps out of reach of any batch."""
    value_count: int = 0
    """The events that carried a value: the denominator of the mean value."""

    @classmethod
    def of_records(cls, values: Iterable[Decimal | None]) -> Measures:
        """The measures of records carrying these values (None: the event had no value)."""
        event_count = value_count = 0
        value_sum = Decimal(0)
        add = COUNTER_CONTEXT.add
        for value in values:
            event_count += 1
            if value is not None:
                value_sum = add(value_sum, value)
                value_count += 1
        return cls(event_count, value_sum, value_count)

    def __add__(self, other: Measures) -> Measures:
        """Decimals add in the current context: a store adds its counters in DynamoDB's
        (`decimal.localcontext(COUNTER_CONTEXT)`, which raises rather than round), a report
        its totals in Python's default one."""
        return Measures(
            self.event_count + other.event_count,
            self.value_sum + other.value_sum,
            self.value_count + other.value_count,
        )

    @classmethod
    def from_stored(cls, count: Callable[[str], int], amount: Callable[[str], Decimal]) -> Measures:
        """The measures as a store keeps them: `count(name)` reads a whole-number measure,
        `amount(name)` a decimal one."""
        return cls(count("event_count"), amount("value_sum"), count("value_count"))

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
NO_MEASURES = Measures()


@dataclass(frozen=True, slots=True)
class MetricDelta:
    """What one batch adds to one counter, with the records it came from.

    The per-record columns (`sequences`, `user_ids`, `values`, in strictly increasing sequence order) let a store
    that has already applied a prefix of these records apply only the rest (see `after`).
    """

    key: MetricKey
    shard_id: str
    sequences: tuple[int, ...]
    user_ids: tuple[str, ...]
    values: tuple[Decimal | None, ...]

    @property
    def event_count(self) -> int:
        """The number of records (a refused delta is split by halves of them)."""
        return len(self.sequences)

    @property
    def measures(self) -> Measures:
        """What these records add to the counter: exact, see `Measures.of_records`."""
        return Measures.of_records(self.values)

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
        return MetricDelta(
            self.key,
            self.shard_id,
            self.sequences[start:],
            self.user_ids[start:],
            self.values[start:],
        )

    def part(self, start: int, stop: int) -> MetricDelta:
        """The records at positions [start, stop) of this delta, as a delta of their own."""
        return MetricDelta(
            self.key,
            self.shard_id,
            self.sequences[start:stop],
            self.user_ids[start:stop],
            self.values[start:stop],
        )

    def first_sequence_of_users(self) -> dict[str, int]:
        """Each user's earliest record in this delta (for reporting unfinished unique-user work)."""
        first: dict[str, int] = {}
        for sequence, user_id in zip(self.sequences, self.user_ids, strict=True):
            first.setdefault(user_id, sequence)
        return first


GRANULARITIES: tuple[Granularity, ...] = (Granularity.HOUR, Granularity.DAY)


_HOUR_US = 3_600_000_000
_DAY_US = 24 * _HOUR_US
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _window_start_of(window_us: int) -> datetime:
    """The UTC window start as `Granularity.window_start` returns it, from epoch microseconds."""
    return _EPOCH + timedelta(microseconds=window_us)


def counters_of(metric: str, event_us: int, variants: Iterable[VariantKey]) -> frozenset[MetricKey]:
    """The counters an event of `metric` at `event_us` (epoch microseconds) adds to when it
    counts for `variants`: each variant's hourly and daily counter."""
    hour_us = event_us - event_us % _HOUR_US
    windows = (
        (Granularity.HOUR, _window_start_of(hour_us)),
        (Granularity.DAY, _window_start_of(hour_us - hour_us % _DAY_US)),
    )
    return frozenset(
        [
            MetricKey(experiment_id, variant_id, metric, granularity, window_start)
            for experiment_id, variant_id in variants
            for granularity, window_start in windows
        ]
    )


_Row = tuple[int, str, Decimal | None]
"""(sequence, user id, value) of one record counted by one counter; the same tuple serves
every counter a record counts for."""


def aggregate(events: Iterable[EnrichedEvent]) -> list[MetricDelta]:
    """Pre-aggregate a batch into one delta per (counter, shard), hourly and daily.

    Records are gathered per hourly counter only; each daily delta is the union of the hourly
    ones of its day. Counter keys are plain tuples until the end, so a batch builds one
    `MetricKey` per counter instead of one per record and attribution. Within a delta records
    are in sequence order (a stable sort, skipped when they already are).
    """
    accumulator = MetricAccumulator()
    accumulator.add(events)
    return accumulator.deltas()


_HourKey = tuple[str, str, str, int, str]
"""(experiment_id, variant_id, metric, hour start in epoch microseconds, shard_id)."""

_Context = tuple[str, int, str]
"""(metric, hour start in epoch microseconds, shard_id): what the events of one hourly counter
share besides the variant."""


class MetricAccumulator:
    """`aggregate` in installments: events are added part by part (a batch processed in
    chunks keeps only these rows, not its events), and `deltas()` is what `aggregate` of
    all the events added, in the order added, returns."""

    __slots__ = ("_hourly",)

    def __init__(self) -> None:
        self._hourly: dict[_Context, dict[VariantKey, list[_Row]]] = {}

    def add(self, events: Iterable[EnrichedEvent]) -> None:
        columns, matches = as_columns(list(events))
        self.add_columns(columns, matches.variants)

    def add_columns(
        self, events: AcceptedColumns, variants: Iterable[tuple[VariantKey, ...]]
    ) -> None:
        """`add` for the pipeline's columns: the events and the variants each counts for (see
        `domain.attribution.match_columns`)."""
        hourly = self._hourly
        for event, coordinates, event_us, event_variants in zip(
            events.events, events.coordinates, events.times_us, variants, strict=True
        ):
            if not event_variants:
                continue
            value = event.value
            # Interned: the rows, and the unique-user sets they end in, then share one string
            # per user (the warm cache's key) instead of keeping each event's copy alive.
            row = (
                coordinates.sequence,
                intern(event.user_id),
                None if value is None else to_decimal(value),
            )
            context = (event.event_type, event_us - event_us % _HOUR_US, coordinates.shard_id)
            by_variant = hourly.get(context)
            if by_variant is None:
                by_variant = hourly[context] = {}
            for variant in event_variants:
                rows = by_variant.get(variant)
                if rows is None:
                    by_variant[variant] = [row]
                else:
                    rows.append(row)

    def restrict(self, keep: Callable[[str, int], bool]) -> None:
        """Forget the records of which `keep(shard_id, sequence)` is false."""
        for context in list(self._hourly):
            shard_id = context[2]
            by_variant = self._hourly[context]
            for variant in list(by_variant):
                kept = [row for row in by_variant[variant] if keep(shard_id, row[0])]
                if kept:
                    by_variant[variant] = kept
                else:
                    del by_variant[variant]
            if not by_variant:
                del self._hourly[context]

    def unplaceable(self) -> dict[tuple[str, int], str]:
        """Forget the records whose hour or day has no window start (a date out of the
        calendar's range), and name each (shard_id, sequence) with why: defence in depth, the
        contract's time window keeps every accepted event placeable."""
        refused: dict[tuple[str, int], str] = {}
        for context in list(self._hourly):
            _metric, hour_us, shard_id = context
            try:
                _window_start_of(hour_us - hour_us % _DAY_US)
                _window_start_of(hour_us)
            except (OverflowError, ValueError) as error:
                for rows in self._hourly.pop(context).values():
                    for row in rows:
                        refused[(shard_id, row[0])] = f"no counter window for its time: {error}"
        return refused

    def deltas(self) -> list[MetricDelta]:
        hourly = {
            (experiment_id, variant_id, metric, hour_us, shard_id): rows
            for (metric, hour_us, shard_id), by_variant in self._hourly.items()
            for (experiment_id, variant_id), rows in by_variant.items()
        }
        daily: dict[_HourKey, list[_Row]] = {}
        for (experiment_id, variant_id, metric, hour_us, shard_id), rows in hourly.items():
            day_key = (experiment_id, variant_id, metric, hour_us - hour_us % _DAY_US, shard_id)
            day_rows = daily.get(day_key)
            if day_rows is None:
                daily[day_key] = list(rows)
            else:
                day_rows.extend(rows)

        windows: dict[int, datetime] = {}
        keyed: list[tuple[tuple[str, str, str, Granularity, int, str], list[_Row]]] = []
        for (experiment_id, variant_id, metric, hour_us, shard_id), rows in hourly.items():
            keyed.append(
                ((experiment_id, variant_id, metric, Granularity.HOUR, hour_us, shard_id), rows)
            )
        for (experiment_id, variant_id, metric, day_us, shard_id), rows in daily.items():
            keyed.append(
                ((experiment_id, variant_id, metric, Granularity.DAY, day_us, shard_id), rows)
            )
        # The order of (MetricKey, shard): key fields in declaration order, window start as
        # instant.
        keyed.sort(key=lambda item: item[0])

        deltas = []
        for (experiment_id, variant_id, metric, granularity, window_us, shard_id), rows in keyed:
            window_start = windows.get(window_us)
            if window_start is None:
                window_start = windows[window_us] = _window_start_of(window_us)
            sequences, user_ids, values = _in_sequence_order(rows)
            deltas.append(
                MetricDelta(
                    MetricKey(experiment_id, variant_id, metric, granularity, window_start),
                    shard_id,
                    sequences,
                    user_ids,
                    values,
                )
            )
        return deltas


def _in_sequence_order(
    rows: list[_Row],
) -> tuple[tuple[int, ...], tuple[str, ...], tuple[Decimal | None, ...]]:
    """The rows' columns in sequence order (a stable sort, skipped when they already are)."""
    sequences, user_ids, values = zip(*rows, strict=True)
    if all(map(lt, sequences, islice(sequences, 1, None))):
        return sequences, user_ids, values
    sequences, user_ids, values = zip(*sorted(rows, key=_sequence_of), strict=True)
    return sequences, user_ids, values


_sequence_of = itemgetter(0)
