"""The command line through Typer's runner, against the moto server: provision, seed, invoke, report."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import boto3
import pytest
from typer.testing import Result

from domain.metrics import Granularity
from infrastructure.aws.dynamodb_metric_store import DynamoDbMetricStore
from operations.aws.reference_data import assignments_item
from operations.cli.app import app
from operations.cli.commands import provision as provision_command
from operations.cli.commands import seed as seed_command
from operations.seed_file import dump_seed
from operations.synthetic.workload import Workload
from tests.conftest import REGION
from tests.e2e import cli_support
from tests.e2e.cli_support import kinesis_event, run, runner
from tests.factories import assignment, experiment

# The shared fixtures of the command-line tests.
environment = cli_support.environment
provisioned = cli_support.provisioned
workload = cli_support.workload


def test_every_command_has_help() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    expected = ["report", "provision", "seed", "invoke", "replay", "consume", "demo"]
    commands = [name for name in expected if name in result.stdout]
    assert commands == expected
    for command in commands:
        helped = runner.invoke(app, [command, "--help"])
        assert helped.exit_code == 0
        assert "Usage: event-processor " + command in helped.stdout
    assert "--endpoint-url" in runner.invoke(app, ["report", "--help"]).stdout


def test_provisioning_twice_changes_nothing_and_creates_every_resource(
    provisioned: dict[str, str], endpoint_url: str, unique_name: str
) -> None:
    again = run(
        ["provision", "--queue", f"{unique_name}-dlq", "--format", "json"],
        provisioned,
        endpoint_url,
    )

    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["dead_letter_queue_url"] == provisioned["DLQ_URL"]
    dynamodb = boto3.client("dynamodb", endpoint_url=endpoint_url, region_name=REGION)
    tables = set(dynamodb.list_tables()["TableNames"])
    assert {
        f"{unique_name}-aggregations",
        f"{unique_name}-assignments",
        f"{unique_name}-experiments",
    } <= tables
    kinesis = boto3.client("kinesis", endpoint_url=endpoint_url, region_name=REGION)
    assert kinesis.describe_stream_summary(StreamName=f"{unique_name}-events")


def test_a_seeded_experiment_and_an_invoked_batch_show_up_in_the_report(
    provisioned: dict[str, str], endpoint_url: str, workload: Workload, tmp_path: Path
) -> None:
    seed_file = tmp_path / "seed.json"
    seed_file.write_text(dump_seed(workload.experiments, workload.assignments))
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps(kinesis_event(workload)))

    seeded = run(["seed", str(seed_file)], provisioned, endpoint_url)
    invoked = run(["invoke", str(event_file)], provisioned, endpoint_url)
    reported = run(
        ["report", "-e", "exp-00", "--window", "hour", "--format", "json"],
        provisioned,
        endpoint_url,
    )

    assert seeded.exit_code == 0, seeded.output
    assert f"{len(workload.experiments)} experiments" in seeded.stdout
    assert invoked.exit_code == 0, invoked.output
    assert json.loads(invoked.stdout) == {"batchItemFailures": []}
    assert "ColdStart" not in invoked.output, "a cold-start metric outside Lambda"
    assert '"_aws"' not in invoked.output, "metrics printed with POWERTOOLS_METRICS_DISABLED"
    assert reported.exit_code == 0, reported.output
    document = json.loads(reported.stdout)
    assert document["experiment_known"] is True
    client = boto3.client("dynamodb", endpoint_url=endpoint_url, region_name=REGION)
    stored = DynamoDbMetricStore(client, provisioned["DYNAMODB_TABLE"]).snapshots(
        "exp-00", Granularity.HOUR
    )
    assert len(stored) >= 8
    assert [
        (w["variant_id"], w["metric"], w["event_count"], w["unique_users"], Decimal(w["value_sum"]))
        for w in document["windows"]
    ] == [
        (
            s.key.variant_id,
            s.key.metric,
            s.measures.event_count,
            s.unique_users,
            s.measures.value_sum,
        )
        for s in stored
    ]


def test_the_report_writes_a_png_chart_and_prints_csv(
    provisioned: dict[str, str], endpoint_url: str, workload: Workload, tmp_path: Path
) -> None:
    seed_file = tmp_path / "seed.json"
    seed_file.write_text(dump_seed(workload.experiments, workload.assignments))
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps(kinesis_event(workload)))
    assert run(["seed", str(seed_file)], provisioned, endpoint_url).exit_code == 0
    assert run(["invoke", str(event_file)], provisioned, endpoint_url).exit_code == 0
    chart = tmp_path / "exposure.png"

    result = run(
        ["report", "-e", "exp-01", "--window", "hour", "-f", "csv", "--chart", str(chart)],
        provisioned,
        endpoint_url,
    )

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("experiment_id,variant_id,metric,granularity,window_start")
    assert len(lines) > 4
    assert chart.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_an_invalid_seed_file_is_rejected_with_the_entry_named_and_exit_code_2(
    environment: dict[str, str], tmp_path: Path
) -> None:
    seed_file = tmp_path / "seed.json"
    seed_file.write_text(
        json.dumps({"experiments": [{"experiment_id": "", "name": "x", "status": "on"}]})
    )

    result = run(["seed", str(seed_file), "--dry-run"], environment)

    assert result.exit_code == 2
    assert "experiments[0].experiment_id" in result.stderr
    assert "experiments[0].status" in result.stderr


def test_a_dry_run_says_what_the_seed_would_change_and_writes_nothing(
    provisioned: dict[str, str], endpoint_url: str, workload: Workload, tmp_path: Path
) -> None:
    seed_file = tmp_path / "seed.json"
    seed_file.write_text(dump_seed(workload.experiments, workload.assignments))
    users = len({a.user_id for a in workload.assignments})

    result = run(["seed", str(seed_file), "--dry-run"], provisioned, endpoint_url)

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("would write (dry run, nothing written): ")
    assert f"{len(workload.assignments)} new, 0 changed, 0 unchanged" in result.stdout
    assert f"assignments of {users} users" in result.stdout
    client = boto3.client("dynamodb", endpoint_url=endpoint_url, region_name=REGION)
    assert client.scan(TableName=provisioned["ASSIGNMENTS_TABLE"])["Count"] == 0


def user_assignments(endpoint_url: str, table: str, user_id: str) -> dict[str, str]:
    client = boto3.client("dynamodb", endpoint_url=endpoint_url, region_name=REGION)
    item = client.get_item(TableName=table, Key={"user_id": {"S": user_id}})["Item"]
    return {e: v["M"]["variant_id"]["S"] for e, v in item["assignments"]["M"].items()}


def test_seeding_one_assignment_keeps_the_users_other_experiments(
    provisioned: dict[str, str], endpoint_url: str, tmp_path: Path
) -> None:
    # The assignment service's own item: user-0001 is in two running experiments.
    table = provisioned["ASSIGNMENTS_TABLE"]
    held = [assignment("user-0001", "exp-search"), assignment("user-0001", "exp-pricing", "b")]
    boto3.client("dynamodb", endpoint_url=endpoint_url, region_name=REGION).put_item(
        TableName=table, Item=assignments_item("user-0001", held)
    )
    seed_file = tmp_path / "seed.json"
    seed_file.write_text(
        dump_seed([experiment("exp-new")], [assignment("user-0001", "exp-new", "treatment")])
    )

    seeded = run(["seed", str(seed_file)], provisioned, endpoint_url)
    again = run(["seed", str(seed_file)], provisioned, endpoint_url)

    assert seeded.exit_code == 0, seeded.output
    assert "1 assignments of 1 users (1 new, 0 changed, 0 unchanged)" in seeded.stdout
    assert "kept: 2 assignments" in seeded.stdout
    assert user_assignments(endpoint_url, table, "user-0001") == {
        "exp-search": "control",
        "exp-pricing": "b",
        "exp-new": "treatment",
    }
    assert "(0 new, 0 changed, 1 unchanged)" in again.stdout

    replaced = run(["seed", str(seed_file), "--replace"], provisioned, endpoint_url)

    assert replaced.exit_code == 0, replaced.output
    assert "removed (--replace): 2 assignments" in replaced.stdout
    assert user_assignments(endpoint_url, table, "user-0001") == {"exp-new": "treatment"}


def without_endpoint(args: list[str], env: dict[str, str]) -> Result:
    """The command as run with no emulator configured: boto3 would reach the real account."""
    return runner.invoke(app, args, env={**env, "AWS_ENDPOINT_URL": None})


def test_seed_and_provision_refuse_a_real_account_and_touch_nothing(
    environment: dict[str, str],
    workload: Workload,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed_file = tmp_path / "seed.json"
    seed_file.write_text(dump_seed(workload.experiments, workload.assignments))
    calls: list[str] = []

    def reaching_aws() -> None:
        calls.append("aws")
        raise AssertionError("the command went on to build AWS clients")

    monkeypatch.setattr(seed_command, "build_container", reaching_aws)
    monkeypatch.setattr(provision_command, "build_container", reaching_aws)

    seeded = without_endpoint(["seed", str(seed_file)], environment)
    provisioned = without_endpoint(["provision"], environment)

    assert seeded.exit_code == 2
    assert "add --yes" in seeded.stderr
    assert "--dry-run" in seeded.stderr
    assert len(seeded.stderr.strip().splitlines()) == 1
    assert provisioned.exit_code == 2
    assert "make deploy" in provisioned.stderr
    assert calls == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["report"], "Missing option '--experiment'"),
        (["report", "-e", "x", "--window", "week"], "'week' is not one of"),
        (["report", "-e", "x", "--start", "yesterday"], "is not an ISO 8601 date"),
        (
            ["report", "-e", "x", "--start", "2026-11-21", "--end", "2026-11-20"],
            "--end must be after --start",
        ),
        (["seed", "/nonexistent/seed.json", "--dry-run"], "cannot read"),
        (["invoke", "/nonexistent/event.json"], "cannot use /nonexistent/event.json"),
        (["frobnicate"], "No such command"),
        (["provision", "-f", "csv"], "csv is only for `report`"),
        (["consume", "--format", "csv"], "csv is only for `report`"),
        (
            ["report", "-e", "x", "--endpoint-url", "localhost:5123"],
            "'localhost:5123' is not an http(s) URL",
        ),
        (
            ["report", "-e", "x", "--endpoint-url", "http://127.0.0.1:port"],
            "has a port that is not a number",
        ),
    ],
)
def test_bad_arguments_give_a_clear_message_in_one_line_and_exit_code_2(
    environment: dict[str, str], args: list[str], message: str
) -> None:
    result = run(args, environment)

    assert result.exit_code == 2
    assert message in result.stderr
    if args[0] != "seed":  # a seed file's problems are listed one a line under a heading
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.output


def test_a_missing_region_is_bad_configuration_in_one_line(
    environment: dict[str, str], endpoint_url: str
) -> None:
    env = {**environment, "AWS_DEFAULT_REGION": None, "AWS_REGION": None}
    result = runner.invoke(app, ["report", "-e", "x", "--endpoint-url", endpoint_url], env=env)

    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: no AWS region configured: set AWS_DEFAULT_REGION or AWS_REGION"
    )


def test_a_file_that_is_not_a_kinesis_event_is_bad_usage(
    environment: dict[str, str], tmp_path: Path
) -> None:
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps({"detail": "an EventBridge event"}))

    result = run(["invoke", str(event_file)], environment)

    assert result.exit_code == 2
    assert "not a Kinesis event" in result.stderr


@pytest.mark.parametrize(
    ("records", "message"),
    [
        (
            [{"messageId": "m-1", "body": "hello", "eventSource": "aws:sqs"}],
            "record 0 has no 'kinesis' field: an aws:sqs record",
        ),
        (
            [{"eventID": "shardId-000000000000:1", "kinesis": {"partitionKey": "k", "data": ""}}],
            "record 0 (shardId-000000000000:1): 'kinesis.sequenceNumber' is missing",
        ),
        (
            [
                {
                    "eventID": "shardId-000000000000:x",
                    "kinesis": {
                        "sequenceNumber": "x",
                        "partitionKey": "k",
                        "data": "",
                        "approximateArrivalTimestamp": 1.0,
                    },
                }
            ],
            "'kinesis.sequenceNumber' must be up to 64 decimal digits, got 'x'",
        ),
    ],
)
def test_a_malformed_invocation_record_is_bad_usage_named_in_one_line(
    environment: dict[str, str], tmp_path: Path, records: list[object], message: str
) -> None:
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps({"Records": records}))

    result = run(["invoke", str(event_file)], environment)

    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.output


def test_a_missing_table_is_reported_as_a_failure_with_exit_code_1(
    environment: dict[str, str], endpoint_url: str
) -> None:
    result = run(["report", "-e", "exp-00"], environment, endpoint_url)

    assert result.exit_code == 1
    assert "error:" in result.stderr
    assert "ResourceNotFoundException" in result.stderr


def test_a_report_of_an_unknown_experiment_fails(
    provisioned: dict[str, str], endpoint_url: str
) -> None:
    result = run(["report", "-e", "no-such-experiment"], provisioned, endpoint_url)

    assert result.exit_code == 1
    assert "no experiment 'no-such-experiment'" in result.stderr


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def daily_counts(endpoint_url: str, table: str, experiment_id: str) -> dict[tuple[str, str], int]:
    client = boto3.client("dynamodb", endpoint_url=endpoint_url, region_name=REGION)
    return {
        (s.key.variant_id, s.key.metric): s.unique_users
        for s in DynamoDbMetricStore(client, table).snapshots(experiment_id, Granularity.DAY)
    }


EXAMPLE_DAILY_USERS = {
    ("control", "exposure"): 2,
    ("one-page", "exposure"): 2,
    ("control", "conversion"): 1,
    ("one-page", "conversion"): 2,
    ("one-page", "purchase"): 1,
}


def test_the_example_events_put_into_the_stream_are_counted_and_the_bad_line_dead_lettered(
    provisioned: dict[str, str], endpoint_url: str
) -> None:
    assert run(["seed", str(EXAMPLES / "seed.json")], provisioned, endpoint_url).exit_code == 0

    put = run(
        ["put", str(EXAMPLES / "events.jsonl"), "--format", "json"], provisioned, endpoint_url
    )
    consumed = run(["consume", "--until-drained", "--format", "json"], provisioned, endpoint_url)

    assert put.exit_code == 0, put.output
    assert json.loads(put.stdout)["records"] == 9
    assert consumed.exit_code == 0, consumed.output
    assert json.loads(consumed.stdout)["records_done"] == 9
    counted = daily_counts(endpoint_url, provisioned["DYNAMODB_TABLE"], "exp-checkout")
    assert counted == EXAMPLE_DAILY_USERS
    sqs = boto3.client("sqs", endpoint_url=endpoint_url, region_name=REGION)
    [message] = sqs.receive_message(QueueUrl=provisioned["DLQ_URL"])["Messages"]
    assert json.loads(message["Body"])["reason"] == "missing_field"


def test_the_example_kinesis_event_runs_through_invoke(
    provisioned: dict[str, str], endpoint_url: str
) -> None:
    assert run(["seed", str(EXAMPLES / "seed.json")], provisioned, endpoint_url).exit_code == 0

    invoked = run(["invoke", str(EXAMPLES / "kinesis-event.json")], provisioned, endpoint_url)

    assert invoked.exit_code == 0, invoked.output
    assert json.loads(invoked.stdout) == {"batchItemFailures": []}
    counted = daily_counts(endpoint_url, provisioned["DYNAMODB_TABLE"], "exp-checkout")
    assert counted == EXAMPLE_DAILY_USERS


def test_put_refuses_a_line_kinesis_would_refuse_and_names_it(
    environment: dict[str, str], tmp_path: Path
) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text('{"user_id": "u"}\n' + "x" * (1024 * 1024 + 1) + "\n")

    result = run(["put", str(events)], environment)

    assert result.exit_code == 2
    assert "line 2: 1,048,577 bytes, over Kinesis's 1,048,576" in result.stderr


def test_missing_credentials_are_bad_configuration_in_one_line(
    environment: dict[str, str], endpoint_url: str, tmp_path: Path
) -> None:
    env = {
        **environment,
        "AWS_ACCESS_KEY_ID": None,
        "AWS_SECRET_ACCESS_KEY": None,
        "AWS_SESSION_TOKEN": None,
        "AWS_PROFILE": None,
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_EC2_METADATA_DISABLED": "true",  # no instance-metadata lookup off loopback
    }
    result = runner.invoke(
        app,
        ["report", "-e", "x", "--endpoint-url", endpoint_url],
        env={**env, "AWS_DEFAULT_REGION": REGION},
    )

    assert result.exit_code == 2
    assert result.stderr.startswith("error: no AWS credentials found")
    assert len(result.stderr.strip().splitlines()) == 1
