"""Faults injected inside botocore: refused calls and dropped connections (no effect on the server).

A `before-send` handler that returns a response makes botocore skip the network and parse that
response instead; one that raises a transport error looks like a dropped connection. Either way
botocore's own retries run, exactly as against the real service.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any, cast

from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.client import BaseClient
from botocore.compat import HTTPHeaders
from botocore.exceptions import ConnectionClosedError, EndpointConnectionError

from tests.faults.plan import FaultKind, FaultPlan


class _Body:
    """The `raw` of an AWSResponse: botocore reads it with `stream()`."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body

    def read(self, *_: Any) -> bytes:
        return self._body


def error_response(service: str, kind: FaultKind, url: str) -> AWSResponse:
    """The service's own error for a refused call, in its wire protocol."""
    throttled = kind is FaultKind.THROTTLED
    if service == "dynamodb":
        status, error_type = (
            (400, "ProvisionedThroughputExceededException")
            if throttled
            else (500, "InternalServerError")
        )
        body = json.dumps(
            {
                "__type": f"com.amazonaws.dynamodb.v20120810#{error_type}",
                "message": "injected fault",
            }
        ).encode()
        headers = {"Content-Type": "application/x-amz-json-1.0"}
    elif service == "sqs":
        # SQS speaks the JSON protocol (AWS query-compatible) in this botocore.
        status, code = (400, "RequestThrottled") if throttled else (500, "InternalError")
        body = json.dumps({"__type": f"com.amazonaws.sqs#{code}", "message": "injected"}).encode()
        headers = {
            "Content-Type": "application/x-amz-json-1.0",
            "x-amzn-query-error": f"{code};{'Sender' if throttled else 'Receiver'}",
        }
    elif service == "s3":
        status, code = (503, "SlowDown") if throttled else (500, "InternalError")
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            "<Message>injected fault</Message><RequestId>FAULT</RequestId></Error>"
        ).encode()
        headers = {"Content-Type": "application/xml"}
    else:
        raise ValueError(f"no error format for service {service!r}")
    headers["Content-Length"] = str(len(body))
    http_headers = HTTPHeaders()
    for name, value in headers.items():
        http_headers[name] = value
    return AWSResponse(url, status, http_headers, _Body(body))


def attach_request_faults(client: BaseClient, plan: FaultPlan) -> None:
    """Let `plan` refuse or drop a seeded fraction of this client's requests."""
    service = client.meta.service_model.service_name
    endpoint_url = client.meta.endpoint_url

    def before_send(request: AWSPreparedRequest, **_: Any) -> AWSResponse | None:
        kind = plan.before_request(service)
        if kind is None:
            return None
        if kind is FaultKind.CONNECTION_CLOSED:
            raise ConnectionClosedError(endpoint_url=request.url)
        if kind is FaultKind.ENDPOINT_UNREACHABLE:
            raise EndpointConnectionError(endpoint_url=endpoint_url)
        return error_response(service, kind, request.url)

    # The stubs type handlers as returning None; botocore uses a before-send handler's response.
    client.meta.events.register(f"before-send.{service}", cast(Callable[..., None], before_send))
