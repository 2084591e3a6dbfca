"""No user data in the logs at any level but DEBUG, against moto's server: the commands
`invoke` (the real handler over the AWS adapters), `replay --from-file`, `replay --from-dlq` and
`report` over a hostile corpus (every kind of bad record, valid events, a duplicate) whose user
ids and payload values are markers, with malformed assignment items in the assignments table.
Logged at INFO and at WARNING, no marker (nor its base64) reaches a log record, the Powertools
logger's output, a warning, the commands' stdout or stderr."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from mypy_boto3_dynamodb import DynamoDBClient
from typer.testing import Result

from domain.rejections import CONTRACT_REASONS
from entrypoints import lambda_handler
from operations.seed_file import dump_seed
from tests.captured_output import captured_at
from tests.e2e import cli_support
from tests.e2e.cli_support import run
from tests.factories import assignment, experiment
from tests.hostile_records import (
    ASSIGNED_USER,
    BROKEN_ITEM_USER,
    EXPERIMENT,
    EXTRA,
    MALFORMED_USER,
    SECRET,
    hostile_records,
    kinesis_event,
    leaks,
)

environment = cli_support.environment
provisioned = cli_support.provisioned

NOW = datetime.now(UTC).replace(microsecond=0)
MOMENT = NOW - timedelta(hours=1)


def _seed(env: dict[str, str], endpoint_url: str, tmp_path: Path) -> None:
    seed_file = tmp_path / "seed.json"
    seed_file.write_text(
        dump_seed(
            [experiment(EXPERIMENT)],
            [assignment(ASSIGNED_USER, EXPERIMENT, assigned_at=NOW - timedelta(days=30))],
        )
    )
    result = run(["seed", str(seed_file)], env, endpoint_url)
    assert result.exit_code == 0, result.output


def _put_malformed_assignments(client: DynamoDBClient, table: str) -> None:
    """What the assignment service might hold: a user whose entries are each malformed in
    another way (one holds a property-like value), and a user whose item is no map at all."""
    client.put_item(
        TableName=table,
        Item={
            "user_id": {"S": MALFORMED_USER},
            "assignments": {
                "M": {
                    EXPERIMENT: {
                        "M": {"variant_id": {"S": ""}, "assigned_at": {"S": MOMENT.isoformat()}}
                    },
                    "exp-2": {"S": SECRET},
                    "exp-3": {"M": {"variant_id": {"S": "control"}, "assigned_at": {"S": SECRET}}},
                    "exp-4": {"M": {"assigned_at": {"S": MOMENT.isoformat()}}},
                    "e" * 300: {
                        "M": {
                            "variant_id": {"S": "control"},
                            "assigned_at": {"S": MOMENT.isoformat()},
                        }
                    },
                }
            },
        },
    )
    client.put_item(
        TableName=table,
        Item={"user_id": {"S": BROKEN_ITEM_USER}, "assignments": {"S": EXTRA}},
    )


def _output(result: Result) -> str:
    return f"{result.stdout}\n{result.stderr}\n{result.exception!r}"


@pytest.mark.parametrize("level", ["INFO", "WARNING"])
def test_the_commands_log_no_user_id_and_no_payload_value_over_a_hostile_corpus(
    level: str,
    provisioned: dict[str, str],
    endpoint_url: str,
    dynamodb_client: DynamoDBClient,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    env = {**provisioned, "POWERTOOLS_LOG_LEVEL": level}
    _seed(env, endpoint_url, tmp_path)
    _put_malformed_assignments(dynamodb_client, env["ASSIGNMENTS_TABLE"])
    records = hostile_records(MOMENT)
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps(kinesis_event(records, NOW.timestamp())))
    lines_file = tmp_path / "events.jsonl"
    lines_file.write_bytes(
        b"".join(record.payload + b"\n" for record in records if record.payload)
        # Looks copied from the archive, but its coordinates are unreadable.
        + json.dumps({"_pipeline": {"partition_key": ASSIGNED_USER}, "note": SECRET}).encode()
    )

    outputs: list[str] = []
    with captured_at(level, lambda_handler.logger, caplog) as captured:
        invoked = run(["invoke", str(event_file)], env, endpoint_url)
        outputs.append(_output(invoked))
        from_file = run(["replay", "--from-file", str(lines_file), "-f", "json"], env, endpoint_url)
        outputs.append(_output(from_file))
        from_dlq = run(["replay", "--from-dlq", "-f", "json"], env, endpoint_url)
        outputs.append(_output(from_dlq))
        for output in ("table", "json", "csv"):
            reported = run(["report", "-e", EXPERIMENT, "-f", output], env, endpoint_url)
            assert reported.exit_code == 0, reported.output
            outputs.append(_output(reported))
    out, err = capfd.readouterr()
    logged = captured.text(caplog, *outputs, out, err)

    assert invoked.exit_code == 0, invoked.output
    assert json.loads(invoked.stdout) == {"batchItemFailures": []}
    assert from_file.exit_code == 0, from_file.output
    assert from_dlq.exit_code == 0, from_dlq.output
    dead_letters = json.loads(from_dlq.stdout)
    assert set(dead_letters["invalid_reasons"]) == CONTRACT_REASONS
    assert "skipped 1 malformed assignment (experiment 'exp-3')" in logged
    assert "skipped 1 malformed assignment item" in logged
    if level == "INFO":
        assert '"message":"batch processed"' in invoked.stderr
    assert leaks(logged) == []
