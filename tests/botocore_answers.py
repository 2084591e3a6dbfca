"""Answer a request on the client, before it is sent, with an error the service would give:
what the limit hooks (tests/s3_limits.py, tests/sqs_limits.py) use where moto is more lenient
than AWS. The request's parameters are read as the caller gave them (`provide-client-params`);
the answer short-circuits the call (`before-call`), so nothing reaches moto."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

from botocore.awsrequest import AWSResponse
from botocore.client import BaseClient
from botocore.compat import HTTPHeaders

_ANSWER = "tests.botocore_answers.answer"

Judge = Callable[[Mapping[str, Any]], tuple[str, str] | None]
"""The error (code, message) the service answers a request's parameters with, or None."""


class _Body:
    def stream(self, **_: Any) -> Any:
        yield b""


def answer_errors(
    client: BaseClient, operation: str, judge: Judge, on_refusal: Callable[[], None]
) -> None:
    service = client.meta.service_model.service_id.hyphenize()

    def read(params: Mapping[str, Any], context: dict[str, Any], **_: Any) -> None:
        context[_ANSWER] = judge(params)

    def answer(context: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        error = context.pop(_ANSWER, None)
        if error is None:
            return None
        on_refusal()
        code, message = error
        response = AWSResponse("https://refused.invalid/", 400, HTTPHeaders(), _Body())
        parsed = {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": 400, "HTTPHeaders": {}, "RetryAttempts": 0},
        }
        return response, parsed

    events = client.meta.events
    events.register_first(f"provide-client-params.{service}.{operation}", cast(Any, read))
    events.register_first(f"before-call.{service}.{operation}", cast(Any, answer))
