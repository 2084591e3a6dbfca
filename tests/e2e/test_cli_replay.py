"""`replay` from the archive, the dead-letter queue and a file: run twice, counted once."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import cast

import boto3
import pytest

from domain.archiving import record_from_archive_line
from domain.experiments import ExperimentStatus
from domain.metrics import Granularity
from operations.seed_file import dump_seed
from operations.synthetic.workload import StreamEntry, Workload
from tests.conftest import REGION
from tests.e2e import cli_support
from tests.e2e.cli_support import counters, kinesis_event, run, same_counts, seed_workload

# The shared fixtures of the command-line tests.
environment = cli_support.environment
provisioned = cli_support.provisioned
workload = cli_support.workload

ARCHIVE_DAY = ["replay", "--from-archive", "--start", "2026-11-20", "--end", "2026-11-21"]
OVERSIZE_PADDING = 70 * 1024  # beyond the default MAX_RECORD_BYTES of 64 KiB


def _oversize_purchase(workload: Workload, event_id: str, value: float) -> StreamEntry:
    """A purchase of an assigned user, too large for the default MAX_RECORD_BYTES."""
    user = next(a for a in workload.assignments if a.experiment_id == "exp-00")
    big = {
        "event_id": event_id,
        "event_type": "purchase",
        "user_id": user.user_id,
        "timestamp": "2026-11-20T10:30:00Z",
        "value": value,
        "properties": {"note": "x" * OVERSIZE_PADDING},
    }
    return StreamEntry(json.dumps(big).encode(), user.user_id)


def _summary(args: list[str], env: dict[str, str], endpoint_url: str) -> dict[str, object]:
    result = run([*args, "--format", "json"], env, endpoint_url)
    assert result.exit_code == 0, result.output
    summary: dict[str, object] = json.loads(result.stdout)
    return summary


def invoke_workload(
    env: dict[str, str], endpoint_url: str, workload: Workload, tmp_path: Path
) -> None:
    """Seed the workload's reference data, then count its stream through `invoke`."""
    seed_workload(env, endpoint_url, workload, tmp_path)
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps(kinesis_event(workload)))
    assert run(["invoke", str(event_file)], env, endpoint_url).exit_code == 0


def test_replaying_the_archive_twice_leaves_the_counters_unchanged(
    provisioned: dict[str, str], endpoint_url: str, workload: Workload, tmp_path: Path
) -> None:
    invoke_workload(provisioned, endpoint_url, workload, tmp_path)
    counted = counters(provisioned, endpoint_url)
    args = ["replay", "--from-archive", "--start", "2026-11-20T10:00", "--end", "2026-11-20T11:00"]

    first = _summary(args, provisioned, endpoint_url)
    second = _summary(args, provisioned, endpoint_url)

    valid = sum(1 for entry in workload.entries if entry.valid)
    for summary in (first, second):
        outcomes = summary["outcomes"]
        assert isinstance(outcomes, dict)
        # The stream counted them all: the replays say so, record by record.
        assert "applied" not in outcomes, outcomes
        assert outcomes["already_applied"] > 0
    assert first["read"] == second["read"]
    assert 0 < int(str(first["read"])) <= valid
    assert counters(provisioned, endpoint_url) == counted
    assert len(counted) > 10


def test_a_dry_run_of_the_archive_validates_without_writing(
    provisioned: dict[str, str], endpoint_url: str, workload: Workload, tmp_path: Path
) -> None:
    invoke_workload(provisioned, endpoint_url, workload, tmp_path)

    summary = _summary(
        ["replay", "--from-archive", "--start", "2026-11-20", "--end", "2026-11-21", "--dry-run"],
        provisioned,
        endpoint_url,
    )

    assert summary["outcomes"] == {"valid": summary["read"]}


