"""Real-time metric counters: the keys they are kept under and the deltas a batch adds to them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from domain.attribution import EnrichedEvent


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


def aggregate(events: Iterable[EnrichedEvent]) -> list[MetricDelta]:
    """Pre-aggregate a batch into one delta per (counter, shard), hourly and daily."""
    columns: dict[tuple[MetricKey, str], tuple[list[int], list[str], list[Decimal | None]]] = {}
    window_cache: dict[tuple[Granularity, datetime], datetime] = {}
    for enriched in events:
        if not enriched.attributions:
            continue
        accepted = enriched.accepted
        event = accepted.event
        sequence = accepted.sequence
        shard_id = accepted.coordinates.shard_id
        value = None if event.value is None else to_decimal(event.value)
        for granularity in GRANULARITIES:
            cache_key = (granularity, event.timestamp)
            window_start = window_cache.get(cache_key)
            if window_start is None:
                window_start = granularity.window_start(event.timestamp)
                window_cache[cache_key] = window_start
            for attribution in enriched.attributions:
                key = MetricKey(
                    attribution.experiment_id,
                    attribution.variant_id,
                    event.event_type,
                    granularity,
                    window_start,
                )
                column = columns.get((key, shard_id))
                if column is None:
                    column = ([], [], [])
                    columns[(key, shard_id)] = column
                column[0].append(sequence)
                column[1].append(event.user_id)
                column[2].append(value)
    deltas = []
    for (key, shard_id), (sequences, user_ids, values) in columns.items():
        order = sorted(range(len(sequences)), key=sequences.__getitem__)
        deltas.append(
            MetricDelta(
                key,
                shard_id,
                tuple(sequences[i] for i in order),
                tuple(user_ids[i] for i in order),
                tuple(values[i] for i in order),
            )
        )
    deltas.sort(key=lambda delta: (delta.key, delta.shard_id))
    return deltas
