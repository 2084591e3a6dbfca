"""Counter items read straight from the aggregation table, by the documented layout
(docs/storage.md "Counter items"): a counter is one item per write shard, plus perhaps one of the
legacy layout, and its value is their sum."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from mypy_boto3_dynamodb import DynamoDBClient

from infrastructure.aws.dynamodb_codec import Item
from infrastructure.dynamodb_layout import counter_partition_keys


def counter_items(
    client: DynamoDBClient, table: str, experiment_id: str, sort_key_prefix: str
) -> dict[str, list[Item]]:
    """Every item of the experiment's counters whose sort key starts with the prefix, in every
    write shard's partition and the legacy one, by sort key."""
    found: dict[str, list[Item]] = defaultdict(list)
    for partition_key in counter_partition_keys(experiment_id):
        pages = client.get_paginator("query").paginate(
            TableName=table,
            KeyConditionExpression="partition_key = :pk AND begins_with(sort_key, :prefix)",
            ExpressionAttributeValues={
                ":pk": {"S": partition_key},
                ":prefix": {"S": sort_key_prefix},
            },
        )
        for page in pages:
            for item in page["Items"]:
                found[item["sort_key"]["S"]].append(item)
    return dict(found)


def summed_counters(
    client: DynamoDBClient, table: str, experiment_id: str, sort_key_prefix: str
) -> dict[str, tuple[int, Decimal]]:
    """Event count and value sum of each counter, summed over its items, by sort key."""
    return {
        sort_key: (
            sum(int(item["event_count"]["N"]) for item in items),
            sum((Decimal(item["value_sum"]["N"]) for item in items), Decimal(0)),
        )
        for sort_key, items in counter_items(client, table, experiment_id, sort_key_prefix).items()
    }
