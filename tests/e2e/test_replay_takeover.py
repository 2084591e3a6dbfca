"""A replay run killed between the first-seen markers and the counters, against moto's server: the
run that takes its events over counts their users once, from the markers the dead run wrote.

The dead runs go the CLI's way (`replay_run`, `file_items`, `replay_items`) over the operators'
composition root, with a botocore hook that kills the process's work at the first counter update
(`EXP#` keys); the run that finishes is the command line itself."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSPreparedRequest

from application.replay import new_lane
from domain.metrics import Granularity
from infrastructure.aws.dynamodb_metric_store import DynamoDbMetricStore
from operations.cli.aws_access import aws_environment
from operations.cli.replay_sources import ReplaySummary, file_items, replay_items, replay_run
from operations.cli.stream import environment as environment_variables
from operations.container import OperationsContainer
from tests.conftest import REGION
from tests.e2e import cli_support
from tests.e2e.cli_support import run
from tests.factories import assignment, event_payload, experiment

# The shared fixtures of the command-line tests.
environment = cli_support.environment
provisioned = cli_support.provisioned

USERS = {"a": "user-1", "b": "user-2", "c": "user-1", "d": "user-1"}


class RunKilledError(Exception):
    """The replay's process dies here."""


def _kill_at_counter_updates(request: AWSPreparedRequest, **_: Any) -> None:
    body = request.body
    text = body.decode() if isinstance(body, bytes) else str(body)
    if json.loads(text)["Key"]["partition_key"]["S"].startswith("EXP#"):
        raise RunKilledError("killed before its counter updates")


def _events_file(directory: Path, name: str, event_ids: list[str]) -> Path:
    """One line per event, user-1's and user-2's, an hour ago."""
    at = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    path = directory / f"{name}.jsonl"
    path.write_text(
        "".join(
            json.dumps(event_payload(event_id=e, user_id=USERS[e], timestamp=at)) + "\n"
            for e in event_ids
        )
    )
    return path


def _seed(env: Mapping[str, str], endpoint_url: str) -> None:
    with environment_variables(env), aws_environment(endpoint_url):
        writer = OperationsContainer().reference_data_writer()
        writer.write_experiments([experiment("exp-1")])
        writer.write_assignments(
            [assignment(user, "exp-1", "control") for user in sorted(set(USERS.values()))]
        )


def _killed_run(env: Mapping[str, str], endpoint_url: str, events: Path) -> None:
    """A file replay as the command runs it, killed at its first counter update: its markers
    are written, its run recorded as over (as the command's `finally` does), nothing counted."""
    with environment_variables(env), aws_environment(endpoint_url):
        container = OperationsContainer()
        container.dynamodb_client().meta.events.register(
            "before-send.dynamodb.UpdateItem", _kill_at_counter_updates
        )
        lane = new_lane(datetime.now(UTC))
        contents = file_items(events, datetime.now(UTC).timestamp(), lane)
        with pytest.raises(RunKilledError), replay_run(container.replay_ledger(), lane, False):
            replay_items(
                container.replay_processor(),
                contents.events,
                ReplaySummary("file", dry_run=False),
                100,
            )


def _replay(env: Mapping[str, str], endpoint_url: str, events: Path) -> dict[str, int]:
    result = run(["replay", "--from-file", str(events), "--format", "json"], env, endpoint_url)
    assert result.exit_code == 0, result.output
    outcomes: dict[str, int] = json.loads(result.stdout)["outcomes"]
    return outcomes


def _measures(
    env: Mapping[str, str], endpoint_url: str
) -> dict[Granularity, list[tuple[int, int]]]:
    """Per granularity, each counter's (events, unique users)."""
    client = boto3.client("dynamodb", endpoint_url=endpoint_url, region_name=REGION)
    store = DynamoDbMetricStore(client, env["DYNAMODB_TABLE"])
    return {
        granularity: [
            (s.measures.event_count, s.measures.unique_users)
            for s in store.snapshots("exp-1", granularity)
        ]
        for granularity in Granularity
    }


def every_window(events: int, users: int) -> dict[Granularity, list[tuple[int, int]]]:
    return {granularity: [(events, users)] for granularity in Granularity}


NOTHING: dict[Granularity, list[tuple[int, int]]] = {granularity: [] for granularity in Granularity}


def test_the_run_taking_over_from_a_killed_one_counts_its_users_once_from_its_markers(
    provisioned: dict[str, str], endpoint_url: str, tmp_path: Path
) -> None:
    _seed(provisioned, endpoint_url)
    _killed_run(provisioned, endpoint_url, _events_file(tmp_path, "first", ["a", "b", "c"]))
    assert _measures(provisioned, endpoint_url) == NOTHING

    # Its first record of user-1 is a new event, "d": user-1's marker is the one "a" wrote.
    again = _events_file(tmp_path, "again", ["d", "b", "a", "c"])
    assert _replay(provisioned, endpoint_url, again) == {"applied": 4}
    assert _replay(provisioned, endpoint_url, again) == {"already_applied": 4}

    assert _measures(provisioned, endpoint_url) == every_window(4, 2)


def test_the_third_run_of_a_chain_of_killed_runs_counts_the_markers_the_first_one_wrote(
    provisioned: dict[str, str], endpoint_url: str, tmp_path: Path
) -> None:
    _seed(provisioned, endpoint_url)
    _killed_run(provisioned, endpoint_url, _events_file(tmp_path, "first", ["a", "b"]))
    # The second run takes both over, finds the first one's markers and is killed as well.
    _killed_run(provisioned, endpoint_url, _events_file(tmp_path, "second", ["b", "a"]))
    assert _measures(provisioned, endpoint_url) == NOTHING

    third = _events_file(tmp_path, "third", ["a", "b"])
    assert _replay(provisioned, endpoint_url, third) == {"applied": 2}

    assert _measures(provisioned, endpoint_url) == every_window(2, 2)
