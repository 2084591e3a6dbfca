"""The ports: what the use case needs from the outside world, named by role."""

from __future__ import annotations

import abc
import math
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING

from application.shard_cut import NO_CUT, ShardCut
from domain.archiving import ArchiveObject
from domain.erasure import PersonalItem
from domain.experiments import Assignment, Experiment
from domain.metrics import Granularity, Measures, MetricDelta, MetricKey
from domain.rejections import DeadLetter

if TYPE_CHECKING:
    from application.results import BatchResult


RecordId = tuple[str, int]
"""(shard_id, sequence) of one record of the batch."""

EarlierRecords = Mapping[RecordId, frozenset[RecordId]]
"""Per record applied, the earlier records of the same event whose first-seen markers are its
own: a replayed event taken over from runs that wrote its markers and died before their
counters (`ReplayClaim.earlier_holders`). The stream has none: a redelivery keeps its record."""

NO_EARLIER_RECORDS: EarlierRecords = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class WriteReport:
    """What a write port could not make durable.

    `cut` holds, per shard, the lowest sequence number whose effects in this call are not known
    to be durable; everything below it in that shard is. No cut means all is durable.

    `refused` names the records whose data the store refused for good (a DynamoDB
    `ValidationException` on a number or key size, say), with the store's message: the port
    isolated them (the rest of the call was written) and the use case dead-letters them as
    `unstorable`. A refused record is not unfinished: redelivering it cannot help.
    """

    cut: ShardCut = NO_CUT
    problems: tuple[str, ...] = ()
    refused: Mapping[RecordId, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return not self.cut


COMPLETE = WriteReport()


def merged_reports(reports: Iterable[WriteReport]) -> WriteReport:
    """One report of several writes: per shard the lowest cut, every problem once, every
    refusal."""
    listed = list(reports)
    cut = NO_CUT.merged(*(report.cut for report in listed))
    problems = tuple(dict.fromkeys(p for report in listed for p in report.problems))
    refused = {where: why for report in listed for where, why in report.refused.items()}
    if not cut and not problems and not refused:
        return COMPLETE
    return WriteReport(cut, problems, refused)


COUNTERS_SHARE_OF_TIME = 0.25
"""The share of a write's time left that a metric store keeps for the counters when it writes
the markers first: markers are most of the requests, and a marker written without its counter
moves nothing forward."""


class Deadline(abc.ABC):
    """How long the caller may still work; ports stop starting new requests once it has passed."""

    @abc.abstractmethod
    def expired(self) -> bool: ...

    def remaining_seconds(self) -> float:
        """The time left before it expires (infinite when the deadline cannot tell)."""
        return 0.0 if self.expired() else math.inf


class NoDeadline(Deadline):
    def expired(self) -> bool:
        return False


class ReservingDeadline(Deadline):
    """Expires while a share of `outer`'s time (as it stood when this was made) is still left:
    for a first step whose work a second step must follow within the same deadline."""

    def __init__(self, outer: Deadline, reserved_share: float) -> None:
        self._outer = outer
        remaining = outer.remaining_seconds()
        self._reserve = 0.0 if math.isinf(remaining) else remaining * reserved_share

    def expired(self) -> bool:
        return self._outer.expired() or self._outer.remaining_seconds() <= self._reserve

    def remaining_seconds(self) -> float:
        return max(0.0, self._outer.remaining_seconds() - self._reserve)


class Clock(abc.ABC):
    @abc.abstractmethod
    def now(self) -> datetime:
        """The current time, time-zone aware."""

    @abc.abstractmethod
    def monotonic(self) -> float:
        """Seconds from an arbitrary origin, for measuring durations."""


class AssignmentRepository(abc.ABC):
    """Reads the assignment service's data: which variant each user sees in each experiment."""

    @abc.abstractmethod
    def assignments_for(self, user_ids: Collection[str]) -> dict[str, tuple[Assignment, ...]]:
        """Every assignment of each user; users without any are absent or map to ()."""


class ExperimentRepository(abc.ABC):
    @abc.abstractmethod
    def experiments(self, experiment_ids: Collection[str]) -> dict[str, Experiment]:
        """The experiments that exist among `experiment_ids`."""


@dataclass(frozen=True, slots=True)
class MetricSnapshot:
    """A counter as stored: what reports read.

    Its `measures` hold the window's unique users as stored (`Measures.unique_users`). `user_ids`
    are the window's distinct users themselves (its first-seen markers), read only when a report
    asks for user sets (`MetricStore.snapshots(user_sets=True)`), to take unions or
    intersections over windows: a read whose cost grows with the users, not the counters.
    """

    key: MetricKey
    measures: Measures
    user_ids: frozenset[str] | None = None
    joined: Mapping[str, int] = field(default_factory=dict)
    """Experiment-to-date counters: per metric, the variant's exposed users who did it that
    this counter's records joined (an exposure counter's and the metric's own add up to all of
    them; see `domain.statistics.joined_metrics`)."""

    @property
    def unique_users(self) -> int:
        return len(self.user_ids) if self.user_ids is not None else self.measures.unique_users


class MetricStore(abc.ABC):
    """Holds the real-time counters. Applying the same records twice must not count them twice,
    and each counter's unique users are counted exactly once, at write time."""

    @abc.abstractmethod
    def apply(
        self,
        deltas: Sequence[MetricDelta],
        deadline: Deadline,
        earlier_records: EarlierRecords = NO_EARLIER_RECORDS,
    ) -> WriteReport:
        """Add each delta atomically, skipping records of a shard already applied to that
        counter; its users' first-seen markers are written first (`UniqueUserMarkers.mark`) and
        each record that holds one adds a unique user (`counted_deltas`). A marker held by one
        of a record's `earlier_records` is that record's."""

    @abc.abstractmethod
    def snapshots(
        self,
        experiment_id: str,
        granularity: Granularity,
        start: datetime | None = None,
        end: datetime | None = None,
        user_sets: bool = False,
    ) -> list[MetricSnapshot]:
        """The counters of an experiment whose window starts in [start, end), in key order;
        with `user_sets`, each with its window's users (read from the markers)."""

    @abc.abstractmethod
    def watermarks(self, keys: Collection[MetricKey], shard_id: str) -> dict[MetricKey, int]:
        """The highest sequence number of `shard_id` applied to each of these counters (a
        counter without one is left out). Strongly consistent."""


class EventArchive(abc.ABC):
    @abc.abstractmethod
    def store(self, objects: Sequence[ArchiveObject], deadline: Deadline) -> WriteReport:
        """Write each object durably; rewriting an object already stored is harmless."""


class DeadLetterQueue(abc.ABC):
    @abc.abstractmethod
    def send(self, letters: Sequence[DeadLetter], deadline: Deadline) -> WriteReport:
        """Keep each dead letter durably, with its reason and the original data."""


SeenEvent = RecordId
"""(shard_id, sequence) of the record that first carried an event id."""


class RecentEventIndex(abc.ABC):
    """Remembers which record first carried each recently committed event id.

    It removes producer-side duplicates (the same event id sent in two records) that arrive in
    different batches. A redelivery of the same record is not a duplicate: the metric store's
    per-shard watermark handles it.
    """

    @abc.abstractmethod
    def lookup(self, event_ids: Collection[str]) -> dict[str, SeenEvent]:
        """The record each known id was remembered with; unknown ids are absent. Raises
        `TransientInfrastructureError` when the index cannot be read now."""

    @abc.abstractmethod
    def remember(self, events: Mapping[str, SeenEvent]) -> None:
        """Durable when it returns, or raises `TransientInfrastructureError` (then some, none or
        all of `events` may be held). Called before a batch's writes, with ids that `lookup`
        found unknown or carried by the same record."""


class Telemetry(abc.ABC):
    @abc.abstractmethod
    def publish(self, result: BatchResult) -> None:
        """Report the outcome of one batch (metrics, logs)."""


@dataclass(frozen=True, slots=True)
class ReplayClaim:
    """Which replay run holds a replayed event: the lane (the run's shard id) and the sequence
    number under which the run applies the event's counters.

    A lane's counters move forward in sequence order and a run stops at its first unfinished
    write, so an event's counter holds it exactly when the counter's watermark for the lane has
    reached the sequence number. `applied` lists the counters applied under earlier holders
    (`counter_id`), when a run took the event over from an interrupted one; `earlier_holders`
    are those holders' (lane, sequence), every one since the first: the first-seen markers they
    wrote are the event's own (`EarlierRecords`).
    """

    event_id: str
    lane: str
    sequence: int
    claimed_at: datetime
    applied: frozenset[str] = frozenset()
    archived: bool = False
    complete: bool = False
    """Applied to every counter and archived, as the ledger of an earlier version recorded
    (one item written in the same transaction as the counters)."""
    earlier_holders: frozenset[RecordId] = frozenset()


def counter_id(key: MetricKey) -> str:
    """A counter's name in a claim's `applied` list."""
    return "|".join(
        (
            key.experiment_id,
            key.variant_id,
            key.metric,
            key.granularity.value,
            key.window_start.isoformat(),
        )
    )


class ReplayLedger(abc.ABC):
    """Claims on replayed events, one per event id, so that no two runs count one event.

    Claims are conditional writes on one item each: no transaction is needed (docs/replay.md).
    """

    @abc.abstractmethod
    def start_run(self, lane: str) -> None:
        """Record that a run of this lane is under way."""

    @abc.abstractmethod
    def finish_run(self, lane: str) -> None:
        """Record that the run is over: its unfinished claims may be taken over at once."""

    @abc.abstractmethod
    def finished_runs(self, lanes: Collection[str]) -> set[str]:
        """Those of `lanes` whose run is over."""

    @abc.abstractmethod
    def claim(self, claims: Sequence[ReplayClaim]) -> dict[str, tuple[ReplayClaim, bool]]:
        """Claim each event for its (lane, sequence) unless it is held already. Per event id:
        the claim now held (the one asked for, or another run's) and whether it existed before
        this call (a claim of the same lane and sequence counts as existing: a retry). Raises
        `TransientInfrastructureError` if a claim's fate is unknown."""

    @abc.abstractmethod
    def take_over(self, held: ReplayClaim, new: ReplayClaim) -> bool:
        """Replace `held` by `new` if `held` is still the event's claim, unchanged."""

    @abc.abstractmethod
    def mark_archived(self, event_ids: Collection[str]) -> None:
        """Record that these claimed events are in the archive."""


# -- erasure (application/erasure.py) ---------------------------------------------------------


class PersonalItemStore(abc.ABC):
    """The aggregation table's items that name a user or one of their events: unique-user
    markers, event-id records, replay claims. Addressed by exact key only, never by a scan."""

    @abc.abstractmethod
    def present(self, items: Collection[PersonalItem]) -> set[PersonalItem]:
        """Those of `items` that are stored now (strongly consistent). An item whose key the
        store could never hold (too large) is not present."""

    @abc.abstractmethod
    def delete(self, items: Collection[PersonalItem]) -> None:
        """Delete each item; deleting one that is absent is harmless. Durable when it returns,
        or raises `TransientInfrastructureError` (then some, none or all are deleted)."""


@dataclass(frozen=True, slots=True)
class ArchiveObjectLines:
    """An archive object's lines as read, and the version read: a token (S3's ETag) that
    changes whenever the object is written, so a rewrite can be made on this reading only."""

    lines: tuple[bytes, ...]
    version: str


class ArchiveEditor(abc.ABC):
    """The archive's objects as whole sets of lines, for erasing lines from them.

    Writes are conditional on the version read: two erasures editing one object at once must
    not undo each other's edit, so a write made from a stale reading raises
    `domain.errors.ArchiveObjectChangedError` and changes nothing; the caller reads again.
    """

    @abc.abstractmethod
    def object_keys(self) -> Iterator[str]:
        """Every archive object's key, in key order."""

    @abc.abstractmethod
    def read_lines(self, key: str) -> ArchiveObjectLines:
        """The object's lines, without their line ends, and the version they were read at."""

    @abc.abstractmethod
    def replace(self, key: str, lines: Sequence[bytes], version: str) -> None:
        """Write `lines` (at least one) as the object under the same key, in one atomic write:
        readers see the old object or the new one, never a part. Only if the object is still
        at `version`: otherwise (written or deleted since) `ArchiveObjectChangedError`."""

    @abc.abstractmethod
    def delete(self, key: str, version: str) -> None:
        """Delete the object if it is still at `version` (otherwise `ArchiveObjectChangedError`);
        deleting one that is absent is harmless."""


@dataclass(frozen=True, slots=True)
class HeldDeadLetter:
    """A dead letter taken out of sight of other readers until it is removed or released.
    `letter` is None when the stored message cannot be read as a letter (`problem` says why)."""

    handle: str
    letter: DeadLetter | None
    problem: str = ""


class DeadLetterBacklog(abc.ABC):
    """The dead letters kept (a queue, or objects), to take some of them out for good."""

    name: str = "dead letters"

    @abc.abstractmethod
    def hold(self) -> list[HeldDeadLetter]:
        """Every letter now kept, each held (a queue: invisible to other consumers) until
        `remove` or `release`."""

    @abc.abstractmethod
    def remove(self, handles: Collection[str]) -> None:
        """Delete the held letters for good (with any data stored apart from them)."""

    @abc.abstractmethod
    def release(self, handles: Collection[str]) -> None:
        """Give the held letters back, visible again at once."""
