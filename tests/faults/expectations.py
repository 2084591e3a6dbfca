"""What the aggregates must be, computed from the generator's own list without the pipeline's code.

Rules restated from the event contract: an event counts for every running experiment its user was
assigned to at or before the event's time (only the named one when it names an experiment), under
the assignment's variant, in the UTC hour and day of its timestamp. Exact duplicates (the same
record re-sent) count once; bad records count nowhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from domain.experiments import ExperimentStatus
from domain.rejections import RejectionReason
from domain.time import DAY_LABEL_FORMAT, HOUR_LABEL_FORMAT
from operations.synthetic.stream import EntryKind, GeneratedStream, PutResult

AggregateKey = tuple[str, str, str, str, str]
"""(experiment_id, variant_id, metric, "HOUR", "DAY" or "EXPERIMENT", window label; "ALL" for
the experiment to date)."""

VariantMetricKey = tuple[str, str, str]
"""(experiment_id, variant_id, metric)."""


@dataclass(slots=True)
class Aggregate:
    event_count: int = 0
    value_sum: Decimal = Decimal(0)
    value_count: int = 0
    users: set[str] = field(default_factory=set)

    def as_tuple(self) -> tuple[int, Decimal, int, int]:
        return self.event_count, self.value_sum, self.value_count, len(self.users)


def expected_aggregates(
    stream: GeneratedStream,
) -> dict[AggregateKey, tuple[int, Decimal, int, int]]:
    return {key: aggregate.as_tuple() for key, aggregate in _aggregates(stream).items()}


def _aggregates(stream: GeneratedStream) -> dict[AggregateKey, Aggregate]:
    running = {e.experiment_id for e in stream.experiments if e.status is ExperimentStatus.RUNNING}
    by_user: dict[str, list[tuple[str, str, datetime]]] = {}
    for a in stream.assignments:
        by_user.setdefault(a.user_id, []).append((a.experiment_id, a.variant_id, a.assigned_at))
    totals: dict[AggregateKey, Aggregate] = {}
    for _, entry in stream.of_kind(EntryKind.VALID):
        event = json.loads(entry.payload, parse_float=Decimal)
        moment = datetime.fromisoformat(event["timestamp"]).astimezone(UTC)
        windows = (
            ("HOUR", moment.strftime(HOUR_LABEL_FORMAT)),
            ("DAY", moment.strftime(DAY_LABEL_FORMAT)),
            ("EXPERIMENT", "ALL"),
        )
        named = event.get("experiment_id")
        for experiment_id, variant_id, assigned_at in by_user.get(event["user_id"], []):
            if experiment_id not in running or assigned_at > moment:
                continue
            if named is not None and named != experiment_id:
                continue
            for granularity, label in windows:
                key = (experiment_id, variant_id, event["event_type"], granularity, label)
                aggregate = totals.setdefault(key, Aggregate())
                aggregate.event_count += 1
                aggregate.users.add(event["user_id"])
                if event.get("value") is not None:
                    aggregate.value_sum += Decimal(event["value"])
                    aggregate.value_count += 1
    return totals


def expected_exposed_users_who_did(stream: GeneratedStream) -> dict[VariantMetricKey, int]:
    """Per experiment, variant and metric other than exposure: the users exposed in the variant
    who also did the metric, over the whole stream (what the rates count)."""
    users = {
        key[:3]: aggregate.users
        for key, aggregate in _aggregates(stream).items()
        if key[3] == "EXPERIMENT"
    }
    return {
        key: len(did & users.get((key[0], key[1], "exposure"), set()))
        for key, did in users.items()
        if key[2] != "exposure"
    }


def expected_event_ids(stream: GeneratedStream) -> set[str]:
    return {
        str(json.loads(entry.payload)["event_id"]) for _, entry in stream.of_kind(EntryKind.VALID)
    }


def expected_dead_letters(
    stream: GeneratedStream, placed: list[PutResult]
) -> dict[tuple[str, int], RejectionReason]:
    """Per (shard, sequence number as integer), the reason each bad record must be refused for."""
    expected = {}
    for index, entry in stream.of_kind(EntryKind.BAD):
        assert entry.bad is not None
        where = placed[index]
        expected[(where.shard_id, int(where.sequence_number))] = entry.bad.reason
    return expected
