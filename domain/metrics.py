"""Real-time metric counters: the keys they are kept under and the deltas a batch adds to them."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from itertools import pairwise
from sys import intern

from domain.attribution import EnrichedEvent, Matched


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
class MetricDelta:
    """What one batch adds to one counter, with the records it came from.

    The per-record columns (`sequences`, `user_ids`, `values`, in sequence order) let a store
    that has already applied a prefix of these records apply only the rest (see `after`).
    """

    key: MetricKey
    shard_id: str
    sequences: tuple[int, ...]
    user_ids: tuple[str, ...]
    values: tuple[Decimal | None, ...]

    @property
    def event_count(self) -> int:
        return len(self.sequences)

    @property
    def value_sum(self) -> Decimal:
        return sum((value for value in self.values if value is not None), Decimal(0))

    @property
    def value_count(self) -> int:
        return sum(1 for value in self.values if value is not None)

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
        keep = [index for index, sequence in enumerate(self.sequences) if sequence > watermark]
        if not keep:
            return None
        return MetricDelta(
            self.key,
            self.shard_id,
            tuple(self.sequences[i] for i in keep),
            tuple(self.user_ids[i] for i in keep),
            tuple(self.values[i] for i in keep),
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


_Column = tuple[list[int], list[str], list[Decimal | None]]


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


class MetricAccumulator:
    """`aggregate` in installments: events are added part by part (a batch processed in
    chunks keeps only these columns, not its events), and `deltas()` is what `aggregate` of
    all the events added, in the order added, returns."""

    __slots__ = ("_hourly",)

    def __init__(self) -> None:
        self._hourly: dict[_HourKey, _Column] = {}

    def add(self, events: Iterable[EnrichedEvent]) -> None:
        self.add_matched(
            (
                enriched.accepted,
                enriched.event_time_us,
                tuple(
                    [
                        (a.experiment_id, a.variant_id, a.time_since_assignment_seconds)
                        for a in enriched.attributions
                    ]
                ),
            )
            for enriched in events
        )

    def add_matched(self, events: Iterable[Matched]) -> None:
        """`add` for the pipeline's plain tuples (see `domain.attribution.match_batch`)."""
        hourly = self._hourly
        for accepted, event_us, matches in events:
            if not matches:
                continue
            event = accepted.event
            coordinates = accepted.coordinates
            sequence = coordinates.sequence
            shard_id = coordinates.shard_id
            # Interned: the columns, and the unique-user sets they end in, then share one string
            # per user (the warm cache's key) instead of keeping each event's copy alive.
            user_id = intern(event.user_id)
            value = None if event.value is None else to_decimal(event.value)
            hour_us = event_us - event_us % _HOUR_US
            metric = event.event_type
            for experiment_id, variant_id, _ in matches:
                key = (experiment_id, variant_id, metric, hour_us, shard_id)
                column = hourly.get(key)
                if column is None:
                    hourly[key] = ([sequence], [user_id], [value])
                else:
                    column[0].append(sequence)
                    column[1].append(user_id)
                    column[2].append(value)

    def restrict(self, keep: Callable[[str, int], bool]) -> None:
        """Forget the records of which `keep(shard_id, sequence)` is false."""
        for key in list(self._hourly):
            sequences, user_ids, values = self._hourly[key]
            shard_id = key[4]
            kept = [i for i, sequence in enumerate(sequences) if keep(shard_id, sequence)]
            if not kept:
                del self._hourly[key]
            elif len(kept) < len(sequences):
                self._hourly[key] = (
                    [sequences[i] for i in kept],
                    [user_ids[i] for i in kept],
                    [values[i] for i in kept],
                )

    def deltas(self) -> list[MetricDelta]:
        hourly = self._hourly
        daily: dict[_HourKey, list[_Column]] = {}
        for (experiment_id, variant_id, metric, hour_us, shard_id), column in hourly.items():
            day_key = (experiment_id, variant_id, metric, hour_us - hour_us % _DAY_US, shard_id)
            daily.setdefault(day_key, []).append(column)

        windows: dict[int, datetime] = {}
        keyed: list[tuple[tuple[str, str, str, Granularity, int, str], _Column]] = []
        for (experiment_id, variant_id, metric, hour_us, shard_id), column in hourly.items():
            keyed.append(
                ((experiment_id, variant_id, metric, Granularity.HOUR, hour_us, shard_id), column)
            )
        for (experiment_id, variant_id, metric, day_us, shard_id), columns in daily.items():
            merged: _Column = ([], [], [])
            for hour_column in columns:
                merged[0].extend(hour_column[0])
                merged[1].extend(hour_column[1])
                merged[2].extend(hour_column[2])
            keyed.append(
                ((experiment_id, variant_id, metric, Granularity.DAY, day_us, shard_id), merged)
            )
        # The order of (MetricKey, shard): key fields in declaration order, window start as
        # instant.
        keyed.sort(key=lambda item: item[0])

        deltas = []
        for (experiment_id, variant_id, metric, granularity, window_us, shard_id), column in keyed:
            window_start = windows.get(window_us)
            if window_start is None:
                window_start = windows[window_us] = _window_start_of(window_us)
            sequences, user_ids, values = _in_sequence_order(column)
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
    column: _Column,
) -> tuple[tuple[int, ...], tuple[str, ...], tuple[Decimal | None, ...]]:
    sequences, user_ids, values = column
    if all(a < b for a, b in pairwise(sequences)):
        return tuple(sequences), tuple(user_ids), tuple(values)
    order = sorted(range(len(sequences)), key=sequences.__getitem__)
    return (
        tuple(sequences[i] for i in order),
        tuple(user_ids[i] for i in order),
        tuple(values[i] for i in order),
    )
