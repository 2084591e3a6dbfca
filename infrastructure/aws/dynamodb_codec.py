"""DynamoDB plumbing shared by the adapters: attribute values, key parts, batched calls."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, TypeAlias, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from application.ports import Deadline, WriteReport, merged_reports
from application.shard_cut import ShardCut
from domain.errors import InfrastructureConfigurationError, TransientInfrastructureError
from domain.metrics import LATER_MEASURES, MEASURE_NAMES, Measures
from infrastructure.aws.errors import is_transient, translate
from infrastructure.dynamodb_layout import JOINED_PREFIX

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import (
        AttributeValueTypeDef,
        KeysAndAttributesTypeDef,
        QueryInputTypeDef,
        WriteRequestTypeDef,
    )

Item: TypeAlias = "dict[str, AttributeValueTypeDef]"
T = TypeVar("T")

BATCH_WRITE_LIMIT = 25
BATCH_GET_LIMIT = 100


class MalformedItemError(ValueError):
    """A stored item does not have the shape this adapter writes or expects."""


def string(value: str) -> AttributeValueTypeDef:
    return {"S": value}


def number(value: int | Decimal) -> AttributeValueTypeDef:
    # 'f' keeps every digit and never switches to exponent notation ("1E+1").
    return {"N": format(value, "f") if isinstance(value, Decimal) else str(value)}


def read_string(item: Mapping[str, AttributeValueTypeDef], name: str) -> str:
    value = item.get(name)
    if value is None or "S" not in value:
        raise MalformedItemError(f"attribute {name!r} is missing or not a string")
    return value["S"]


def read_decimal(item: Mapping[str, AttributeValueTypeDef], name: str) -> Decimal:
    value = item.get(name)
    if value is None or "N" not in value:
        raise MalformedItemError(f"attribute {name!r} is missing or not a number")
    return Decimal(value["N"])


def read_int(item: Mapping[str, AttributeValueTypeDef], name: str) -> int:
    number_value = read_decimal(item, name)
    if number_value != number_value.to_integral_value():
        raise MalformedItemError(f"attribute {name!r} is not an integer: {number_value}")
    return int(number_value)


MEASURES_ADD = "ADD " + ", ".join(f"{name} :{name}" for name in MEASURE_NAMES)
"""A counter update's `ADD` clause: each measure onto the number attribute of its name, with
the value placeholder of its name (`measure_values`)."""


def measure_values(measures: Measures) -> dict[str, AttributeValueTypeDef]:
    """The values of `MEASURES_ADD`'s placeholders."""
    return {f":{name}": number(amount) for name, amount in measures.as_numbers().items()}


def read_measures(item: Mapping[str, AttributeValueTypeDef]) -> Measures:
    """A counter item's measures; raises `MalformedItemError` when one is missing or a count
    is not a whole number."""
    return Measures.from_stored(
        lambda name: 0 if name in LATER_MEASURES and name not in item else read_int(item, name),
        lambda name: read_decimal(item, name),
    )


def read_joined(item: Mapping[str, AttributeValueTypeDef]) -> dict[str, int]:
    """An experiment-to-date counter item's joined exposed users, by metric."""
    return {
        name[len(JOINED_PREFIX) :]: read_int(item, name)
        for name in item
        if name.startswith(JOINED_PREFIX)
    }


def settled(futures: Iterable[Future[WriteReport]]) -> WriteReport:
    """One report of writes made concurrently, once every one has settled: per shard the lowest
    cut, every problem once, every refusal. A configuration error is raised only then (the first
    one), so that no write is still under way when the caller hears of it."""
    reports: list[WriteReport] = []
    configuration_errors: list[InfrastructureConfigurationError] = []
    for future in futures:
        try:
            reports.append(future.result())
        except InfrastructureConfigurationError as error:
            configuration_errors.append(error)
    if configuration_errors:
        raise configuration_errors[0]
    return merged_reports(reports)


def failed_write(error: Exception, operation: str, cut: ShardCut) -> WriteReport:
    """The report of a write that failed for now (`cut` redelivers what it was to make
    durable); raises the domain's error for a failure that retrying cannot help."""
    domain_error = translate(error, operation)
    if not is_transient(error):
        raise domain_error from error
    return WriteReport(cut, (str(domain_error),))


