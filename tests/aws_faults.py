"""Fault injection into boto3 clients through botocore's event hooks (no patching of our code)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, cast

from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.client import BaseClient
from botocore.compat import HTTPHeaders

# botocore lets a handler answer instead of the server; the stubs only know handlers returning None.
_Handler = Callable[..., None]


class _RawBody:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
)


class ThrottledPuts:
    """S3 answers 503 SlowDown, before anything is stored, to PutObject of keys containing a marker."""

    def __init__(self, key_markers: set[str]) -> None:
        self._markers = key_markers
        self.throttled = 0
        self._lock = threading.Lock()

    def attach(self, client: BaseClient) -> None:
        client.meta.events.register("before-send.s3.PutObject", cast(_Handler, self._answer))

    def _answer(self, request: AWSPreparedRequest, **_: Any) -> AWSResponse | None:
        if not any(marker in request.url for marker in self._markers):
            return None
        with self._lock:
            self.throttled += 1
        return AWSResponse(
            request.url,
            503,
            HTTPHeaders.from_dict({"Content-Type": "application/xml"}),
            _RawBody(SLOW_DOWN),
        )


class FailedBatchEntries:
    """SendMessageBatch reports chosen entries in `Failed`, as SQS does, without enqueuing them.

    `failures` maps a record's sequence number to how many times its entry fails. The entry is
    withheld from the request (so it is really not enqueued) and reported back as failed.
    """

    def __init__(
        self, failures: Mapping[int, int], code: str = "InternalError", sender_fault: bool = False
    ) -> None:
        self._remaining = dict(failures)
        self._code = code
        self._sender_fault = sender_fault
        self._lock = threading.Lock()
        self.failed_sequences: list[int] = []

    def attach(self, client: BaseClient) -> None:
        events = client.meta.events
        events.register("before-parameter-build.sqs.SendMessageBatch", self._withhold)
        events.register(
            "before-call.sqs.SendMessageBatch", cast(_Handler, self._answer_if_nothing_left)
        )
        events.register("after-call.sqs.SendMessageBatch", self._report_failed)

    def _withhold(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        kept: list[dict[str, Any]] = []
        withheld: list[str] = []
        for entry in params["Entries"]:
            sequence = int(json.loads(entry["MessageBody"])["kinesis"]["sequence_number"])
            with self._lock:
                fail = self._remaining.get(sequence, 0) > 0
                if fail:
                    self._remaining[sequence] -= 1
                    self.failed_sequences.append(sequence)
            if fail:
                withheld.append(entry["Id"])
            else:
                kept.append(entry)
        context["withheld_entry_ids"] = withheld
        if kept:
            params["Entries"] = kept
        else:
            # Nothing to send: the call is answered without reaching SQS (see below).
            context["nothing_left_to_send"] = True

    def _answer_if_nothing_left(
        self, params: dict[str, Any], context: dict[str, Any], **_: Any
    ) -> tuple[AWSResponse, dict[str, Any]] | None:
        if context.get("nothing_left_to_send"):
            http = AWSResponse(params["url"], 200, HTTPHeaders.from_dict({}), _RawBody(b"{}"))
            return http, {"Successful": [], "Failed": [], "ResponseMetadata": {}}
        return None

    def _report_failed(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        failed = parsed.setdefault("Failed", [])
        for entry_id in context.get("withheld_entry_ids", []):
            failed.append(
                {
                    "Id": entry_id,
                    "SenderFault": self._sender_fault,
                    "Code": self._code,
                    "Message": "injected failure",
                }
            )
