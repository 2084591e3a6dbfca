"""The seed's writer against DynamoDB (moto's server): it merges into the assignment service's
items and never destroys what the seed does not name."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from mypy_boto3_dynamodb import DynamoDBClient

from infrastructure.aws.dynamodb_codec import Backoff
from infrastructure.aws.dynamodb_repositories import DynamoDbAssignmentRepository
from operations.aws.provisioning import ensure_assignments_table, ensure_experiments_table
from operations.aws.reference_data import (
    Changes,
    DynamoDbReferenceDataWriter,
    SeedConflictError,
    assignments_item,
)
from tests.aws_calls import CallRecorder
from tests.conftest import REGION
from tests.factories import assignment, experiment

FAST_BACKOFF = Backoff(sleep=lambda _: None)


@pytest.fixture
def tables(dynamodb_client: DynamoDBClient, unique_name: str) -> tuple[str, str]:
    names = (f"{unique_name}-assignments", f"{unique_name}-experiments")
    ensure_assignments_table(dynamodb_client, names[0])
    ensure_experiments_table(dynamodb_client, names[1])
    return names


@pytest.fixture
def writer(dynamodb_client: DynamoDBClient, tables: tuple[str, str]) -> DynamoDbReferenceDataWriter:
    return DynamoDbReferenceDataWriter(dynamodb_client, *tables, backoff=FAST_BACKOFF)


def stored_experiments_of(client: DynamoDBClient, table: str, user_id: str) -> dict[str, str]:
    item = client.get_item(TableName=table, Key={"user_id": {"S": user_id}})["Item"]
    return {e: v["M"]["variant_id"]["S"] for e, v in item["assignments"]["M"].items()}


def test_a_seed_merges_into_a_users_assignments_and_keeps_the_others(
    dynamodb_client: DynamoDBClient, writer: DynamoDbReferenceDataWriter, tables: tuple[str, str]
) -> None:
    existing = [assignment("user-0001", "exp-a"), assignment("user-0001", "exp-b", "treatment")]
    dynamodb_client.put_item(TableName=tables[0], Item=assignments_item("user-0001", existing))

    changes = writer.write_assignments(
        [assignment("user-0001", "exp-c"), assignment("user-0001", "exp-b", "control")]
    )

    assert changes == Changes(new=1, changed=1, unchanged=0, kept=1)
    assert stored_experiments_of(dynamodb_client, tables[0], "user-0001") == {
        "exp-a": "control",
        "exp-b": "control",
        "exp-c": "control",
    }


def test_replace_writes_the_users_item_whole(
    dynamodb_client: DynamoDBClient, writer: DynamoDbReferenceDataWriter, tables: tuple[str, str]
) -> None:
    existing = [assignment("user-0001", "exp-a"), assignment("user-0001", "exp-b")]
    dynamodb_client.put_item(TableName=tables[0], Item=assignments_item("user-0001", existing))

    planned = writer.plan_assignments([assignment("user-0001", "exp-c")], replace=True)
    changes = writer.write_assignments([assignment("user-0001", "exp-c")], replace=True)

    assert planned == changes == Changes(new=1, changed=0, unchanged=0, removed=2)
    assert stored_experiments_of(dynamodb_client, tables[0], "user-0001") == {"exp-c": "control"}


def test_a_plan_writes_nothing_and_a_second_seed_writes_nothing_again(
    dynamodb_client: DynamoDBClient, writer: DynamoDbReferenceDataWriter, tables: tuple[str, str]
) -> None:
    seeded = [assignment(f"user-{n}", "exp-a") for n in range(5)]
    experiments = [experiment("exp-a")]

    assert writer.plan_assignments(seeded) == Changes(new=5)
    assert writer.plan_experiments(experiments) == Changes(new=1)
    assert dynamodb_client.scan(TableName=tables[0])["Count"] == 0
    writer.write_experiments(experiments)
    writer.write_assignments(seeded)

    recorder = CallRecorder()
    recorder.attach(dynamodb_client)
    again = writer.write_assignments(seeded), writer.write_experiments(experiments)

    assert again == (Changes(unchanged=5), Changes(unchanged=1))
    assert {operation for _, operation, _ in recorder.operations} == {"BatchGetItem"}


def test_an_experiments_attributes_the_seed_does_not_name_are_kept(
    dynamodb_client: DynamoDBClient, writer: DynamoDbReferenceDataWriter, tables: tuple[str, str]
) -> None:
    writer.write_experiments([experiment("exp-a")])
    renamed = experiment("exp-a").model_copy(update={"name": "Renamed"})
    dynamodb_client.update_item(
        TableName=tables[1],
        Key={"experiment_id": {"S": "exp-a"}},
        UpdateExpression="SET #o = :o",
        ExpressionAttributeNames={"#o": "owner"},
        ExpressionAttributeValues={":o": {"S": "growth-team"}},
    )

    changes = writer.write_experiments([renamed])

    assert changes == Changes(changed=1)
    item = dynamodb_client.get_item(TableName=tables[1], Key={"experiment_id": {"S": "exp-a"}})
    assert item["Item"]["owner"] == {"S": "growth-team"}
    assert item["Item"]["name"] == {"S": "Renamed"}


def test_a_user_item_created_meanwhile_is_merged_into_not_overwritten(
    dynamodb_client: DynamoDBClient,
    writer: DynamoDbReferenceDataWriter,
    tables: tuple[str, str],
    endpoint_url: str,
) -> None:
    # The assignment service creates the user between the seed's read and its write.
    service = boto3.client("dynamodb", endpoint_url=endpoint_url, region_name=REGION)
    created = assignments_item("user-new", [assignment("user-new", "exp-service")])
    raced: list[bool] = []

    def create_first(**_: Any) -> None:
        if not raced:
            raced.append(True)
            service.put_item(TableName=tables[0], Item=created)

    dynamodb_client.meta.events.register("before-call.dynamodb.PutItem", create_first)

    writer.write_assignments([assignment("user-new", "exp-seed")])

    assert raced == [True]
    assert set(stored_experiments_of(dynamodb_client, tables[0], "user-new")) == {
        "exp-service",
        "exp-seed",
    }
    found = DynamoDbAssignmentRepository(dynamodb_client, tables[0]).assignments_for(["user-new"])
    assert {a.experiment_id for a in found["user-new"]} == {"exp-service", "exp-seed"}


def test_a_user_item_without_an_assignments_map_is_refused_not_replaced(
    dynamodb_client: DynamoDBClient, writer: DynamoDbReferenceDataWriter, tables: tuple[str, str]
) -> None:
    dynamodb_client.put_item(
        TableName=tables[0], Item={"user_id": {"S": "user-odd"}, "segment": {"S": "vip"}}
    )

    with pytest.raises(SeedConflictError, match="user-odd"):
        writer.write_assignments([assignment("user-odd", "exp-a")])

    item = dynamodb_client.get_item(TableName=tables[0], Key={"user_id": {"S": "user-odd"}})
    assert item["Item"] == {"user_id": {"S": "user-odd"}, "segment": {"S": "vip"}}
