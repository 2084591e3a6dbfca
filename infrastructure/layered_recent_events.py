"""The warm container's memory of event ids in front of a durable index."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from application.ports import RecentEventIndex, SeenEvent


class LayeredRecentEventIndex(RecentEventIndex):
    """Asks `memory` first and `durable` only for the ids memory does not hold, so a warm
    container's hits cost no request; what `durable` answers is kept in memory too.

    `remember` makes the ids durable first and then holds them in memory: when `durable`
    raises, memory learns nothing. Ids memory already holds are not written again (memory and
    `durable` agree on them, and memory keeps an id's first record), so a redelivered batch costs
    no write in a warm container.
    """

    def __init__(self, memory: RecentEventIndex, durable: RecentEventIndex) -> None:
        self._memory = memory
        self._durable = durable

    def lookup(self, event_ids: Collection[str]) -> dict[str, SeenEvent]:
        known = self._memory.lookup(event_ids)
        missing = [event_id for event_id in event_ids if event_id not in known]
        if missing:
            found = self._durable.lookup(missing)
            if found:
                self._memory.remember(found)
                known.update(found)
        return known

    def remember(self, events: Mapping[str, SeenEvent]) -> None:
        held = self._memory.lookup(events.keys())
        fresh = {key: where for key, where in events.items() if key not in held}
        if fresh:
            self._durable.remember(fresh)
            self._memory.remember(fresh)
