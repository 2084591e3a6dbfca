"""Who applies a replayed event's counters: the claims of a replay call in the ledger.

An event is claimed for the coordinates it is counted under; what earlier holders applied is
read from their lanes' watermarks; the call applies the rest when the claim is its own or taken
over from a run that is over (docs/replay.md)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from application.ports import MetricStore, ReplayClaim, ReplayLedger, counter_id
from application.replay_outcomes import ReplayStatus
from domain.attribution import VariantKey
from domain.metrics import MetricKey, counters_of


@dataclass(slots=True)
class PendingEvent:
    """One attributed event of a replay call and what is known of its claim."""

    source: str
    position: int
    """The event's place in the call's columns."""
    event_id: str
    coordinates: tuple[str, int]
    metric: str
    event_us: int
    variants: tuple[VariantKey, ...]
    held: ReplayClaim | None = None
    existed: bool = False
    applied: frozenset[MetricKey] = frozenset()
    orphaned: bool = False
    """Held by a run that is over (or whose claim outlived the lease): nobody else will
    archive the event."""
    status: ReplayStatus | None = None
    detail: str = ""
    _keys: frozenset[MetricKey] | None = None

    @property
    def keys(self) -> frozenset[MetricKey]:
        """The counters the event adds to (hourly and daily, per attribution)."""
        if self._keys is None:
            self._keys = counters_of(self.metric, self.event_us, self.variants)
        return self._keys


class ReplayClaims:
    """The ledger's side of a replay call: claim its events, decide which ones it applies."""

    def __init__(self, ledger: ReplayLedger, metrics: MetricStore, lease: timedelta) -> None:
        self._ledger = ledger
        self._metrics = metrics
        self._lease = lease

    def claim(self, pending: list[PendingEvent], now: datetime) -> list[PendingEvent]:
        """Claim every event; return those with counters to apply under their coordinates."""
        asked = [
            ReplayClaim(waiting.event_id, *waiting.coordinates, claimed_at=now)
            for waiting in pending
        ]
        answers = self._ledger.claim(asked)
        for waiting in pending:
            waiting.held, waiting.existed = answers[waiting.event_id]
        self._read_applied(pending)
        finished = self._ledger.finished_runs(
            {w.held.lane for w in pending if w.held is not None and not is_own(w)}
        )
        to_apply = []
        for waiting in pending:
            held = waiting.held
            assert held is not None
            waiting.orphaned = held.lane in finished or held.claimed_at + self._lease <= now
            if self._decide(waiting, held, now):
                to_apply.append(waiting)
        return to_apply

    def _read_applied(self, pending: Sequence[PendingEvent]) -> None:
        """What earlier holders applied: their lanes' watermarks on the event's counters."""
        by_lane: dict[str, list[PendingEvent]] = defaultdict(list)
        for waiting in pending:
            assert waiting.held is not None
            if waiting.existed and not waiting.held.complete:
                by_lane[waiting.held.lane].append(waiting)
        for lane, waiting_events in by_lane.items():
            keys = {key for waiting in waiting_events for key in waiting.keys}
            watermarks = self._metrics.watermarks(keys, lane)
            for waiting in waiting_events:
                assert waiting.held is not None
                waiting.applied = frozenset(
                    key
                    for key in waiting.keys
                    if counter_id(key) in waiting.held.applied
                    or watermarks.get(key, -1) >= waiting.held.sequence
                )

    def _decide(self, waiting: PendingEvent, held: ReplayClaim, now: datetime) -> bool:
        """True when this call applies the event's counters: its own claim, or one taken over
        from a run that is over; otherwise the event's status says why not."""
        if held.complete or waiting.applied >= waiting.keys:
            waiting.status = ReplayStatus.ALREADY_APPLIED
            return False
        if is_own(waiting):
            return True
        if waiting.orphaned:
            new = ReplayClaim(
                waiting.event_id,
                *waiting.coordinates,
                claimed_at=now,
                applied=frozenset(counter_id(key) for key in waiting.applied),
                # The markers any holder wrote before it died are the event's own.
                earlier_holders=held.earlier_holders | {(held.lane, held.sequence)},
            )
            if self._ledger.take_over(held, new):
                waiting.held = new
                return True
            waiting.status = ReplayStatus.FAILED
            waiting.detail = "another run took this event over meanwhile; run again"
            return False
        waiting.status = ReplayStatus.FAILED
        waiting.detail = (
            f"held by replay run {held.lane} since {held.claimed_at:%Y-%m-%d %H:%M:%S} "
            f"UTC (running, or interrupted: taken over from "
            f"{held.claimed_at + self._lease:%H:%M:%S} UTC on)"
        )
        return False

    def to_archive(self, waiting: PendingEvent) -> bool:
        """Applied now, or applied by a holder that will not archive it (itself, or a run
        that is over) and not archived yet."""
        if waiting.status is ReplayStatus.APPLIED:
            return True
        held = waiting.held
        return (
            waiting.status is ReplayStatus.ALREADY_APPLIED
            and held is not None
            and (waiting.orphaned or is_own(waiting))
            and not (held.archived or held.complete)
        )


def is_own(waiting: PendingEvent) -> bool:
    """Held under the coordinates this call counts it under."""
    held = waiting.held
    return held is not None and (held.lane, held.sequence) == waiting.coordinates
