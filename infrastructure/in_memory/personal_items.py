"""The items erasure deletes, in memory: they live in the in-memory unique-user markers, event-id
index and replay ledger, as in DynamoDB they live in one table."""

from __future__ import annotations

from collections.abc import Collection

from application.ports import PersonalItemStore
from domain.erasure import EventIdItem, PersonalItem, ReplayClaimItem, UniqueUserMarker
from infrastructure.dynamodb_layout import (
    EVENT_SORT_KEY,
    LEDGER_SORT_KEY,
    event_partition_key,
    key_size_problem,
    ledger_partition_key,
)
from infrastructure.in_memory.recent_events import InMemoryRecentEventIndex
from infrastructure.in_memory.replay_ledger import InMemoryReplayLedger
from infrastructure.in_memory.unique_user_markers import InMemoryUniqueUserMarkers


class InMemoryPersonalItemStore(PersonalItemStore):
    """An item whose key DynamoDB would refuse is never present (it could not have been written),
    as `DynamoDbPersonalItemStore` never asks DynamoDB for one."""

    def __init__(
        self,
        markers: InMemoryUniqueUserMarkers,
        recent_events: InMemoryRecentEventIndex,
        ledger: InMemoryReplayLedger,
    ) -> None:
        self._markers = markers
        self._recent_events = recent_events
        self._ledger = ledger

    def present(self, items: Collection[PersonalItem]) -> set[PersonalItem]:
        markers = [item for item in items if isinstance(item, UniqueUserMarker)]
        event_ids = [
            item.event_id
            for item in items
            if isinstance(item, EventIdItem)
            and key_size_problem(event_partition_key(item.event_id), EVENT_SORT_KEY) is None
        ]
        claims = [
            item.event_id
            for item in items
            if isinstance(item, ReplayClaimItem)
            and key_size_problem(ledger_partition_key(item.event_id), LEDGER_SORT_KEY) is None
        ]
        found: set[PersonalItem] = {m for m in markers if self._markers.has_marker(m)}
        found.update(EventIdItem(i) for i in self._recent_events.lookup(event_ids))
        found.update(ReplayClaimItem(i) for i in self._ledger.claimed(claims))
        return found

    def delete(self, items: Collection[PersonalItem]) -> None:
        self._markers.delete_markers([i for i in items if isinstance(i, UniqueUserMarker)])
        self._recent_events.forget([i.event_id for i in items if isinstance(i, EventIdItem)])
        self._ledger.forget([i.event_id for i in items if isinstance(i, ReplayClaimItem)])