def test_dead_letters_that_became_valid_are_counted_once_and_deleted(
    provisioned: dict[str, str], endpoint_url: str, workload: Workload, tmp_path: Path
) -> None:
    seed_workload(provisioned, endpoint_url, workload, tmp_path)
    workload.entries = [_oversize_purchase(workload, "evt-oversize-1", 12.5)]
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps(kinesis_event(workload)))
    assert run(["invoke", str(event_file)], provisioned, endpoint_url).exit_code == 0
    assert counters(provisioned, endpoint_url) == []
    raised_limit = {**provisioned, "MAX_RECORD_BYTES": str(256 * 1024)}

    dry = _summary(["replay", "--from-dlq", "--dry-run"], raised_limit, endpoint_url)
    first = _summary(["replay", "--from-dlq"], raised_limit, endpoint_url)
    second = _summary(["replay", "--from-dlq"], raised_limit, endpoint_url)

    assert dry["outcomes"] == {"valid": 1}
    assert dry["kept_messages"] == 1
    assert first["outcomes"] == {"applied": 1}
    assert first["deleted_messages"] == 1
    assert second["read"] == 0
    archive = _summary(ARCHIVE_DAY, raised_limit, endpoint_url)
    assert archive["outcomes"] == {"already_applied": 1}
    purchases = [s for s in counters(provisioned, endpoint_url) if s.key.metric == "purchase"]
    assert {
        (s.key.granularity, s.measures.event_count, s.unique_users, str(s.measures.value_sum))
        for s in purchases
    } == {
        (Granularity.HOUR, 1, 1, "12.5"),
        (Granularity.DAY, 1, 1, "12.5"),
        (Granularity.EXPERIMENT, 1, 1, "12.5"),
    }


def test_a_still_invalid_dead_letter_stays_in_the_queue(
    provisioned: dict[str, str], endpoint_url: str, workload: Workload, tmp_path: Path
) -> None:
    workload.entries = [
        StreamEntry(b'{"event_id": "x", "event_type": "click"', "bad-1", valid=False)
    ]
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps(kinesis_event(workload)))
    assert run(["invoke", str(event_file)], provisioned, endpoint_url).exit_code == 0

    first = _summary(["replay", "--from-dlq"], provisioned, endpoint_url)
    second = _summary(["replay", "--from-dlq"], provisioned, endpoint_url)

    assert first["outcomes"] == {"invalid": 1}
    assert first["invalid_reasons"] == {"invalid_json": 1}
    assert first["kept_messages"] == 1
    assert second["read"] == 1


def test_without_a_queue_the_dead_letters_kept_in_s3_are_replayed_once_and_deleted(
    provisioned: dict[str, str], endpoint_url: str, workload: Workload, tmp_path: Path
) -> None:
    no_queue = {**provisioned, "DLQ_URL": ""}
    seed_workload(no_queue, endpoint_url, workload, tmp_path)
    workload.entries = [
        _oversize_purchase(workload, "evt-oversize-2", 7.25),
        StreamEntry(b'{"event_id": "x", "event_type": "click"', "bad-1", valid=False),
    ]
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps(kinesis_event(workload)))
    assert run(["invoke", str(event_file)], no_queue, endpoint_url).exit_code == 0
    s3 = boto3.client("s3", endpoint_url=endpoint_url, region_name=REGION)

    def kept() -> list[str]:
        listed = s3.list_objects_v2(Bucket=no_queue["S3_BUCKET"], Prefix="dead-letters/")
        return [entry["Key"] for entry in listed.get("Contents", [])]

    assert len(kept()) == 2
    raised_limit = {**no_queue, "MAX_RECORD_BYTES": str(256 * 1024)}

    dry = _summary(["replay", "--from-dlq", "--dry-run"], raised_limit, endpoint_url)
    first = _summary(["replay", "--from-dlq"], raised_limit, endpoint_url)
    second = _summary(["replay", "--from-dlq"], raised_limit, endpoint_url)

    assert dry["outcomes"] == {"valid": 1, "invalid": 1}
    assert dry["kept_messages"] == 2
    assert first["outcomes"] == {"applied": 1, "invalid": 1}
    assert first["invalid_reasons"] == {"invalid_json": 1}
    assert (first["deleted_messages"], first["kept_messages"]) == (1, 1)
    assert second["outcomes"] == {"invalid": 1}
    assert len(kept()) == 1
    purchases = [s for s in counters(provisioned, endpoint_url) if s.key.metric == "purchase"]
    assert {
        (s.key.granularity, s.measures.event_count, str(s.measures.value_sum)) for s in purchases
    } == {
        (Granularity.HOUR, 1, "7.25"),
        (Granularity.DAY, 1, "7.25"),
        (Granularity.EXPERIMENT, 1, "7.25"),
    }


