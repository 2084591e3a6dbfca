"""Moves the first-seen markers written under the previous bucket count
(`PREVIOUS_MARKER_WRITE_SHARDS`) to their key under `MARKER_WRITE_SHARDS`: the deploy step of the
bucket change (docs/storage.md, "Marker buckets").

The writers know the current key only. A marker left under its previous key would not be seen by
the user's next event in its window, which would write a second marker and count the user again;
so, with the event-source mapping disabled (no batch and no replay writing markers), this copies
each such item to its current key and deletes the previous one. Markers of users whose bucket is
below the previous count have the same key in both layouts and stay. A one-off `Scan` of the
table's marker items; run it again after an interruption: a moved item is not found again,
and one copied but not yet deleted is recognised by its copy and deleted.

    python -m operations.aws.marker_buckets --table NAME [--endpoint-url URL] [--region REGION]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import boto3
from botocore.exceptions import ClientError

from domain.metrics import EXPERIMENT_WINDOW_LABEL
from infrastructure.aws.dynamodb_codec import Item, read_string, string
from infrastructure.dynamodb_layout import (
    DAY_MARKER_SORT_PREFIX,
    MARKER_PARTITION_PREFIX,
    MARKER_WRITE_SHARDS,
    PREVIOUS_MARKER_WRITE_SHARDS,
    write_shard,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

_BUCKET_DIGITS = 2


@dataclass(frozen=True, slots=True)
class MovedMarkers:
    moved: int
    """Items copied to their current key and deleted from their previous one."""
    kept: int
    """Marker items left where they are: at their current key already, or legacy ones."""
    conflicts: int
    """Items whose current key already held an item (written after the deploy): left where
    they are; user sets read both, and the user was already counted twice."""


def current_key(partition_key: str, sort_key: str) -> tuple[str, str] | None:
    """The current key of a marker item stored under `partition_key` in one of the previous
    buckets, or None when it is not such an item or its key did not change."""
    head, separator, bucket = partition_key.rpartition("#B")
    if not separator or len(bucket) != _BUCKET_DIGITS or not bucket.isdigit():
        return None  # a legacy (unbucketed) marker partition: not bucketed, not moved
    if int(bucket) >= PREVIOUS_MARKER_WRITE_SHARDS:
        return None
    window = head.rpartition("#")[2]
    if window == EXPERIMENT_WINDOW_LABEL:
        user_id = sort_key
    elif sort_key.startswith(DAY_MARKER_SORT_PREFIX):
        user_id = sort_key[len(DAY_MARKER_SORT_PREFIX) :]
    else:
        user_id = sort_key.partition("#")[2]
    if write_shard(user_id, PREVIOUS_MARKER_WRITE_SHARDS) != int(bucket):
        return None  # not an item this layout wrote: leave it
    current = write_shard(user_id, MARKER_WRITE_SHARDS)
    if current == int(bucket):
        return None
    return f"{head}#B{current:0{_BUCKET_DIGITS}d}", sort_key


def move_markers_to_current_buckets(client: DynamoDBClient, table_name: str) -> MovedMarkers:
    moved = kept = conflicts = 0
    request: dict[str, object] = {
        "TableName": table_name,
        "FilterExpression": "begins_with(partition_key, :prefix)",
        "ExpressionAttributeValues": {":prefix": string(MARKER_PARTITION_PREFIX)},
    }
    while True:
        page = client.scan(**request)  # type: ignore[arg-type]  # the request is built above
        for item in page.get("Items", []):
            partition, sort = read_string(item, "partition_key"), read_string(item, "sort_key")
            target = current_key(partition, sort)
            if target is None:
                kept += 1
                continue
            if _copy(client, table_name, item, target):
                client.delete_item(
                    TableName=table_name,
                    Key={"partition_key": string(partition), "sort_key": string(sort)},
                )
                moved += 1
            else:
                conflicts += 1
        last = page.get("LastEvaluatedKey")
        if not last:
            return MovedMarkers(moved, kept, conflicts)
        request["ExclusiveStartKey"] = last


def _copy(client: DynamoDBClient, table_name: str, item: Item, key: tuple[str, str]) -> bool:
    """Put the item under `key` unless another item is there; whether `key` now holds it (put
    now, or by an earlier run interrupted before its delete: the same attributes)."""
    partition, sort = key
    copy = {**item, "partition_key": string(partition), "sort_key": string(sort)}
    try:
        client.put_item(
            TableName=table_name,
            Item=copy,
            ConditionExpression="attribute_not_exists(partition_key)",
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            return cast(dict[str, object], error.response).get("Item") == copy
        raise
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", required=True, help="the aggregation table")
    parser.add_argument("--endpoint-url", default=None)
    parser.add_argument("--region", default=None)
    args = parser.parse_args(argv)
    client = boto3.client("dynamodb", endpoint_url=args.endpoint_url, region_name=args.region)
    print(move_markers_to_current_buckets(client, args.table))


if __name__ == "__main__":
    main()
