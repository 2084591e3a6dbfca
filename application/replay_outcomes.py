"""What a replay is asked and what it answers: the items fed back, the options, each item's
outcome and the run's result, and the lane a run counts its events under."""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from domain.records import RawRecord
from domain.rejections import RejectionReason

REPLAY_SHARD_PREFIX = "replay-"
"""Events fed back by a dead-letter or file replay are counted under a lane of their run: a shard
id `replay-<run>` whose sequence numbers are the run's own (1, 2, ... in the order read), and they
keep those coordinates in the archive. An archive replay sends them back through the ledger
under the same coordinates, never through the stream's path."""

CLAIM_LEASE = timedelta(minutes=15)
"""How long a claim of a run that did not say it finished protects its event: a run applies a
batch seconds after claiming it, so an older claim whose counters are not all applied belongs
to a run that was interrupted, and another run takes the event over."""


def new_lane(moment: datetime) -> str:
    """A run's own lane: never reused, so that its sequence numbers only move forward."""
    return f"{REPLAY_SHARD_PREFIX}{moment.astimezone(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(4)}"


class ReplayStatus(StrEnum):
    APPLIED = "applied"
    ALREADY_APPLIED = "already_applied"
    UNATTRIBUTED = "unattributed"
    DUPLICATE = "duplicate"
    INVALID = "invalid"
    FAILED = "failed"
    VALID = "valid"
    """Dry run only: the event would be replayed."""

    @property
    def settled(self) -> bool:
        """Done for good: a dead-letter message in this state may be deleted."""
        return self in {
            ReplayStatus.APPLIED,
            ReplayStatus.ALREADY_APPLIED,
            ReplayStatus.UNATTRIBUTED,
            ReplayStatus.DUPLICATE,
        }


@dataclass(frozen=True, slots=True)
class ReplayItem:
    """A record to replay and a handle on where it came from (a message, a file line)."""

    source: str
    record: RawRecord


@dataclass(frozen=True, slots=True)
class ItemOutcome:
    source: str
    status: ReplayStatus
    event_id: str | None = None
    reason: RejectionReason | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ReplayResult:
    outcomes: tuple[ItemOutcome, ...]
    archived_objects: int = 0
    problems: tuple[str, ...] = ()
    interrupted: bool = False
    """A write of this call is unfinished: the run must stop here (its lane's later events
    would move watermarks past the unfinished ones), and be run again."""

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(outcome.status.value for outcome in self.outcomes))

    @property
    def invalid_reasons(self) -> dict[str, int]:
        return dict(Counter(o.reason.value for o in self.outcomes if o.reason is not None))

    def settled_sources(self) -> list[str]:
        return [o.source for o in self.outcomes if o.status.settled]


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    archive: bool = True
    """False for replays of the archive itself: those events are archived already."""
    dry_run: bool = False


def not_attempted(items: Sequence[ReplayItem], why: str) -> ReplayResult:
    """The outcome of items a run did not get to (it stopped at an unfinished write)."""
    return ReplayResult(
        tuple(ItemOutcome(item.source, ReplayStatus.FAILED, detail=why) for item in items)
    )
