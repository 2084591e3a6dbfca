"""Builders of records and reference data for tests."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

from domain.experiments import Assignment, Experiment, ExperimentStatus, Variant
from domain.records import KinesisCoordinates, RawRecord

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SHARD = "shardId-000000000001"


def event_payload(**overrides: object) -> dict[str, object]:
    event: dict[str, object] = {
        "event_id": "evt-1",
        "event_type": "click",
        "user_id": "user-1",
        "timestamp": "2026-11-20T11:30:00Z",
    }
    event.update(overrides)
    return {key: value for key, value in event.items() if value is not None}


def record_of(
    data: bytes | str | dict[str, object], sequence: int = 1, shard_id: str = SHARD
) -> RawRecord:
    if isinstance(data, dict):
        data = json.dumps(data).encode()
    text = base64.b64encode(data).decode() if isinstance(data, bytes) else data
    return RawRecord(KinesisCoordinates(shard_id, str(sequence), "pk", NOW.timestamp()), text)


def experiment(
    experiment_id: str = "exp-1",
    status: ExperimentStatus = ExperimentStatus.RUNNING,
    variants: tuple[str, ...] = ("control", "treatment"),
) -> Experiment:
    return Experiment(
        experiment_id=experiment_id,
        name=f"Experiment {experiment_id}",
        status=status,
        variants=tuple(Variant(variant_id=v) for v in variants),
    )


def assignment(
    user_id: str = "user-1",
    experiment_id: str = "exp-1",
    variant_id: str = "control",
    assigned_at: datetime = NOW - timedelta(days=1),
) -> Assignment:
    return Assignment(
        user_id=user_id, experiment_id=experiment_id, variant_id=variant_id, assigned_at=assigned_at
    )
