"""`forget-user` end to end against moto's server: the handler counts and archives a workload and
dead-letters some records, then one user is erased through the command line."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from application.ports import MetricSnapshot
from domain.erasure import archived_event, letter_owner
from domain.rejections import DeadLetter
from infrastructure.aws.dynamodb_recent_events import DynamoDbRecentEventIndex
from infrastructure.aws.s3_archive_editor import S3ArchiveEditor
from infrastructure.clock import SystemClock
from operations.aws.dead_letter_readers import (
    ReceivedDeadLetter,
    S3DeadLetterReader,
    SqsDeadLetterReader,
)
from operations.synthetic.workload import StreamEntry, Workload
from tests.aws_calls import CallRecorder
from tests.conftest import REGION
from tests.e2e import cli_support
from tests.e2e.cli_support import counters, kinesis_event, run, seed_workload

environment = cli_support.environment
provisioned = cli_support.provisioned
workload = cli_support.workload

OVERFLOWING = 300 * 1024
"""A record this large is dead-lettered (beyond MAX_RECORD_BYTES) and its letter is too large
for an SQS message: it is kept in S3 and the message points to it."""


def _counters(snapshots: list[MetricSnapshot]) -> list[tuple[object, ...]]:
    return [
        (s.key, s.measures.event_count, s.measures.value_sum, s.measures.value_count)
        for s in snapshots
    ]


def _archive_users(env: dict[str, str], endpoint_url: str) -> Counter[str]:
    s3 = boto3.client("s3", endpoint_url=endpoint_url, region_name=REGION)
    editor = S3ArchiveEditor(s3, env["S3_BUCKET"])
    return Counter(
        archived_event(line).user_id
        for key in editor.object_keys()
        for line in editor.read_lines(key).lines
    )


def _dead_letter_owners(
    env: dict[str, str], endpoint_url: str, users: set[str]
) -> tuple[list[str], list[str]]:
    """Those of `users` whose letters are in the queue and kept in S3, once a letter (the
    workload's own bad records belong to no one of them)."""
    sqs = boto3.client("sqs", endpoint_url=endpoint_url, region_name=REGION)
    s3 = boto3.client("s3", endpoint_url=endpoint_url, region_name=REGION)
    reader = SqsDeadLetterReader(sqs, env["DLQ_URL"], s3, wait_seconds=0, visibility_timeout=30)
    received: list[ReceivedDeadLetter] = []
    while batch := reader.receive().letters:
        received.extend(batch)
    for start in range(0, len(received), 10):
        sqs.change_message_visibility_batch(
            QueueUrl=env["DLQ_URL"],
            Entries=[
                {"Id": str(n), "ReceiptHandle": letter.receipt_handle, "VisibilityTimeout": 0}
                for n, letter in enumerate(received[start : start + 10])
            ],
        )
    queued = [_owner(letter.letter) for letter in received]
    stored = [_owner(letter) for letter in S3DeadLetterReader(s3, env["S3_BUCKET"]).letters()]
    return sorted(u for u in queued if u in users), sorted(u for u in stored if u in users)


def _owner(letter: DeadLetter) -> str:
    owner = letter_owner(letter)
    return owner.user_id if owner.user_id is not None else owner.partition_key


def _bad_event(user_id: str, event_id: str, padding: int = 0) -> StreamEntry:
    """An event of the user without its event_type: dead-lettered (missing_field)."""
    event = {"event_id": event_id, "user_id": user_id, "timestamp": "2026-11-20T10:30:00Z"}
    if padding:
        event["note"] = "x" * padding
    return StreamEntry(json.dumps(event).encode(), user_id, valid=False)


def _user_events(workload: Workload, user_id: str) -> list[str]:
    ids = []
    for entry in workload.entries:
        if not entry.valid:
            continue
        try:
            event = json.loads(entry.data)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("user_id") == user_id:
            ids.append(str(event["event_id"]))
    return ids


@dataclass(frozen=True)
class World:
    env: dict[str, str]
    user: str
    """The user to erase: the one with most archived events."""
    other: str
    """Another user, with a dead letter too."""
    user_event_ids: list[str]


@pytest.fixture
def world(
    provisioned: dict[str, str], endpoint_url: str, workload: Workload, tmp_path: Path
) -> World:
    """The workload counted with durable event ids, and dead letters of two users."""
    env = {**provisioned, "EVENT_ID_INDEX": "dynamodb"}
    seed_workload(env, endpoint_url, workload, tmp_path)
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps(kinesis_event(workload)))
    assert run(["invoke", str(event_file)], env, endpoint_url).exit_code == 0
    user, other = [u for u, _ in _archive_users(env, endpoint_url).most_common(2)]
    user_event_ids = _user_events(workload, user)
    workload.entries = [
        _bad_event(user, "bad-1"),
        _bad_event(user, "bad-2", padding=OVERFLOWING),
        _bad_event(other, "bad-3"),
    ]
    letters = tmp_path / "letters.json"
    letters.write_text(json.dumps(kinesis_event(workload, workload.records(first_sequence=10_000))))
    assert run(["invoke", str(letters)], env, endpoint_url).exit_code == 0
    return World(env, user, other, user_event_ids)