def test_replaying_a_file_twice_counts_its_events_once(
    provisioned: dict[str, str], endpoint_url: str, workload: Workload, tmp_path: Path
) -> None:
    seed_workload(provisioned, endpoint_url, workload, tmp_path)
    lines = [entry.data for entry in workload.entries if entry.valid][:60]
    events_file = tmp_path / "events.jsonl"
    events_file.write_bytes(b"\n".join(lines) + b"\n\n")

    first = _summary(["replay", "--from-file", str(events_file)], provisioned, endpoint_url)
    counted = counters(provisioned, endpoint_url)
    second = _summary(["replay", "--from-file", str(events_file)], provisioned, endpoint_url)

    assert first["read"] == second["read"] == 60
    outcomes = first["outcomes"]
    assert isinstance(outcomes, dict)
    assert outcomes.get("applied", 0) > 0
    second_outcomes = second["outcomes"]
    assert isinstance(second_outcomes, dict)
    assert "applied" not in second_outcomes
    assert second_outcomes.get("already_applied") == outcomes.get("applied")
    assert counters(provisioned, endpoint_url) == counted
    assert counted


def test_an_archive_replay_after_a_file_replay_counts_nothing_again(
    provisioned: dict[str, str], endpoint_url: str, workload: Workload, tmp_path: Path
) -> None:
    seed_workload(provisioned, endpoint_url, workload, tmp_path)
    events_file = tmp_path / "events.jsonl"
    events_file.write_bytes(b"\n".join(e.data for e in workload.entries if e.valid)[:20_000])
    assert (
        run(["replay", "--from-file", str(events_file)], provisioned, endpoint_url).exit_code == 0
    )
    counted = counters(provisioned, endpoint_url)

    archive = _summary(ARCHIVE_DAY, provisioned, endpoint_url)

    outcomes = archive["outcomes"]
    assert isinstance(outcomes, dict)
    assert set(outcomes) <= {"already_applied", "unattributed", "duplicate", "invalid"}
    assert outcomes["already_applied"] > 0
    assert counters(provisioned, endpoint_url) == counted


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["replay"], "choose exactly one of"),
        (["replay", "--from-dlq", "--from-file", "x.jsonl"], "choose exactly one of"),
        (["replay", "--from-archive", "--start", "2026-11-20"], "needs --start and --end"),
        (
            ["replay", "--from-file", "x.jsonl", "--start", "2026-11-20"],
            "only apply to --from-archive",
        ),
    ],
)
def test_a_replay_without_exactly_one_proper_source_is_bad_usage(
    environment: dict[str, str], args: list[str], message: str
) -> None:
    result = run(args, environment)

    assert result.exit_code == 2
    assert message in result.stderr


def test_an_archive_line_gives_back_the_producers_event_and_its_coordinates() -> None:
    line = (
        b'{"event_id":"e1","event_type":"click","user_id":"u1","timestamp":"2026-11-20T10:00:00Z",'
        b'"_pipeline":{"attributions":[],"kinesis":{"shard_id":"shardId-000000000002",'
        b'"sequence_number":"4954","partition_key":"u1","approximate_arrival_timestamp":1.5},'
        b'"archive_schema_version":"1"}}'
    )

    record = record_from_archive_line(line)

    assert json.loads(base64.b64decode(record.data)) == {
        "event_id": "e1",
        "event_type": "click",
        "user_id": "u1",
        "timestamp": "2026-11-20T10:00:00Z",
    }
    assert (record.coordinates.shard_id, record.sequence) == ("shardId-000000000002", 4954)


def _archived_lines(env: dict[str, str], endpoint_url: str) -> list[bytes]:
    import gzip

    s3 = boto3.client("s3", endpoint_url=endpoint_url, region_name=REGION)
    lines: list[bytes] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=env["S3_BUCKET"]):
        for summary in page.get("Contents", []):
            if not summary["Key"].endswith(".gz"):
                continue
            body = s3.get_object(Bucket=env["S3_BUCKET"], Key=summary["Key"])["Body"].read()
            lines.extend(line for line in gzip.decompress(body).splitlines() if line)
    return lines


