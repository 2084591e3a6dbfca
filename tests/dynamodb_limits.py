"""DynamoDB's number limits on a moto client: moto stores any number, DynamoDB does not.

DynamoDB refuses, with HTTP 400 `ValidationException`, a number of more than 38 significant
digits or of a magnitude beyond 9.99E+125 or below 1E-130, in a request and in what an `ADD`
would store. moto takes them all (it does enforce the key-size and item-size limits), so the
contract suites attach this hook to the DynamoDB client under test: it answers such requests as
DynamoDB documents, before they reach moto, and lets every other request through."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any, cast

from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.client import BaseClient
from botocore.compat import HTTPHeaders
from mypy_boto3_dynamodb import DynamoDBClient

from domain.limits import counter_sum_problem, dynamodb_number_problem

_ADD_CLAUSE = re.compile(r"\bADD\s+(.*?)(?:\s+(?:SET|REMOVE|DELETE)\s|$)")


class _Body:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body


class DynamoDbNumberLimits:
    """Attach to a client; `reader` (a plain client to the same server) reads the stored item an
    `ADD` adds to. `refused` counts the requests answered."""

    def __init__(self, reader: DynamoDBClient) -> None:
        self._reader = reader
        self.refused = 0

    def attach(self, client: BaseClient) -> None:
        for operation in ("UpdateItem", "PutItem", "BatchWriteItem"):
            client.meta.events.register_first(
                f"before-send.dynamodb.{operation}", cast(Any, self._send)
            )

    def _send(self, request: AWSPreparedRequest, **_: Any) -> AWSResponse | None:
        raw = request.body if isinstance(request.body, bytes | str) else b"{}"
        body = json.loads(raw or b"{}")
        problem = next(
            (p for n in _numbers(body) if (p := dynamodb_number_problem(n)) is not None), None
        )
        if problem is None and "UpdateExpression" in body:
            problem = self._add_problem(body)
        if problem is None:
            return None
        self.refused += 1
        payload = json.dumps(
            {"__type": "com.amazon.coral.validate#ValidationException", "message": problem}
        )
        headers = HTTPHeaders()
        headers["Content-Type"] = "application/x-amz-json-1.0"
        return AWSResponse(request.url, 400, headers, _Body(payload.encode()))

    def _add_problem(self, body: dict[str, Any]) -> str | None:
        clause = _ADD_CLAUSE.search(body["UpdateExpression"])
        if clause is None:
            return None
        names = body.get("ExpressionAttributeNames", {})
        values = body.get("ExpressionAttributeValues", {})
        stored = self._reader.get_item(
            TableName=body["TableName"], Key=body["Key"], ConsistentRead=True
        ).get("Item", {})
        if not _condition_holds(body, stored):
            return None  # DynamoDB answers ConditionalCheckFailed first: moto does that
        for pair in clause.group(1).split(","):
            attribute, placeholder = pair.split()
            attribute = names.get(attribute, attribute)
            current = Decimal(cast(dict[str, str], stored.get(attribute, {"N": "0"}))["N"])
            problem = counter_sum_problem(current, Decimal(values[placeholder]["N"]))
            if problem is not None:
                return problem
        return None


def _condition_holds(body: dict[str, Any], stored: dict[str, Any]) -> bool:
    """The counters' one condition, `attribute_not_exists(#wm) OR #wm < :first`."""
    if "ConditionExpression" not in body:
        return True
    watermark = body.get("ExpressionAttributeNames", {}).get("#wm")
    first = body.get("ExpressionAttributeValues", {}).get(":first", {}).get("S")
    held = stored.get(watermark, {}).get("S") if watermark else None
    return held is None or first is None or held < first


def _numbers(value: object) -> list[Decimal]:
    """Every N attribute value in a request body."""
    found: list[Decimal] = []
    if isinstance(value, dict):
        if set(value) == {"N"} and isinstance(value["N"], str):
            return [Decimal(value["N"])]
        for child in value.values():
            found.extend(_numbers(child))
    elif isinstance(value, list):
        for child in value:
            found.extend(_numbers(child))
    return found
