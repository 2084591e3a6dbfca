"""Reads dead letters back for replays and erasure: from the SQS queue (with the S3 bodies of
large letters) and from the dead-letter prefix in S3."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from domain.rejections import DeadLetter
from infrastructure.aws.dead_letter_format import (
    DEFAULT_DEAD_LETTER_PREFIX,
    DataLocation,
    DeadLetterEnvelope,
    MalformedDeadLetterError,
    decode_letter,
)
from infrastructure.aws.errors import translate
from infrastructure.aws.s3_listing import listed_objects
from infrastructure.aws.sqs_dead_letters import SQS_MAX_BATCH_ENTRIES

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import DeleteMessageBatchRequestEntryTypeDef


@dataclass(frozen=True, slots=True)
class ReceivedDeadLetter:
    letter: DeadLetter
    dead_lettered_at: datetime
    data_location: DataLocation | None
    message_id: str
    receipt_handle: str


@dataclass(frozen=True, slots=True)
class UnreadableMessage:
    """A message that is not a dead letter we can restore; left in the queue for a person."""

    message_id: str
    receipt_handle: str
    problem: str


@dataclass(frozen=True, slots=True)
class ReceivedMessages:
    letters: tuple[ReceivedDeadLetter, ...]
    unreadable: tuple[UnreadableMessage, ...]

    @property
    def empty(self) -> bool:
        return not self.letters and not self.unreadable


class SqsDeadLetterReader:
    """Receives dead letters for replays; deletes them only when the caller says it is done."""

    def __init__(
        self,
        sqs: SQSClient,
        queue_url: str,
        s3: S3Client,
        wait_seconds: int = 20,
        visibility_timeout: int = 300,
    ) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._s3 = s3
        self._wait_seconds = wait_seconds
        self._visibility_timeout = visibility_timeout

    def receive(self, max_messages: int = SQS_MAX_BATCH_ENTRIES) -> ReceivedMessages:
        try:
            response = self._sqs.receive_message(
                QueueUrl=self._queue_url,
                MaxNumberOfMessages=max_messages,
                WaitTimeSeconds=self._wait_seconds,
                VisibilityTimeout=self._visibility_timeout,
            )
        except (ClientError, BotoCoreError) as error:
            raise translate(error, "sqs:ReceiveMessage") from error
        letters: list[ReceivedDeadLetter] = []
        unreadable: list[UnreadableMessage] = []
        for message in response.get("Messages", []):
            message_id = message.get("MessageId", "")
            receipt_handle = message.get("ReceiptHandle", "")
            try:
                envelope = decode_letter(message.get("Body", ""))
                letter = self._restore(envelope)
            except MalformedDeadLetterError as error:
                unreadable.append(UnreadableMessage(message_id, receipt_handle, str(error)))
                continue
            letters.append(
                ReceivedDeadLetter(
                    letter,
                    envelope.dead_lettered_at,
                    envelope.data_location,
                    message_id,
                    receipt_handle,
                )
            )
        return ReceivedMessages(tuple(letters), tuple(unreadable))

    def _restore(self, envelope: DeadLetterEnvelope) -> DeadLetter:
        location = envelope.data_location
        if location is None:
            return envelope.letter()
        try:
            response = self._s3.get_object(Bucket=location.bucket, Key=location.key)
            stored = decode_letter(response["Body"].read())
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "NoSuchKey":
                # This message's payload is gone; the other messages are still readable.
                raise MalformedDeadLetterError(
                    f"s3://{location.bucket}/{location.key} does not exist"
                ) from error
            raise translate(error, "s3:GetObject") from error
        except BotoCoreError as error:
            raise translate(error, "s3:GetObject") from error
        if stored.coordinates != envelope.coordinates or stored.data is None:
            raise MalformedDeadLetterError(
                f"s3://{location.bucket}/{location.key} holds another record's letter"
            )
        return envelope.letter(stored.data)

    def delete(self, receipt_handles: Sequence[str]) -> list[str]:
        """Delete processed messages; returns the handles SQS did not delete (they will return)."""
        not_deleted: list[str] = []
        for start in range(0, len(receipt_handles), SQS_MAX_BATCH_ENTRIES):
            handles = receipt_handles[start : start + SQS_MAX_BATCH_ENTRIES]
            entries: list[DeleteMessageBatchRequestEntryTypeDef] = [
                {"Id": str(index), "ReceiptHandle": handle} for index, handle in enumerate(handles)
            ]
            try:
                response = self._sqs.delete_message_batch(QueueUrl=self._queue_url, Entries=entries)
            except (ClientError, BotoCoreError) as error:
                raise translate(error, "sqs:DeleteMessageBatch") from error
            not_deleted.extend(handles[int(entry["Id"])] for entry in response.get("Failed", []))
        return not_deleted


class S3DeadLetterReader:
    """Reads the letters S3DeadLetterQueue wrote, for replays."""

    def __init__(self, s3: S3Client, bucket: str, prefix: str = DEFAULT_DEAD_LETTER_PREFIX) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._prefix = prefix

    def keys(self) -> Iterator[str]:
        for entry in listed_objects(self._s3, self._bucket, self._prefix):
            yield entry["Key"]

    def read(self, key: str) -> DeadLetterEnvelope:
        try:
            response = self._s3.get_object(Bucket=self._bucket, Key=key)
            return decode_letter(response["Body"].read())
        except (ClientError, BotoCoreError) as error:
            raise translate(error, "s3:GetObject") from error

    def letters(self) -> Iterator[DeadLetter]:
        for key in self.keys():
            yield self.read(key).letter()

    def delete(self, keys: Sequence[str]) -> list[str]:
        """Delete the objects of letters whose events are settled; returns the keys that could
        not be deleted (they stay, and a later replay finds them settled)."""
        not_deleted: list[str] = []
        for start in range(0, len(keys), S3_MAX_DELETE_KEYS):
            chunk = keys[start : start + S3_MAX_DELETE_KEYS]
            try:
                response = self._s3.delete_objects(
                    Bucket=self._bucket,
                    Delete={"Objects": [{"Key": key} for key in chunk], "Quiet": True},
                )
            except (ClientError, BotoCoreError) as error:
                raise translate(error, "s3:DeleteObject") from error
            not_deleted.extend(failure.get("Key", "") for failure in response.get("Errors", []))
        return not_deleted


S3_MAX_DELETE_KEYS = 1_000
"""Keys one DeleteObjects request takes at most."""