def chunked(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Bounded exponential backoff with full jitter, for work DynamoDB handed back unprocessed."""

    attempts: int = 6
    base_seconds: float = 0.05
    cap_seconds: float = 1.0
    sleep: Callable[[float], None] = field(default=time.sleep)
    jitter: Callable[[], float] = field(default=random.random)

    def pause(self, retry: int) -> None:
        self.sleep(self.jitter() * min(self.cap_seconds, self.base_seconds * 2**retry))


def put_items(
    client: DynamoDBClient,
    table_name: str,
    items: Sequence[Item],
    backoff: Backoff,
    deadline: Deadline,
) -> list[Item]:
    """Put at most 25 items with one BatchWriteItem, then retry what comes back unprocessed.

    Returns the items that are still not written once the retries are spent or the deadline has
    passed. botocore errors propagate: the caller decides between reporting and raising.
    """
    if len(items) > BATCH_WRITE_LIMIT:
        raise ValueError(f"BatchWriteItem takes at most {BATCH_WRITE_LIMIT} items")
    pending: list[Item] = list(items)
    for retry in range(backoff.attempts):
        if not pending:
            return []
        if retry:
            if deadline.expired():
                return pending
            backoff.pause(retry - 1)
        requests: list[WriteRequestTypeDef] = [{"PutRequest": {"Item": item}} for item in pending]
        response = client.batch_write_item(RequestItems={table_name: requests})
        unprocessed = response.get("UnprocessedItems", {}).get(table_name, [])
        pending = [
            request["PutRequest"]["Item"] for request in unprocessed if "PutRequest" in request
        ]
    return pending


def get_items(
    client: DynamoDBClient,
    table_name: str,
    keys: Sequence[Item],
    projection: str,
    attribute_names: Mapping[str, str],
    backoff: Backoff,
    consistent_read: bool = False,
) -> tuple[list[Item], list[Item]]:
    """Read at most 100 items with BatchGetItem, retrying unprocessed keys.

    Returns (items found, keys still unprocessed after the bounded retries).
    """
    if len(keys) > BATCH_GET_LIMIT:
        raise ValueError(f"BatchGetItem takes at most {BATCH_GET_LIMIT} keys")
    found: list[Item] = []
    pending: list[Item] = list(keys)
    for retry in range(backoff.attempts):
        if not pending:
            break
        if retry:
            backoff.pause(retry - 1)
        request: KeysAndAttributesTypeDef = {
            "Keys": pending,
            "ProjectionExpression": projection,
            "ExpressionAttributeNames": attribute_names,
            "ConsistentRead": consistent_read,
        }
        response = client.batch_get_item(RequestItems={table_name: request})
        found.extend(response.get("Responses", {}).get(table_name, []))
        unprocessed = response.get("UnprocessedKeys", {}).get(table_name)
        pending = list(unprocessed["Keys"]) if unprocessed else []
    return found, pending


def read_items(
    client: DynamoDBClient,
    table_name: str,
    keys: Sequence[Item],
    projection: str,
    attribute_names: Mapping[str, str],
    backoff: Backoff,
    consistent_read: bool = False,
) -> list[Item]:
    """`get_items`, every key or a failure: botocore's errors translated, and keys still
    unprocessed after the retries a `TransientInfrastructureError`."""
    try:
        found, unprocessed = get_items(
            client, table_name, keys, projection, attribute_names, backoff, consistent_read
        )
    except (ClientError, BotoCoreError) as error:
        raise translate(error, "BatchGetItem") from error
    if unprocessed:
        raise TransientInfrastructureError(
            "BatchGetItem",
            f"{len(unprocessed)} keys of {table_name} still unprocessed after retries",
        )
    return found


def query_items(client: DynamoDBClient, request: QueryInputTypeDef) -> list[Item]:
    """Every item a `Query` finds, page after page; botocore's errors translated."""
    items: list[Item] = []
    try:
        while True:
            response = client.query(**request)
            items.extend(response.get("Items", []))
            last = response.get("LastEvaluatedKey")
            if not last:
                return items
            request = {**request, "ExclusiveStartKey": last}
    except (ClientError, BotoCoreError) as error:
        raise translate(error, "Query") from error


def delete_keys(
    client: DynamoDBClient,
    table_name: str,
    keys: Sequence[Item],
    backoff: Backoff,
) -> list[Item]:
    """Delete at most 25 items by key with one BatchWriteItem (a `DeleteRequest` each; deleting
    an absent item is harmless), then retry what comes back unprocessed. Returns the keys still
    not deleted once the retries are spent; botocore errors propagate."""
    if len(keys) > BATCH_WRITE_LIMIT:
        raise ValueError(f"BatchWriteItem takes at most {BATCH_WRITE_LIMIT} items")
    pending: list[Item] = list(keys)
    for retry in range(backoff.attempts):
        if not pending:
            return []
        if retry:
            backoff.pause(retry - 1)
        requests: list[WriteRequestTypeDef] = [{"DeleteRequest": {"Key": key}} for key in pending]
        response = client.batch_write_item(RequestItems={table_name: requests})
        unprocessed = response.get("UnprocessedItems", {}).get(table_name, [])
        pending = [
            request["DeleteRequest"]["Key"] for request in unprocessed if "DeleteRequest" in request
        ]
    return pending
