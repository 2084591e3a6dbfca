"""The AssignmentRepository and ExperimentRepository contracts, in memory and on DynamoDB; then
what only DynamoDB does (unprocessed keys, malformed items, missing tables, permissions)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from mypy_boto3_dynamodb import DynamoDBClient

from application.ports import AssignmentRepository, ExperimentRepository
from domain.errors import InfrastructureConfigurationError, TransientInfrastructureError
from domain.events import IDENTIFIER_MAX_BYTES
from domain.experiments import Assignment, Experiment, ExperimentStatus, Variant
from infrastructure.aws.dynamodb_codec import Backoff
from infrastructure.aws.dynamodb_repositories import (
    DynamoDbAssignmentRepository,
    DynamoDbExperimentRepository,
)
from infrastructure.aws.permissions import LAMBDA_PERMISSIONS, Resource
from infrastructure.in_memory.repositories import (
    InMemoryAssignmentRepository,
    InMemoryExperimentRepository,
)
from operations.aws.provisioning import ensure_assignments_table, ensure_experiments_table
from operations.aws.reference_data import DynamoDbReferenceDataWriter
from tests.aws_calls import CallRecorder
from tests.botocore_faults import WithholdBatchItems
from tests.factories import NOW, assignment, experiment

FAST_BACKOFF = Backoff(sleep=lambda _: None)

AssignmentsBuilder = Callable[[Sequence[Assignment]], AssignmentRepository]
ExperimentsBuilder = Callable[[Sequence[Experiment]], ExperimentRepository]


@pytest.fixture
def tables(dynamodb_client: DynamoDBClient, unique_name: str) -> tuple[str, str]:
    assignments_table, experiments_table = (
        f"{unique_name}-assignments",
        f"{unique_name}-experiments",
    )
    ensure_assignments_table(dynamodb_client, assignments_table)
    ensure_experiments_table(dynamodb_client, experiments_table)
    return assignments_table, experiments_table


@pytest.fixture
def writer(dynamodb_client: DynamoDBClient, tables: tuple[str, str]) -> DynamoDbReferenceDataWriter:
    return DynamoDbReferenceDataWriter(dynamodb_client, *tables, backoff=FAST_BACKOFF)


@pytest.fixture(params=["in_memory", "dynamodb"])
def assignments_with(request: pytest.FixtureRequest) -> AssignmentsBuilder:
    if request.param == "in_memory":
        return InMemoryAssignmentRepository
    client: DynamoDBClient = request.getfixturevalue("dynamodb_client")
    writer: DynamoDbReferenceDataWriter = request.getfixturevalue("writer")
    table, _ = request.getfixturevalue("tables")

    def build(assignments: Sequence[Assignment]) -> AssignmentRepository:
        writer.write_assignments(assignments)
        return DynamoDbAssignmentRepository(client, table, backoff=FAST_BACKOFF)

    return build


@pytest.fixture(params=["in_memory", "dynamodb"])
def experiments_with(request: pytest.FixtureRequest) -> ExperimentsBuilder:
    if request.param == "in_memory":
        return InMemoryExperimentRepository
    client: DynamoDBClient = request.getfixturevalue("dynamodb_client")
    writer: DynamoDbReferenceDataWriter = request.getfixturevalue("writer")
    _, table = request.getfixturevalue("tables")

    def build(experiments: Sequence[Experiment]) -> ExperimentRepository:
        writer.write_experiments(experiments)
        return DynamoDbExperimentRepository(client, table, backoff=FAST_BACKOFF)

    return build


def by_experiment(found: dict[str, tuple[Assignment, ...]], user_id: str) -> dict[str, Assignment]:
    return {a.experiment_id: a for a in found.get(user_id, ())}


# -- the contracts --------------------------------------------------------------------------


def test_every_user_of_a_large_batch_gets_all_their_assignments(
    assignments_with: AssignmentsBuilder,
) -> None:
    stored = [
        assignment(
            f"user-{n:03d}",
            "exp-1",
            "control" if n % 2 else "treatment",
            NOW - timedelta(minutes=n),
        )
        for n in range(250)
    ]
    stored += [assignment(f"user-{n:03d}", "exp-2", "b") for n in range(0, 250, 5)]
    repository = assignments_with(stored)

    found = repository.assignments_for([f"user-{n:03d}" for n in range(250)])

    assert len(found) == 250
    assert by_experiment(found, "user-007") == {"exp-1": stored[7]}
    assert by_experiment(found, "user-010") == {"exp-1": stored[10], "exp-2": stored[252]}
    assert sum(len(items) for items in found.values()) == 300


def test_assignment_times_keep_their_instant(assignments_with: AssignmentsBuilder) -> None:
    stored = assignment(
        "user-1", assigned_at=datetime(2026, 11, 20, 13, 30, 15, 250_000, tzinfo=UTC)
    )
    repository = assignments_with([stored])

    (found,) = repository.assignments_for(["user-1"])["user-1"]

    assert found == stored
    assert found.assigned_at.utcoffset() is not None


def test_unknown_users_have_no_assignments(assignments_with: AssignmentsBuilder) -> None:
    repository = assignments_with([assignment("user-1")])

    found = repository.assignments_for(["user-1", "nobody", "nobody-else"])

    assert set(found) == {"user-1"}
    assert repository.assignments_for([]) == {}


def test_known_experiments_are_found_and_unknown_ones_are_absent(
    experiments_with: ExperimentsBuilder,
) -> None:
    weighted = Experiment(
        experiment_id="exp-w",
        name="Weighted",
        status=ExperimentStatus.PAUSED,
        variants=(Variant(variant_id="a", weight=0.25), Variant(variant_id="b", weight=0.75)),
    )
    stored = [experiment("exp-1"), experiment("exp-2", ExperimentStatus.DRAFT), weighted]
    repository = experiments_with(stored)

    found = repository.experiments(["exp-1", "exp-2", "exp-w", "exp-unknown"])

    assert found == {e.experiment_id: e for e in stored}


def test_more_than_a_hundred_experiments_are_all_found(
    experiments_with: ExperimentsBuilder,
) -> None:
    stored = [experiment(f"exp-{n:03d}") for n in range(130)]
    repository = experiments_with(stored)

    found = repository.experiments([e.experiment_id for e in stored])

    assert found == {e.experiment_id: e for e in stored}


# -- DynamoDB only ---------------------------------------------------------------------------


# -- what the contract cannot use, both repositories skip alike ------------------------------

LONGEST_ID = "\U0001f600" * (IDENTIFIER_MAX_BYTES // 4)
TOO_LONG_ID = LONGEST_ID + "x"
PRIVATE_USER = "jane.doe@example.com"


def unvalidated_assignment(experiment_id: str, variant_id: str = "control") -> Assignment:
    """What the assignment service may hold but the model refuses (built without validation)."""
    return Assignment.model_construct(
        user_id=PRIVATE_USER,
        experiment_id=experiment_id,
        variant_id=variant_id,
        assigned_at=NOW - timedelta(days=1),
    )


def test_assignments_with_ids_the_contract_refuses_are_skipped_and_logged_without_the_user(
    assignments_with: AssignmentsBuilder, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        repository = assignments_with(
            [
                assignment(PRIVATE_USER, LONGEST_ID, LONGEST_ID),
                unvalidated_assignment("exp-long-variant", TOO_LONG_ID),
                unvalidated_assignment(TOO_LONG_ID),
                unvalidated_assignment("exp-empty-variant", ""),
            ]
        )
        found = repository.assignments_for([PRIVATE_USER])

    assert [(a.experiment_id, a.variant_id) for a in found[PRIVATE_USER]] == [
        (LONGEST_ID, LONGEST_ID)
    ]
    ours = [r for r in caplog.records if r.name.split(".")[0] in {"infrastructure", "application"}]
    skipped = [r for r in ours if "malformed" in r.getMessage()]
    assert sum(int(r.__dict__["skipped"]) for r in skipped) == 3
    assert all(r.levelno == logging.WARNING for r in skipped)
    text = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in ours)
    assert "exp-long-variant" in text
    assert "variant_id is 257 bytes in UTF-8, limit 256" in text
    assert PRIVATE_USER not in text  # botocore's own DEBUG lines show bodies: not ours


def test_experiments_with_ids_the_contract_refuses_are_skipped_as_if_unknown(
    experiments_with: ExperimentsBuilder, caplog: pytest.LogCaptureFixture
) -> None:
    longest = experiment(LONGEST_ID, variants=(LONGEST_ID,))
    long_variant = Experiment.model_construct(
        experiment_id="exp-long-variant",
        name="x",
        status=ExperimentStatus.RUNNING,
        variants=(Variant.model_construct(variant_id=TOO_LONG_ID, weight=1.0),),
    )
    long_id = Experiment.model_construct(
        experiment_id=TOO_LONG_ID, name="x", status=ExperimentStatus.RUNNING, variants=()
    )
    with caplog.at_level(logging.WARNING):
        repository = experiments_with([longest, long_variant, long_id])
        found = repository.experiments([LONGEST_ID, "exp-long-variant", TOO_LONG_ID])

    assert set(found) == {LONGEST_ID}
    assert "exp-long-variant" in caplog.text
    assert "limit 256" in caplog.text


def test_keys_handed_back_unprocessed_are_fetched_again(
    dynamodb_client: DynamoDBClient, writer: DynamoDbReferenceDataWriter, tables: tuple[str, str]
) -> None:
    writer.write_assignments([assignment(f"user-{n}") for n in range(30)])
    withhold = WithholdBatchItems(times=2)
    withhold.attach(dynamodb_client, "BatchGetItem")
    repository = DynamoDbAssignmentRepository(dynamodb_client, tables[0], backoff=FAST_BACKOFF)

    found = repository.assignments_for([f"user-{n}" for n in range(30)])

    assert len(withhold.withheld) == 29 + 28
    assert set(found) == {f"user-{n}" for n in range(30)}


def test_keys_still_unprocessed_after_retries_are_a_transient_failure(
    dynamodb_client: DynamoDBClient, writer: DynamoDbReferenceDataWriter, tables: tuple[str, str]
) -> None:
    writer.write_experiments([experiment("exp-1"), experiment("exp-2")])
    withhold = WithholdBatchItems(
        withhold=lambda _, key: key["experiment_id"]["S"] == "exp-2", times=None
    )
    withhold.attach(dynamodb_client, "BatchGetItem")
    repository = DynamoDbExperimentRepository(dynamodb_client, tables[1], backoff=FAST_BACKOFF)

    with pytest.raises(TransientInfrastructureError, match="still unprocessed"):
        repository.experiments(["exp-1", "exp-2"])
    assert withhold.calls == FAST_BACKOFF.attempts


def test_unprocessed_items_of_the_reference_data_writer_are_written_on_retry(
    dynamodb_client: DynamoDBClient, writer: DynamoDbReferenceDataWriter, tables: tuple[str, str]
) -> None:
    withhold = WithholdBatchItems(times=3)
    withhold.attach(dynamodb_client, "BatchWriteItem")

    written = writer.write_assignments(
        [assignment(f"user-{n}", experiment_id=f"exp-{e}") for n in range(40) for e in (1, 2)],
        replace=True,  # whole items, by BatchWriteItem
    )

    assert written.new == 80
    assert len(withhold.withheld) > 0
    found = DynamoDbAssignmentRepository(dynamodb_client, tables[0]).assignments_for(
        [f"user-{n}" for n in range(40)]
    )
    assert {user: len(items) for user, items in found.items()} == {
        f"user-{n}": 2 for n in range(40)
    }


def test_malformed_assignments_are_skipped_counted_and_logged_while_the_rest_count(
    dynamodb_client: DynamoDBClient,
    writer: DynamoDbReferenceDataWriter,
    tables: tuple[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    writer.write_assignments([assignment("user-ok")])
    table = tables[0]
    good_entry = {
        "M": {"variant_id": {"S": "control"}, "assigned_at": {"S": "2026-11-19T12:00:00Z"}}
    }
    dynamodb_client.put_item(
        TableName=table,
        Item={
            "user_id": {"S": "user-mixed"},
            "assignments": {
                "M": {
                    "exp-good": good_entry,
                    "exp-naive-date": {
                        "M": {"variant_id": {"S": "a"}, "assigned_at": {"S": "2026-11-19T12:00:00"}}
                    },
                    "exp-no-variant": {"M": {"assigned_at": {"S": "2026-11-19T12:00:00Z"}}},
                    "exp-not-a-map": {"S": "control"},
                }
            },
        },
    )
    dynamodb_client.put_item(
        TableName=table, Item={"user_id": {"S": "user-broken"}, "assignments": {"S": "oops"}}
    )
    repository = DynamoDbAssignmentRepository(dynamodb_client, table)

    with caplog.at_level(logging.WARNING):
        found = repository.assignments_for(["user-ok", "user-mixed", "user-broken"])

    assert set(found) == {"user-ok", "user-mixed"}
    assert [a.experiment_id for a in found["user-mixed"]] == ["exp-good"]
    assert repository.malformed_items == 4
    assert "exp-naive-date" in caplog.text
    assert "assignments" in caplog.text  # the broken item's reason, without its user
    assert "user-broken" not in caplog.text
    assert "user-mixed" not in caplog.text


def test_malformed_experiments_are_skipped_as_if_unknown(
    dynamodb_client: DynamoDBClient, writer: DynamoDbReferenceDataWriter, tables: tuple[str, str]
) -> None:
    writer.write_experiments([experiment("exp-1")])
    table = tables[1]
    dynamodb_client.put_item(
        TableName=table,
        Item={"experiment_id": {"S": "exp-bad"}, "name": {"S": "x"}, "status": {"S": "archived"}},
    )
    repository = DynamoDbExperimentRepository(dynamodb_client, table)

    found = repository.experiments(["exp-1", "exp-bad"])

    assert set(found) == {"exp-1"}
    assert repository.malformed_items == 1


def test_a_missing_table_fails_loudly(dynamodb_client: DynamoDBClient, unique_name: str) -> None:
    assignments = DynamoDbAssignmentRepository(dynamodb_client, f"{unique_name}-missing")
    experiments = DynamoDbExperimentRepository(dynamodb_client, f"{unique_name}-missing")

    with pytest.raises(InfrastructureConfigurationError, match="ResourceNotFoundException"):
        assignments.assignments_for(["user-1"])
    with pytest.raises(InfrastructureConfigurationError, match="ResourceNotFoundException"):
        experiments.experiments(["exp-1"])


def test_the_lambda_path_reads_only_what_the_function_is_granted(
    dynamodb_client: DynamoDBClient, writer: DynamoDbReferenceDataWriter, tables: tuple[str, str]
) -> None:
    assignments_table, experiments_table = tables
    writer.write_assignments([assignment(f"user-{n}") for n in range(120)])
    writer.write_experiments([experiment("exp-1")])
    assignments_recorder, experiments_recorder = CallRecorder(), CallRecorder()
    assignments_client = _fresh_client(dynamodb_client)
    experiments_client = _fresh_client(dynamodb_client)
    assignments_recorder.attach(assignments_client)
    experiments_recorder.attach(experiments_client)

    DynamoDbAssignmentRepository(assignments_client, assignments_table).assignments_for(
        [f"user-{n}" for n in range(120)]
    )
    DynamoDbExperimentRepository(experiments_client, experiments_table).experiments(["exp-1"])

    assert assignments_recorder.actions <= LAMBDA_PERMISSIONS[Resource.ASSIGNMENTS_TABLE]
    assert experiments_recorder.actions <= LAMBDA_PERMISSIONS[Resource.EXPERIMENTS_TABLE]
    assert assignments_recorder.count("dynamodb", "BatchGetItem") == 2
    assert {t for _, _, p in assignments_recorder.operations for t in p["RequestItems"]} == {
        assignments_table
    }
    assert {t for _, _, p in experiments_recorder.operations for t in p["RequestItems"]} == {
        experiments_table
    }


def _fresh_client(client: DynamoDBClient) -> DynamoDBClient:
    return boto3.client(
        "dynamodb", endpoint_url=client.meta.endpoint_url, region_name=client.meta.region_name
    )
