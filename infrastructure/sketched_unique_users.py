"""Unique users in sketch mode (`UNIQUE_USERS=sketch`): the metric stores' unique-user step adds
each delta's users to its counter's sketch instead of writing first-seen markers."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from application.ports import NO_EARLIER_RECORDS, Deadline, EarlierRecords
from application.unique_users import MarkerClaims, UniqueUserMarkers, UserSketches
from domain.metrics import MetricDelta, MetricKey


class UserSetsNotKeptError(LookupError):
    """Sketch mode keeps no user ids: a report of user sets cannot be made from it."""


class SketchedUniqueUsers(UniqueUserMarkers):
    """No record holds a marker, so the counters store no unique users (`unique_users` stays 0)
    and reports read the sketches' estimates instead. A sketch is added to idempotently: a
    redelivered record adds its users again and changes nothing."""

    def __init__(self, sketches: UserSketches) -> None:
        self._sketches = sketches

    def mark(
        self,
        deltas: Sequence[MetricDelta],
        deadline: Deadline,
        earlier_records: EarlierRecords = NO_EARLIER_RECORDS,
    ) -> MarkerClaims:
        # A taken-over replay adds its users again, harmlessly: no record is ever recognised.
        return MarkerClaims({}, self._sketches.add(deltas, deadline))

    def users(self, keys: Collection[MetricKey]) -> dict[MetricKey, frozenset[str]]:
        raise UserSetsNotKeptError(
            "unique users are sketches (UNIQUE_USERS=sketch): no user ids are kept"
        )
