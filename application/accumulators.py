"""The mutable working structures of a segment's writes: what the counters and the archive
need of the events prepared so far, kept chunk by chunk.

They live for one segment (or one replay call) and are thrown away with it, beside the
segment's other working state (`application.batch_work`); the domain's values and rules they
build (`MetricDelta`, `ArchiveObject`, the archive line format) are immutable.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable
from datetime import datetime
from decimal import Decimal
from itertools import accumulate, islice
from operator import itemgetter, lt
from sys import intern

from domain.archiving import ArchiveLimits, ArchiveLineWriter, ArchiveObject
from domain.attribution import Matches, VariantKey
from domain.events import AcceptedColumns
from domain.metrics import Granularity, MetricDelta, MetricKey, to_decimal
from domain.partitions import hour_partition_of
from domain.time import HOUR_US, day_of, moment_of

_Row = tuple[int, str, Decimal | None]
"""(sequence, user id, value) of one record counted by one counter; the same tuple serves
every counter a record counts for."""


_HourKey = tuple[str, str, str, int, str]
"""(experiment_id, variant_id, metric, hour start in epoch microseconds, shard_id)."""

_Context = tuple[str, int, str]
"""(metric, hour start in epoch microseconds, shard_id): what the events of one hourly counter
share besides the variant."""


class MetricAccumulator:
    """The counters' deltas of a segment, in installments: events are added chunk by chunk
    (the segment keeps only these rows, not its events), and `deltas()` gives one delta per
    (counter, shard), hourly, daily and experiment to date, for all the events added.

    Records are gathered per hourly counter only; each daily delta is the union of the hourly
    ones of its day, and each experiment-to-date delta of all of them. Counter keys are plain tuples until the end, so a segment builds one
    `MetricKey` per counter instead of one per record and attribution. Within a delta records
    are in sequence order (a stable sort, skipped when they already are)."""

    __slots__ = ("_hourly",)

    def __init__(self) -> None:
        self._hourly: dict[_Context, dict[VariantKey, list[_Row]]] = {}

    def add_columns(
        self, events: AcceptedColumns, variants: Iterable[tuple[VariantKey, ...]]
    ) -> None:
        """Add the events and the variants each counts for (see
        `domain.attribution.match_columns`); an event that counts for none adds nothing."""
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
            context = (event.event_type, event_us - event_us % HOUR_US, coordinates.shard_id)
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
                moment_of(day_of(hour_us))
                moment_of(hour_us)
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
        to_date: dict[_HourKey, list[_Row]] = {}
        for (experiment_id, variant_id, metric, hour_us, shard_id), rows in hourly.items():
            for window_us, by_window in (
                (day_of(hour_us), daily),
                (_EXPERIMENT_WINDOW_US, to_date),
            ):
                window_key = (experiment_id, variant_id, metric, window_us, shard_id)
                window_rows = by_window.get(window_key)
                if window_rows is None:
                    by_window[window_key] = list(rows)
                else:
                    window_rows.extend(rows)

        windows: dict[int, datetime] = {}
        keyed: list[tuple[tuple[str, str, str, Granularity, int, str], list[_Row]]] = [
            ((experiment_id, variant_id, metric, granularity, window_us, shard_id), rows)
            for granularity, by_window in (
                (Granularity.HOUR, hourly),
                (Granularity.DAY, daily),
                (Granularity.EXPERIMENT, to_date),
            )
            for (experiment_id, variant_id, metric, window_us, shard_id), rows in by_window.items()
        ]
        # The order of (MetricKey, shard): key fields in declaration order, window start as
        # instant.
        keyed.sort(key=lambda item: item[0])

        deltas = []
        for (experiment_id, variant_id, metric, granularity, window_us, shard_id), rows in keyed:
            window_start = windows.get(window_us)
            if window_start is None:
                window_start = windows[window_us] = moment_of(window_us)
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
_EXPERIMENT_WINDOW_US = 0
"""`EXPERIMENT_WINDOW_START` in epoch microseconds."""


_Member = tuple[int, bytes, str]
"""(sequence, archive line, event id) of one event."""


class ArchiveAccumulator:
    """The archive objects of a segment, in installments: each event is turned into its
    archive line when added (the segment keeps the lines, not its events), and `objects()`
    groups the lines of all the events added by (hour of event time, shard) into objects
    within the size limits, each in sequence order."""

    __slots__ = ("_groups", "_limits", "_writer")

    def __init__(self, limits: ArchiveLimits, writer: ArchiveLineWriter | None = None) -> None:
        self._limits = limits
        self._writer = writer or ArchiveLineWriter()
        self._groups: dict[tuple[int, str], list[_Member]] = {}

    def add_columns(self, events: AcceptedColumns, matches: Matches) -> None:
        """Add the events and their attributions (see `domain.attribution.match_columns`).
        Each event's line is built here, by the writer (see `ArchiveLineWriter.lines`)."""
        groups = self._groups
        lines = self._writer.lines(events, matches)
        for line, event, coordinates, event_us in zip(
            lines, events.events, events.coordinates, events.times_us, strict=True
        ):
            member = (coordinates.sequence, line, event.event_id)
            key = (event_us - event_us % HOUR_US, coordinates.shard_id)  # inline: per event
            group = groups.get(key)
            if group is None:
                groups[key] = [member]
            else:
                group.append(member)

    def restrict(self, keep: Callable[[str, int], bool]) -> None:
        """Forget the events of which `keep(shard_id, sequence)` is false."""
        for key in list(self._groups):
            shard_id = key[1]
            kept = [member for member in self._groups[key] if keep(shard_id, member[0])]
            if kept:
                self._groups[key] = kept
            else:
                del self._groups[key]

    def unplaceable(self) -> dict[tuple[str, int], str]:
        """Forget the events whose hour has no archive partition (a date out of the calendar's
        range), and name each (shard_id, sequence) with why: defence in depth, the contract's
        time window keeps every accepted event placeable."""
        refused: dict[tuple[str, int], str] = {}
        for key in list(self._groups):
            hour_us, shard_id = key
            try:
                hour_partition_of(hour_us)
            except (OverflowError, ValueError) as error:
                for member in self._groups.pop(key):
                    refused[(shard_id, member[0])] = f"no archive partition for its hour: {error}"
        return refused

    def objects(self) -> list[ArchiveObject]:
        """The objects, in (partition, shard) order; the lines are handed over (this empties
        the accumulator), so that each line is held once, in its object's body."""
        limits = self._limits
        groups = self._groups
        self._groups = {}
        partitions = {hour_us: hour_partition_of(hour_us) for hour_us, _ in groups}
        objects: list[ArchiveObject] = []
        for hour_us, shard_id in sorted(groups, key=lambda key: (partitions[key[0]], key[1])):
            partition = partitions[hour_us]
            members = groups.pop((hour_us, shard_id))
            sequences, lines, event_ids = zip(*members, strict=True)
            if not all(map(lt, sequences, islice(sequences, 1, None))):
                members.sort(key=_by_sequence)
                sequences, lines, event_ids = zip(*members, strict=True)
            del members
            # Cut into objects of at most max_events_per_object lines and, unless one line is
            # larger, max_bytes_per_object bytes: sizes[i] is the size of lines[: i + 1].
            sizes = list(accumulate(map(len, lines)))
            start = 0
            while start < len(lines):
                end = min(start + limits.max_events_per_object, len(lines))
                before = sizes[start - 1] if start else 0
                if sizes[end - 1] - before > limits.max_bytes_per_object:
                    limit = before + limits.max_bytes_per_object
                    end = max(start + 1, bisect_right(sizes, limit, start, end))
                objects.append(
                    ArchiveObject(
                        partition,
                        shard_id,
                        sequences[start],
                        sequences[end - 1],
                        end - start,
                        b"".join(lines[start:end]),
                        event_ids[start:end],
                        sequences[start:end],
                    )
                )
                start = end
        return objects


def _by_sequence(member: _Member) -> int:
    return member[0]