def _forget(args: list[str], env: dict[str, str], endpoint_url: str) -> dict[str, object]:
    result = run(["forget-user", *args, "--format", "json"], env, endpoint_url)
    assert result.exit_code == 0, result.output
    report: dict[str, object] = json.loads(result.stdout)
    return report


def test_forget_user_erases_the_users_traces_and_nothing_else(
    world: World, endpoint_url: str
) -> None:
    env, user, other = world.env, world.user, world.other
    before = counters(env, endpoint_url, user_sets=True)
    archived = _archive_users(env, endpoint_url)
    dynamodb = boto3.client("dynamodb", endpoint_url=endpoint_url, region_name=REGION)
    index = DynamoDbRecentEventIndex(dynamodb, env["DYNAMODB_TABLE"], SystemClock())
    assert index.lookup(world.user_event_ids).keys() == set(world.user_event_ids)
    queued, stored = _dead_letter_owners(env, endpoint_url, {user, other})
    assert (queued, stored) == (sorted([user, user, other]), [user])  # the large one's body
    assert any(user in (s.user_ids or ()) for s in before)

    report = _forget([user], env, endpoint_url)

    after = counters(env, endpoint_url, user_sets=True)
    assert _counters(after) == _counters(before)
    assert [s.user_ids for s in after] == [(s.user_ids or frozenset()) - {user} for s in before]
    assert _archive_users(env, endpoint_url) == Counter(
        {u: n for u, n in archived.items() if u != user}
    )
    assert _dead_letter_owners(env, endpoint_url, {user, other}) == ([other], [])
    assert index.lookup(world.user_event_ids) == {}
    others = [key for key in _all_event_ids(env, endpoint_url) if key not in world.user_event_ids]
    assert others
    assert index.lookup(others).keys() == set(others)
    erased = report["erased"]
    assert isinstance(erased, dict)
    assert erased["archive_lines"] == archived[user] == len(world.user_event_ids)
    assert erased["dead_letters"] == 3  # two messages and the S3 object of the large one
    assert erased["event_id_items"] == len(world.user_event_ids)
    assert erased["unique_user_markers"] > 0
    assert report["touched_anything"] is True


def _all_event_ids(env: dict[str, str], endpoint_url: str) -> list[str]:
    s3 = boto3.client("s3", endpoint_url=endpoint_url, region_name=REGION)
    editor = S3ArchiveEditor(s3, env["S3_BUCKET"])
    return [
        archived_event(line).event_id
        for key in editor.object_keys()
        for line in editor.read_lines(key).lines
    ]


def test_a_second_run_touches_nothing_and_says_so(world: World, endpoint_url: str) -> None:
    _forget([world.user], world.env, endpoint_url)
    snapshots = counters(world.env, endpoint_url)
    archived = _archive_users(world.env, endpoint_url)

    again = run(["forget-user", world.user], world.env, endpoint_url)

    assert again.exit_code == 0, again.output
    assert "nothing to erase" in again.stdout
    assert counters(world.env, endpoint_url) == snapshots
    assert _archive_users(world.env, endpoint_url) == archived


def test_a_dry_run_counts_and_writes_nothing(
    world: World, endpoint_url: str, tmp_path: Path
) -> None:
    env, user, other = world.env, world.user, world.other
    snapshots = counters(env, endpoint_url)
    archived = _archive_users(env, endpoint_url)
    ids = tmp_path / "ids.txt"
    ids.write_text(f"{user}\n\n{other}\n")

    dry = _forget(["--from-file", str(ids), "--dry-run"], env, endpoint_url)

    assert dry["dry_run"] is True
    assert dry["users"] == 2
    assert counters(env, endpoint_url) == snapshots
    assert _archive_users(env, endpoint_url) == archived
    assert _dead_letter_owners(env, endpoint_url, {user, other}) == (
        sorted([user, user, other]),
        [user],
    )
    real = _forget(["--from-file", str(ids)], env, endpoint_url)
    assert real["erased"] == dry["erased"]


def test_requests_of_one_erasure_name_exact_keys_and_never_query_or_scan(
    world: World, endpoint_url: str
) -> None:
    """What erasing one user costs, by operation (printed with -s; docs/cli.md has the counts)."""
    from operations.cli.aws_access import aws_environment
    from operations.cli.stream import environment as environment_variables
    from operations.container import OperationsContainer

    recorder = CallRecorder()
    with environment_variables(world.env), aws_environment(endpoint_url):
        container = OperationsContainer()
        for client in (container.dynamodb_client(), container.s3_client(), container.sqs_client()):
            recorder.attach(client)
        report = container.user_eraser().erase([world.user])

    counts = Counter(f"{s}:{o}" for s, o, _ in recorder.operations)
    print(f"\nrequests of one erasure ({report.archive_objects_read} archive objects):")
    for operation, count in sorted(counts.items()):
        print(f"  {operation:<40} {count}")
    assert counts["dynamodb:Query"] == counts["dynamodb:Scan"] == 0
    assert report.touched
