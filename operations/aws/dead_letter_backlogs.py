"""The dead letters kept, for erasure to take some of them out: the SQS queue (held by
receiving them, given back by making them visible again) and the letters kept in S3."""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from application.ports import DeadLetterBacklog, HeldDeadLetter
from domain.errors import TransientInfrastructureError
from infrastructure.aws.dead_letter_format import (
    DEFAULT_DEAD_LETTER_PREFIX,
    MalformedDeadLetterError,
)
from infrastructure.aws.sqs_dead_letters import SQS_MAX_BATCH_ENTRIES
from operations.aws.dead_letter_readers import S3DeadLetterReader, SqsDeadLetterReader

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import ChangeMessageVisibilityBatchRequestEntryTypeDef

logger = logging.getLogger(__name__)

HOLD_SECONDS = 900
"""How long a received message stays invisible: long enough for a run to read the queue, delete
the table items and come back to remove or release the messages (it releases them at once)."""


class SqsDeadLetterBacklog(DeadLetterBacklog):
    """`hold` receives until a long poll of `wait_seconds` finds nothing visible, keeping each
    message invisible for `hold_seconds`; a message received twice (its hold ran out) is held
    once, under its latest receipt handle. `remove` deletes messages (DeleteMessageBatch);
    their bodies kept in S3, if any, are dead-letter objects that `S3DeadLetterBacklog` removes
    after. `release` sets their visibility to 0 (ChangeMessageVisibilityBatch); a release that
    fails is logged, and the message comes back when its hold runs out."""

    name = "queue"

    def __init__(
        self,
        sqs: SQSClient,
        queue_url: str,
        s3: S3Client,
        wait_seconds: int = 1,
        hold_seconds: int = HOLD_SECONDS,
    ) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._reader = SqsDeadLetterReader(
            sqs, queue_url, s3, wait_seconds=wait_seconds, visibility_timeout=hold_seconds
        )

    def hold(self) -> list[HeldDeadLetter]:
        held: dict[str, HeldDeadLetter] = {}
        while True:
            received = self._reader.receive()
            if received.empty:
                return list(held.values())
            for letter in received.letters:
                held[letter.message_id] = HeldDeadLetter(letter.receipt_handle, letter.letter)
            for message in received.unreadable:
                held[message.message_id] = HeldDeadLetter(
                    message.receipt_handle, None, message.problem
                )

    def remove(self, handles: Collection[str]) -> None:
        not_deleted = self._reader.delete(list(handles))
        if not_deleted:
            raise TransientInfrastructureError(
                "sqs:DeleteMessageBatch", f"{len(not_deleted)} messages not deleted"
            )

    def release(self, handles: Collection[str]) -> None:
        ordered = list(handles)
        for start in range(0, len(ordered), SQS_MAX_BATCH_ENTRIES):
            chunk = ordered[start : start + SQS_MAX_BATCH_ENTRIES]
            entries: list[ChangeMessageVisibilityBatchRequestEntryTypeDef] = [
                {"Id": str(index), "ReceiptHandle": handle, "VisibilityTimeout": 0}
                for index, handle in enumerate(chunk)
            ]
            try:
                response = self._sqs.change_message_visibility_batch(
                    QueueUrl=self._queue_url, Entries=entries
                )
            except (ClientError, BotoCoreError) as error:
                logger.warning("dead letters not released: %s", error)
                continue
            if response.get("Failed"):
                logger.warning("%d dead letters not released", len(response["Failed"]))


class S3DeadLetterBacklog(DeadLetterBacklog):
    """Every object under the dead-letter prefix: the letters kept in S3 without a queue, those a
    queue refused, and the bodies of queue messages too large for SQS. Held means read (S3 has no
    visibility); `remove` is DeleteObjects, 1,000 keys a request."""

    name = "s3"

    def __init__(self, s3: S3Client, bucket: str, prefix: str = DEFAULT_DEAD_LETTER_PREFIX) -> None:
        self._reader = S3DeadLetterReader(s3, bucket, prefix)

    def hold(self) -> list[HeldDeadLetter]:
        held: list[HeldDeadLetter] = []
        for key in self._reader.keys():  # noqa: SIM118 (a listing of S3, not a dict)
            try:
                held.append(HeldDeadLetter(key, self._reader.read(key).letter()))
            except MalformedDeadLetterError as error:
                held.append(HeldDeadLetter(key, None, str(error)))
        return held

    def remove(self, handles: Collection[str]) -> None:
        not_deleted = self._reader.delete(list(handles))
        if not_deleted:
            raise TransientInfrastructureError(
                "s3:DeleteObjects", f"{len(not_deleted)} dead-letter objects not deleted"
            )

    def release(self, handles: Collection[str]) -> None:
        """Nothing to give back: reading an object hides it from no one."""
