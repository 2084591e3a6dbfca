"""The local AWS's table `Query` reads one partition (operations/local_aws.py) and answers exactly
as moto's own, which reads and sorts the whole table: the same pages, items, counts and keys."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from typing import Any, cast

import pytest
from moto.dynamodb.models.table import Table
from mypy_boto3_dynamodb import DynamoDBClient
from mypy_boto3_dynamodb.type_defs import QueryInputTypeDef

from operations import local_aws


@pytest.fixture
def tables(dynamodb_client: DynamoDBClient) -> Iterator[tuple[str, str]]:
    """A table with a sort key (400 items over 8 partitions) and one without (50 items)."""
    suffix = uuid.uuid4().hex[:8]
    ranged, hashed = f"ranged-{suffix}", f"hashed-{suffix}"
    dynamodb_client.create_table(
        TableName=ranged,
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb_client.create_table(
        TableName=hashed,
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    chance = random.Random(7)
    for i in range(400):
        dynamodb_client.put_item(
            TableName=ranged,
            Item={
                "pk": {"S": f"P#{i % 8}"},
                "sk": {"S": f"{chance.choice('ABC')}#{i:04d}"},
                "n": {"N": str(chance.randint(0, 99))},
                "pad": {"S": "x" * chance.randint(0, 3_000)},
            },
        )
    for i in range(50):
        dynamodb_client.put_item(TableName=hashed, Item={"pk": {"S": f"H#{i}"}, "n": {"N": "1"}})
    yield ranged, hashed
    dynamodb_client.delete_table(TableName=ranged)
    dynamodb_client.delete_table(TableName=hashed)


QUERIES: list[dict[str, Any]] = [
    {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "P#3"}}},
    {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "P#none"}}},
    {
        "KeyConditionExpression": "pk = :p AND begins_with(sk, :b)",
        "ExpressionAttributeValues": {":p": {"S": "P#1"}, ":b": {"S": "B#"}},
    },
    {
        "KeyConditionExpression": "pk = :p AND sk BETWEEN :a AND :b",
        "ExpressionAttributeValues": {":p": {"S": "P#2"}, ":a": {"S": "A#0100"}, ":b": {"S": "C#"}},
        "ScanIndexForward": False,
    },
    {
        "KeyConditionExpression": "pk = :p",
        "FilterExpression": "n > :n",
        "ExpressionAttributeValues": {":p": {"S": "P#5"}, ":n": {"N": "50"}},
        "Limit": 7,
    },
    {
        "KeyConditionExpression": "pk = :p",
        "ProjectionExpression": "sk, n",
        "ExpressionAttributeValues": {":p": {"S": "P#6"}},
        "ConsistentRead": True,
        "Limit": 4,
    },
    {
        "KeyConditionExpression": "pk = :p",
        "Select": "COUNT",
        "ExpressionAttributeValues": {":p": {"S": "P#7"}},
    },
]


def every_page(client: DynamoDBClient, table: str, query: dict[str, Any]) -> list[dict[str, Any]]:
    """Each page's items, counts and last key, following the pagination to its end."""
    pages = []
    start: dict[str, Any] | None = None
    while True:
        extra = {} if start is None else {"ExclusiveStartKey": start}
        page = client.query(**cast(QueryInputTypeDef, {"TableName": table, **query, **extra}))
        pages.append(
            {
                "Items": page.get("Items"),
                "Count": page["Count"],
                "ScannedCount": page["ScannedCount"],
                "LastEvaluatedKey": page.get("LastEvaluatedKey"),
            }
        )
        start = page.get("LastEvaluatedKey")
        if start is None:
            return pages


def answers(client: DynamoDBClient, ranged: str, hashed: str) -> list[list[dict[str, Any]]]:
    found = [every_page(client, ranged, query) for query in QUERIES]
    for key in ("H#3", "H#none"):
        found.append(
            every_page(
                client,
                hashed,
                {
                    "KeyConditionExpression": "pk = :p",
                    "ExpressionAttributeValues": {":p": {"S": key}},
                },
            )
        )
    return found


def test_a_query_of_one_partition_answers_as_motos_own_whole_table_query(
    dynamodb_client: DynamoDBClient, tables: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ranged, hashed = tables
    assert vars(Table)["query"] is local_aws._query_one_partition  # the local AWS is patched

    indexed = answers(dynamodb_client, ranged, hashed)
    monkeypatch.setattr(Table, "query", local_aws._original_query)
    monkeypatch.setattr(Table, "all_items", local_aws._original_all_items)
    whole_table = answers(dynamodb_client, ranged, hashed)

    assert indexed == whole_table
    assert sum(len(page["Items"] or []) for page in indexed[0]) == 50  # P#3's items
    assert len(indexed[4]) > 1  # paged


def test_a_scan_still_reads_every_partition(
    dynamodb_client: DynamoDBClient, tables: tuple[str, str]
) -> None:
    ranged, _ = tables
    paginator = dynamodb_client.get_paginator("scan")
    items = [item for page in paginator.paginate(TableName=ranged) for item in page["Items"]]
    assert len(items) == 400