def test_lines_copied_from_the_archive_are_not_counted_again(
    provisioned: dict[str, str], endpoint_url: str, workload: Workload, tmp_path: Path
) -> None:
    invoke_workload(provisioned, endpoint_url, workload, tmp_path)
    counted = counters(provisioned, endpoint_url)
    lines = _archived_lines(provisioned, endpoint_url)
    archived = len(lines)
    copied = tmp_path / "copied.jsonl"
    copied.write_bytes(b"\n".join(lines[:20]) + b"\n")

    summary = _summary(["replay", "--from-file", str(copied)], provisioned, endpoint_url)

    assert summary["read"] == 20
    assert counters(provisioned, endpoint_url) == counted
    # They went the stream's way (watermarks), not the ledger's, and were not archived again.
    assert len(_archived_lines(provisioned, endpoint_url)) == archived
    outcomes = summary["outcomes"]
    assert isinstance(outcomes, dict)
    assert "applied" not in outcomes
    assert outcomes["already_applied"] + outcomes.get("unattributed", 0) == 20


def test_two_file_replays_keep_apart_in_the_archive_and_thecounters(
    provisioned: dict[str, str], endpoint_url: str, workload: Workload, tmp_path: Path
) -> None:
    seed_workload(provisioned, endpoint_url, workload, tmp_path)
    valid = [entry.data for entry in workload.entries if entry.valid]
    first_file, second_file = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first_file.write_bytes(b"\n".join(valid[:20]) + b"\n")
    second_file.write_bytes(b"\n".join(valid[20:40]) + b"\n")

    first = _summary(["replay", "--from-file", str(first_file)], provisioned, endpoint_url)
    second = _summary(["replay", "--from-file", str(second_file)], provisioned, endpoint_url)
    counted = counters(provisioned, endpoint_url)
    archive = _summary(ARCHIVE_DAY, provisioned, endpoint_url)

    applied = [cast("dict[str, int]", s["outcomes"]).get("applied", 0) for s in (first, second)]
    assert all(applied)
    archived_ids = {
        json.loads(line)["event_id"] for line in _archived_lines(provisioned, endpoint_url)
    }
    assert len(archived_ids) == sum(applied)
    # Both runs' lines are read back from the archive, and counted nothing again.
    assert archive["outcomes"] == {"already_applied": sum(applied)}
    assert counters(provisioned, endpoint_url) == counted


def _restored_from_a_backup_before_the_stream(env: dict[str, str], endpoint_url: str) -> None:
    """The aggregation table as a point-in-time restore from before the stream left it: empty
    (counters, watermarks, markers and event ids alike)."""
    client = boto3.client("dynamodb", endpoint_url=endpoint_url, region_name=REGION)
    table = env["DYNAMODB_TABLE"]
    keys = [
        key_attribute["AttributeName"]
        for key_attribute in client.describe_table(TableName=table)["Table"]["KeySchema"]
    ]
    for page in client.get_paginator("scan").paginate(TableName=table):
        for item in page["Items"]:
            client.delete_item(TableName=table, Key={name: item[name] for name in keys})


def test_an_archive_replay_after_the_experiments_stopped_rebuilds_the_counters_as_they_were(
    provisioned: dict[str, str], endpoint_url: str, workload: Workload, tmp_path: Path
) -> None:
    invoke_workload(provisioned, endpoint_url, workload, tmp_path)
    counted = counters(provisioned, endpoint_url)
    stopped = [
        e.model_copy(update={"status": ExperimentStatus.COMPLETED}) for e in workload.experiments
    ]
    seed_file = tmp_path / "stopped.json"
    seed_file.write_text(dump_seed(stopped, workload.assignments))
    assert run(["seed", str(seed_file)], provisioned, endpoint_url).exit_code == 0
    _restored_from_a_backup_before_the_stream(provisioned, endpoint_url)
    assert counters(provisioned, endpoint_url) == []

    summary = _summary(ARCHIVE_DAY, provisioned, endpoint_url)

    assert same_counts(counters(provisioned, endpoint_url)) == same_counts(counted)
    assert len(counted) > 10
    outcomes = summary["outcomes"]
    assert isinstance(outcomes, dict)
    assert outcomes["applied"] > 0
    assert "already_applied" not in outcomes
    # Run again onto the rebuilt table, it adds nothing.
    again = _summary(ARCHIVE_DAY, provisioned, endpoint_url)
    assert "applied" not in cast(dict[str, int], again["outcomes"])
    assert same_counts(counters(provisioned, endpoint_url)) == same_counts(counted)
