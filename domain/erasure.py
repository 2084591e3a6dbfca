"""What erasing a user means in data: which archive lines and dead letters are theirs, and which
stored items their archived events left behind. Pure: no I/O."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import TypeAdapter, ValidationError

from domain.events import RESERVED_FIELD, Iso8601Timestamp
from domain.metrics import GRANULARITIES, Granularity, MetricKey
from domain.rejections import DeadLetter

_TIMESTAMP: TypeAdapter[datetime] = TypeAdapter(Iso8601Timestamp)


@dataclass(frozen=True, slots=True, order=True)
class UniqueUserMarker:
    """One first-seen marker: the user was counted in this experiment variant's metric in this
    window (an hour, a day or the experiment to date; docs/storage.md, "Exact unique users")."""

    experiment_id: str
    variant_id: str
    metric: str
    granularity: Granularity
    window_start: datetime
    user_id: str

    @property
    def counter(self) -> MetricKey:
        """The counter whose window the marker counts the user in."""
        return MetricKey(
            self.experiment_id, self.variant_id, self.metric, self.granularity, self.window_start
        )


@dataclass(frozen=True, slots=True, order=True)
class EventIdItem:
    """The event-id index's record of one committed event (`EVENT#<event_id>`)."""

    event_id: str


@dataclass(frozen=True, slots=True, order=True)
class ReplayClaimItem:
    """A replay run's claim on one event (`REPLAY#<event_id>`)."""

    event_id: str


PersonalItem = UniqueUserMarker | EventIdItem | ReplayClaimItem
"""A stored item that names a user or one of their events, besides the archive and the dead
letters."""


class UnreadableArchiveLineError(ValueError):
    """An archive line that is not a JSON object with a string `user_id`."""


@dataclass(frozen=True, slots=True)
class ArchivedEvent:
    """What an archive line tells about its event: whose it is and what it was counted as."""

    event_id: str
    user_id: str
    metric: str
    hour: datetime | None
    """The hour of its counters; None when its timestamp no longer parses (nothing counted)."""
    variants: tuple[tuple[str, str], ...]
    """The (experiment, variant) pairs the pipeline attributed it to (`_pipeline`)."""

    def markers(self) -> list[UniqueUserMarker]:
        """The first-seen markers counting this event may have written: per attributed
        variant, one for each window of its event time (hour, day, experiment to date)."""
        if self.hour is None:
            return []
        return [
            UniqueUserMarker(
                experiment_id,
                variant_id,
                self.metric,
                granularity,
                granularity.window_start(self.hour),
                self.user_id,
            )
            for experiment_id, variant_id in self.variants
            for granularity in GRANULARITIES
        ]


def archived_event(line: bytes) -> ArchivedEvent:
    """Read one archive line (the producer's event plus `_pipeline`); raises
    `UnreadableArchiveLineError` for a line whose owner cannot be told."""
    try:
        document = json.loads(line)
    except ValueError as error:
        raise UnreadableArchiveLineError(f"not JSON: {error}") from None
    if not isinstance(document, dict) or not isinstance(document.get("user_id"), str):
        raise UnreadableArchiveLineError("not a JSON object with a string user_id")
    event_id = document.get("event_id")
    metric = document.get("event_type")
    pipeline = document.get(RESERVED_FIELD)
    variants: list[tuple[str, str]] = []
    if isinstance(pipeline, dict) and isinstance(pipeline.get("attributions"), list):
        for attribution in pipeline["attributions"]:
            if isinstance(attribution, dict):
                experiment_id = attribution.get("experiment_id")
                variant_id = attribution.get("variant_id")
                if isinstance(experiment_id, str) and isinstance(variant_id, str):
                    variants.append((experiment_id, variant_id))
    return ArchivedEvent(
        event_id if isinstance(event_id, str) else "",
        document["user_id"],
        metric if isinstance(metric, str) else "",
        _hour_of(document.get("timestamp")),
        tuple(variants),
    )


def _hour_of(timestamp: object) -> datetime | None:
    try:
        moment = _TIMESTAMP.validate_python(timestamp)
    except ValidationError:
        return None
    return Granularity.HOUR.window_start(moment).astimezone(UTC)


@dataclass(frozen=True, slots=True)
class LetterOwner:
    """Whose a dead letter is, as far as its data tells: the event's `user_id` and `event_id`
    when the data is a JSON object, and the record's partition key (producers partition by
    user id) in any case."""

    user_id: str | None
    event_id: str | None
    partition_key: str

    def is_of(self, users: frozenset[str]) -> bool:
        """Whether the letter belongs to one of `users`: its event names one of them, or (for
        data that names nobody: undecodable, not JSON, no user id) its partition key does."""
        if self.user_id is not None:
            return self.user_id in users
        return self.partition_key in users


def letter_owner(letter: DeadLetter) -> LetterOwner:
    partition_key = letter.coordinates.partition_key
    try:
        document = json.loads(base64.b64decode(letter.data, validate=True))
    except (ValueError, binascii.Error):
        return LetterOwner(None, None, partition_key)
    if not isinstance(document, dict):
        return LetterOwner(None, None, partition_key)
    user_id = document.get("user_id")
    event_id = document.get("event_id")
    return LetterOwner(
        user_id if isinstance(user_id, str) else None,
        event_id if isinstance(event_id, str) else None,
        partition_key,
    )


def items_of_events(events: Iterable[ArchivedEvent], event_ids: Iterable[str]) -> set[PersonalItem]:
    """Every stored item the user's events may have left: the markers of their archived events,
    and the event-id record and replay claim of each of their event ids."""
    items: set[PersonalItem] = set()
    ids = set(event_ids)
    for event in events:
        items.update(event.markers())
        ids.add(event.event_id)
    ids.discard("")
    for event_id in ids:
        items.add(EventIdItem(event_id))
        items.add(ReplayClaimItem(event_id))
    return items
