"""Faults injected into a real boto3 client through botocore's event hooks (no mocks of our code).

Each helper acts on requests that really cross HTTP to the moto server, or short-circuits a
request with a response DynamoDB could have sent.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.client import BaseClient
from botocore.compat import HTTPHeaders


def _register_first(
    client: BaseClient, stage: str, operation: str, handler: Callable[..., object]
) -> None:
    """botocore acts on what handlers return (a retry delay, a response); its stubs say None."""
    event = f"{stage}.{client.meta.service_model.service_id.hyphenize()}.{operation}"
    client.meta.events.register_first(event, cast("Callable[..., None]", handler))


@dataclass(slots=True)
class LoseResponses:
    """The first `times` successful responses of an operation look to the client like a 500, so
    botocore sends the same request again: the server has applied it, the client does not know."""

    times: int = 1
    lost: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def attach(self, client: BaseClient, operation: str) -> None:
        _register_first(client, "needs-retry", operation, self._needs_retry)

    def _needs_retry(self, response: Any = None, **_: Any) -> float | None:
        if response is None:
            return None
        http_response, _parsed = response
        if http_response.status_code != 200:
            return None
        with self._lock:
            if self.lost >= self.times:
                return None
            self.lost += 1
        return 0.0


class _Body:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


@dataclass(slots=True)
class RefuseRequests:
    """Answers matching requests with a DynamoDB error instead of sending them (never applied)."""

    matches: Callable[[bytes], bool]
    code: str = "ProvisionedThroughputExceededException"
    status: int = 400
    refused: int = 0

    def attach(self, client: BaseClient, operation: str) -> None:
        _register_first(client, "before-send", operation, self._send)

    def _send(self, request: AWSPreparedRequest, **_: Any) -> AWSResponse | None:
        body = request.body if isinstance(request.body, bytes) else str(request.body).encode()
        if not self.matches(body):
            return None
        self.refused += 1
        payload = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{self.code}"})
        headers = HTTPHeaders()
        headers["Content-Type"] = "application/x-amz-json-1.0"
        return AWSResponse(request.url, self.status, headers, _Body(payload.encode()))


def _all_but_the_first(index: int, _item: Any) -> bool:
    return index > 0


@dataclass(slots=True)
class WithholdBatchItems:
    """BatchWriteItem / BatchGetItem: the server never sees the items `withhold` picks, in the
    first `times` calls (every call when None), and the client gets them back as
    UnprocessedItems / UnprocessedKeys, as DynamoDB does under throttling."""

    withhold: Callable[[int, Any], bool] = _all_but_the_first
    times: int | None = 1
    calls: int = 0
    withheld: list[Any] = field(default_factory=list)
    _pending: dict[int, tuple[str, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def attach(self, client: BaseClient, operation: str) -> None:
        _register_first(client, "provide-client-params", operation, self._trim)
        _register_first(client, "before-call", operation, self._answer_when_nothing_is_left)
        _register_first(client, "after-call", operation, self._hand_back)

    def _trim(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        with self._lock:
            self.calls += 1
            if self.times is not None and self.calls > self.times:
                return
            ((table, request),) = params["RequestItems"].items()
            is_get = isinstance(request, dict)  # BatchGetItem: {"Keys": [...], ...}
            entries = list(request["Keys"] if is_get else request)
            sent = [e for i, e in enumerate(entries) if not self.withhold(i, e)]
            held = [e for i, e in enumerate(entries) if self.withhold(i, e)]
            if not held:
                return
            self.withheld.extend(held)
            back: Any = {**request, "Keys": held} if is_get else held
            self._pending[id(context)] = (table, back)
            if sent:  # an empty request is invalid: then `before-call` answers instead
                params["RequestItems"] = {table: {**request, "Keys": sent} if is_get else sent}
            else:
                context["nothing_left_to_send"] = True

    def _answer_when_nothing_is_left(
        self, context: dict[str, Any], **_: Any
    ) -> tuple[AWSResponse, dict[str, Any]] | None:
        if not context.get("nothing_left_to_send"):
            return None
        response = AWSResponse("http://127.0.0.1/", 200, HTTPHeaders(), _Body(b"{}"))
        return response, {"ResponseMetadata": {"HTTPStatusCode": 200}}

    def _hand_back(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        with self._lock:
            pending = self._pending.pop(id(context), None)
        if pending is None:
            return
        table, back = pending
        if isinstance(back, dict):
            parsed.setdefault("Responses", {})
            parsed["UnprocessedKeys"] = {table: back}
        else:
            parsed["UnprocessedItems"] = {table: back}
