"""Experiments whose users come back on several days, put through the CLI against moto's server.

Each test module builds its world once: provision, seed the experiments and assignments, invoke
the handler on one Kinesis event of all the events. The events are kept, so that tests compute
what the report must say from them directly (the oracle), not from the stored counters.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from domain.experiments import Assignment, Experiment, ExperimentStatus, Variant
from operations.synthetic.workload import StreamEntry, Workload, WorkloadSpec
from tests.e2e.cli_support import kinesis_event, run, seed_workload

ACTIVE_HOURS = (9, 17)


@dataclass(frozen=True, slots=True)
class Happened:
    """One event a user did."""

    user_id: str
    metric: str
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class ExperimentData:
    experiment: Experiment
    variant_of: dict[str, str]
    events: tuple[Happened, ...]

    def users(
        self,
        variant_id: str,
        metric: str,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> set[str]:
        """The distinct users of `variant_id` who did `metric` in [start, end)."""
        return {
            e.user_id
            for e in self.events
            if self.variant_of[e.user_id] == variant_id
            and e.metric == metric
            and (start is None or e.timestamp >= start)
            and (end is None or e.timestamp < end)
        }


def experiment(experiment_id: str, weights: dict[str, float], name: str) -> Experiment:
    return Experiment(
        experiment_id=experiment_id,
        name=name,
        status=ExperimentStatus.RUNNING,
        variants=tuple(Variant(variant_id=v, weight=w) for v, w in weights.items()),
    )


def returning_users(
    chosen: Experiment,
    users: int,
    first_day: datetime,
    days: int,
    rng: random.Random,
    conversion: dict[str, float],
    activity: float = 0.35,
    exposure: float = 0.85,
    never_exposed: int = 4,
) -> ExperimentData:
    """Users assigned by a fair draw among the variants, active on each day with probability
    `activity`; on an active day exposed with probability `exposure` and converting with the
    variant's `conversion` probability (with or without an exposure that day). The last
    `never_exposed` users are never exposed. Users come at a few hours of the day only (fewer
    counters for moto to update)."""
    variant_ids = [v.variant_id for v in chosen.variants]
    variant_of = {
        f"{chosen.experiment_id}-user-{i:03d}": rng.choice(variant_ids) for i in range(users)
    }
    events = []
    for index, (user_id, variant_id) in enumerate(variant_of.items()):
        exposable = index < users - never_exposed
        for day in range(days):
            if rng.random() >= activity:
                continue
            hour = rng.choice(ACTIVE_HOURS)
            moment = first_day + timedelta(days=day, hours=hour, seconds=rng.uniform(0, 3_598))
            if exposable and rng.random() < exposure:
                events.append(Happened(user_id, "exposure", moment))
            if rng.random() < conversion[variant_id]:
                events.append(Happened(user_id, "conversion", moment + timedelta(seconds=1)))
    return ExperimentData(chosen, variant_of, tuple(events))


def put_through_the_cli(
    data: Iterable[ExperimentData],
    env: dict[str, str],
    endpoint_url: str,
    tmp_path: Path,
    assigned_at: datetime,
) -> None:
    """Seed the experiments and assignments, then invoke the handler on all the events."""
    chosen = list(data)
    assignments = [
        Assignment(
            user_id=user_id,
            experiment_id=d.experiment.experiment_id,
            variant_id=variant_id,
            assigned_at=assigned_at,
        )
        for d in chosen
        for user_id, variant_id in d.variant_of.items()
    ]
    rng = random.Random(0)
    entries = []
    for event in sorted((e for d in chosen for e in d.events), key=lambda e: e.timestamp):
        payload = {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "event_type": event.metric,
            "user_id": event.user_id,
            "timestamp": event.timestamp.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        }
        entries.append(StreamEntry(json.dumps(payload).encode(), event.user_id))
    workload = Workload(
        WorkloadSpec(start=assigned_at), [d.experiment for d in chosen], assignments, entries
    )
    seed_workload(env, endpoint_url, workload, tmp_path)
    event_file = tmp_path / "events.json"
    event_file.write_text(json.dumps(kinesis_event(workload)))
    invoked = run(["invoke", str(event_file)], env, endpoint_url)
    assert invoked.exit_code == 0, invoked.output
    assert json.loads(invoked.stdout) == {"batchItemFailures": []}
