"""The warm container's bounded memory of recently committed event ids."""

from __future__ import annotations

import threading
from collections.abc import Collection, Mapping
from itertools import islice

from application.ports import RecentEventIndex, SeenEvent


class InMemoryRecentEventIndex(RecentEventIndex):
    """Holds the ids of the last `capacity` events committed: once full, the ids committed
    first are forgotten first. An id committed again (a redelivered record) keeps the record
    it was first committed with, and its place."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._capacity = capacity
        self._lock = threading.Lock()
        self._seen: dict[str, SeenEvent] = {}

    def lookup(self, event_ids: Collection[str]) -> dict[str, SeenEvent]:
        with self._lock:
            seen = self._seen
            return {event_id: seen[event_id] for event_id in event_ids if event_id in seen}

    def remember(self, events: Mapping[str, SeenEvent]) -> None:
        if self._capacity <= 0:
            return
        with self._lock:
            seen = self._seen
            # New ids go to the end; ids already held keep their record and place.
            if seen.keys().isdisjoint(events):
                seen.update(events)  # a batch of new ids, the usual case
            elif not events.keys() <= seen.keys():
                seen.update({key: where for key, where in events.items() if key not in seen})
            excess = len(seen) - self._capacity
            if excess > 0:
                for event_id in list(islice(seen, excess)):
                    del seen[event_id]

    def forget(self, event_ids: Collection[str]) -> None:
        """Drop these ids (erasure of their user)."""
        with self._lock:
            for event_id in event_ids:
                self._seen.pop(event_id, None)

    def __len__(self) -> int:
        return len(self._seen)
