"""Unique users, the ports: exact (first-seen markers, whose records count each user once in
the counters' own updates) or approximate (sketches that union). docs/storage.md, "Exact unique
users", and docs/performance.md, "Unique users: sketch mode"."""

from __future__ import annotations

import abc
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from application.ports import (
    COMPLETE,
    NO_EARLIER_RECORDS,
    Deadline,
    EarlierRecords,
    RecordId,
    WriteReport,
)
from domain.metrics import MetricDelta, MetricKey

Counter = tuple[MetricKey, str]
"""(counter key, shard_id): what one delta of a batch adds to."""


@dataclass(frozen=True, slots=True)
class MarkerClaims:
    """What writing a batch's first-seen markers told: per (counter, shard), the sequences of
    the records that hold their user's marker for the counter's window (each adds one unique
    user), and what could not be written (`report`: a marker whose fate is unknown leaves its
    shard unfinished from the first record of its user)."""

    first_records: Mapping[Counter, frozenset[int]]
    report: WriteReport = COMPLETE
    joins: Mapping[Counter, Mapping[int, tuple[str, ...]]] = field(default_factory=dict)
    """Experiment-to-date counters: per record holding its marker, the metrics whose exposed
    users it joins (`domain.statistics.joined_metrics`)."""


class UniqueUserMarkers(abc.ABC):
    """Exact unique users: one first-seen marker per (experiment, variant, metric, window, user)
    for every window (hour, day, experiment to date), carrying the record that wrote it. A
    user's experiment-to-date markers of one variant also tell in which order they were written,
    so that the later of the user's exposure and first event of a metric joins the two
    (`MarkerClaims.joins`), whoever writes or retries it.

    A marker is written once, conditionally: the record that wrote it is the one that counts the
    user, in the counter's own watermarked update. A retry or redelivery of that record finds
    the marker holding it and counts the user again (the counter's watermark then keeps it
    once); so does a replayed event's record finding the marker of one of its earlier records
    (`EarlierRecords`: a run that took the event over from one that wrote the marker and died
    before its counter). Any other record finds another record's marker and does not."""

    @abc.abstractmethod
    def mark(
        self,
        deltas: Sequence[MetricDelta],
        deadline: Deadline,
        earlier_records: EarlierRecords = NO_EARLIER_RECORDS,
    ) -> MarkerClaims:
        """Write the markers of each delta's users, the earliest records' first (so that what
        a deadline leaves unwritten is a suffix of each shard) (each user's first record in the
        delta is the marker's record) and say which records hold theirs: a marker held by one
        of the `earlier_records` of a record of the delta's user is that record's
        (`recognised_earlier_records`). A marker refused for good is refused through the first
        record of its user in each shard, and counts no one."""

    @abc.abstractmethod
    def users(self, keys: Collection[MetricKey]) -> dict[MetricKey, frozenset[str]]:
        """The marked users of each counter's window."""


def recognised_earlier_records(
    delta: MetricDelta, earlier_records: EarlierRecords
) -> dict[str, dict[RecordId, int]]:
    """Per user of the delta, the earlier records whose marker is the delta's own, each with the
    sequence of the delta's record that counts the user when the marker holds it. Not only the
    user's first record: a replay's first record of a user may be a new event while a later one
    was taken over from the run that wrote the marker."""
    recognised: dict[str, dict[RecordId, int]] = {}
    if not earlier_records:
        return recognised
    for sequence, user_id in zip(delta.sequences, delta.user_ids, strict=True):
        for earlier in earlier_records.get((delta.shard_id, sequence), ()):
            recognised.setdefault(user_id, {}).setdefault(earlier, sequence)
    return recognised


def counted_deltas(deltas: Sequence[MetricDelta], claims: MarkerClaims) -> list[MetricDelta]:
    """The deltas a metric store applies once the markers are written: each record flagged when
    it holds its user's marker, and each delta stopped before its shard's first record whose
    marker is not known to be written (applied, the counter's watermark would pass a unique user
    that no redelivery could count again)."""
    counted = []
    cut = claims.report.cut
    for delta in deltas:
        counter = (delta.key, delta.shard_id)
        flagged = delta.with_first_seen(claims.first_records.get(counter, frozenset()))
        joins = claims.joins.get(counter)
        if joins:
            flagged = flagged.with_joins(joins)
        limit = cut.of_shard(delta.shard_id)
        kept = flagged if limit is None else flagged.before(limit)
        if kept is not None:
            counted.append(kept)
    return counted


@dataclass(frozen=True, slots=True)
class UniqueEstimate:
    """An approximate number of distinct users, with about a 95% interval around it."""

    estimate: float
    lower_bound: float
    upper_bound: float

    @property
    def users(self) -> int:
        """The estimate as a whole number of users."""
        return round(self.estimate)


NO_USERS = UniqueEstimate(0.0, 0.0, 0.0)


class UserSketches(abc.ABC):
    """Approximate unique users: a sketch of each counter's users, kept per write shard, so that
    a window's users and several windows' users (a range) are the union of stored sketches.

    Adding a user already in a sketch changes nothing, so a redelivered record needs no
    watermark: its users are added again, harmlessly.
    """

    @abc.abstractmethod
    def add(self, deltas: Sequence[MetricDelta], deadline: Deadline) -> WriteReport:
        """Add each delta's users to the sketch of its counter. A delta whose sketch is not
        known to be durable leaves its shard unfinished from the delta's first record; one whose
        sketch DynamoDB refuses for good is refused through each of its records."""

    @abc.abstractmethod
    def estimates(self, keys: Collection[MetricKey]) -> dict[MetricKey, UniqueEstimate]:
        """The distinct users of each counter's window (`NO_USERS` where none were added).
        Strongly consistent."""

    @abc.abstractmethod
    def union_estimate(self, keys: Collection[MetricKey]) -> UniqueEstimate:
        """The distinct users of all these windows together, each user counted once (the union
        of their sketches)."""
