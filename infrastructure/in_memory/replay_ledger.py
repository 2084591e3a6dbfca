"""Claims on replayed events in memory, with the DynamoDB ledger's conditional-write rules."""

from __future__ import annotations

import threading
from collections.abc import Collection, Sequence
from dataclasses import replace

from application.ports import ReplayClaim, ReplayLedger


class InMemoryReplayLedger(ReplayLedger):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._claims: dict[str, ReplayClaim] = {}
        self._runs: dict[str, bool] = {}

    def start_run(self, lane: str) -> None:
        with self._lock:
            self._runs[lane] = False

    def finish_run(self, lane: str) -> None:
        with self._lock:
            self._runs[lane] = True

    def finished_runs(self, lanes: Collection[str]) -> set[str]:
        with self._lock:
            return {lane for lane in lanes if self._runs.get(lane)}

    def claim(self, claims: Sequence[ReplayClaim]) -> dict[str, tuple[ReplayClaim, bool]]:
        held: dict[str, tuple[ReplayClaim, bool]] = {}
        with self._lock:
            for claim in claims:
                current = self._claims.get(claim.event_id)
                if current is None:
                    self._claims[claim.event_id] = claim
                    held[claim.event_id] = (claim, False)
                elif (current.lane, current.sequence) == (claim.lane, claim.sequence):
                    # A retry: the claim is refreshed, what it recorded is kept.
                    refreshed = replace(current, claimed_at=claim.claimed_at)
                    self._claims[claim.event_id] = refreshed
                    held[claim.event_id] = (refreshed, True)
                else:
                    held[claim.event_id] = (current, True)
        return held

    def take_over(self, held: ReplayClaim, new: ReplayClaim) -> bool:
        with self._lock:
            if self._claims.get(held.event_id) != held:
                return False
            self._claims[held.event_id] = new
            return True

    def mark_archived(self, event_ids: Collection[str]) -> None:
        with self._lock:
            for event_id in event_ids:
                current = self._claims.get(event_id)
                if current is not None:
                    self._claims[event_id] = replace(current, archived=True)

    def claimed(self, event_ids: Collection[str]) -> set[str]:
        """Those of `event_ids` that hold a claim."""
        with self._lock:
            return {event_id for event_id in event_ids if event_id in self._claims}

    def forget(self, event_ids: Collection[str]) -> None:
        """Drop these events' claims (erasure of their user)."""
        with self._lock:
            for event_id in event_ids:
                self._claims.pop(event_id, None)
