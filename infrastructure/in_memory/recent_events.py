"""The warm container's bounded memory of recently committed event ids."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Collection, Mapping

from application.ports import RecentEventIndex, SeenEvent


class InMemoryRecentEventIndex(RecentEventIndex):
    """Least recently used ids are forgotten first once `capacity` is reached."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._capacity = capacity
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, SeenEvent] = OrderedDict()

    def lookup(self, event_ids: Collection[str]) -> dict[str, SeenEvent]:
        with self._lock:
            seen = self._seen
            return {event_id: seen[event_id] for event_id in event_ids if event_id in seen}

    def remember(self, events: Mapping[str, SeenEvent]) -> None:
        if self._capacity <= 0:
            return
        with self._lock:
            seen = self._seen
            for event_id, where in events.items():
                if event_id in seen:
                    seen.move_to_end(event_id)
                    continue
                seen[event_id] = where
            while len(seen) > self._capacity:
                seen.popitem(last=False)

    def __len__(self) -> int:
        return len(self._seen)
