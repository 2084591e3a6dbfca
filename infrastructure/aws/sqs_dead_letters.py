"""Dead letters in SQS (with an S3 overflow for large ones), or in S3 alone."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from application.ports import COMPLETE, Clock, DeadLetterQueue, Deadline, RecordId, WriteReport
from application.shard_cut import ShardCut
from domain.errors import InfrastructureConfigurationError, TransientInfrastructureError
from domain.rejections import DeadLetter
from infrastructure.aws.dead_letter_format import (
    DEFAULT_DEAD_LETTER_PREFIX,
    DataLocation,
    dead_letter_key,
    encode_letter,
)
from infrastructure.aws.errors import translate
from infrastructure.aws.s3_archive import S3Encryption

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import PutObjectRequestTypeDef
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import (
        MessageAttributeValueTypeDef,
        SendMessageBatchRequestEntryTypeDef,
    )

SQS_MAX_MESSAGE_BYTES = 256 * 1024
SQS_MAX_BATCH_ENTRIES = 10
DEAD_LETTER_CONTENT_TYPE = "application/json"


class _Unfinished:
    """Letters not known to be durable, and why; turned into a WriteReport at the end."""

    def __init__(self) -> None:
        self.letters: list[RecordId] = []
        self.problems: list[str] = []

    def add(self, letter: DeadLetter, problem: str) -> None:
        self.letters.append((letter.coordinates.shard_id, letter.sequence))
        self.problems.append(problem)

    def include(self, other: _Unfinished) -> None:
        self.letters.extend(other.letters)
        self.problems.extend(other.problems)

    def report(self, notes: Sequence[str] = ()) -> WriteReport:
        problems = tuple(sorted({*self.problems, *notes}))
        if not self.letters and not problems:
            return COMPLETE
        return WriteReport(ShardCut.of(self.letters), problems)


class S3DeadLetterStore:
    """Writes whole letters (with their data) to S3, one object per letter, deterministic key."""

    def __init__(
        self,
        s3: S3Client,
        bucket: str,
        prefix: str = DEFAULT_DEAD_LETTER_PREFIX,
        encryption: S3Encryption | None = None,
    ) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._prefix = prefix
        self._encryption = encryption or S3Encryption()

    def location_of(self, letter: DeadLetter) -> DataLocation:
        return DataLocation(self._bucket, dead_letter_key(self._prefix, letter))

    def put(self, letter: DeadLetter, dead_lettered_at: datetime) -> DataLocation:
        """Raises the translated error when the write fails."""
        location = self.location_of(letter)
        request: PutObjectRequestTypeDef = {
            "Bucket": location.bucket,
            "Key": location.key,
            "Body": encode_letter(letter, dead_lettered_at),
            "ContentType": DEAD_LETTER_CONTENT_TYPE,
            "Metadata": {"reason": letter.reason.value, "stage": letter.stage.value},
        }
        self._encryption.apply_to(request)
        try:
            self._s3.put_object(**request)
        except (ClientError, BotoCoreError) as error:
            raise translate(error, "s3:PutObject") from error
        return location

    def put_all(
        self,
        letters: Sequence[DeadLetter],
        dead_lettered_at: datetime,
        deadline: Deadline,
        workers: int,
    ) -> tuple[dict[int, DataLocation], _Unfinished]:
        """Concurrent puts; the locations by index of what was written, and what was not.

        A configuration failure (missing bucket, access denied) is raised after the others end.
        """
        unfinished = _Unfinished()
        if not letters:
            return {}, unfinished

        def put_one(letter: DeadLetter) -> DataLocation | Exception:
            if deadline.expired():
                return TransientInfrastructureError("s3:PutObject", "deadline reached")
            try:
                return self.put(letter, dead_lettered_at)
            except (TransientInfrastructureError, InfrastructureConfigurationError) as error:
                return error

        with ThreadPoolExecutor(
            max_workers=max(1, min(workers, len(letters))), thread_name_prefix="s3-dead-letters"
        ) as pool:
            outcomes = list(pool.map(put_one, letters))
        locations: dict[int, DataLocation] = {}
        configuration_errors: list[InfrastructureConfigurationError] = []
        for index, (letter, outcome) in enumerate(zip(letters, outcomes, strict=True)):
            if isinstance(outcome, DataLocation):
                locations[index] = outcome
            elif isinstance(outcome, InfrastructureConfigurationError):
                configuration_errors.append(outcome)
            else:
                unfinished.add(letter, f"dead letter not written to S3: {outcome}")
        if configuration_errors:
            raise configuration_errors[0]
        return locations, unfinished


class S3DeadLetterQueue(DeadLetterQueue):
    """Used when no queue is configured: every letter becomes one S3 object. Nothing is dropped."""

    def __init__(self, store: S3DeadLetterStore, clock: Clock, max_workers: int = 8) -> None:
        self._store = store
        self._clock = clock
        self._max_workers = max_workers

    def send(self, letters: Sequence[DeadLetter], deadline: Deadline) -> WriteReport:
        if not letters:
            return COMPLETE
        _, unfinished = self._store.put_all(letters, self._clock.now(), deadline, self._max_workers)
        return unfinished.report()


def message_attributes(letter: DeadLetter) -> dict[str, MessageAttributeValueTypeDef]:
    return {
        "reason": {"DataType": "String", "StringValue": letter.reason.value},
        "stage": {"DataType": "String", "StringValue": letter.stage.value},
    }


def message_size(body: bytes, letter: DeadLetter) -> int:
    """What SQS counts against its size limit: the body plus every attribute's name, type, value."""
    attributes = message_attributes(letter)
    return len(body) + sum(
        len(name) + len(value["DataType"]) + len(value.get("StringValue", "").encode())
        for name, value in attributes.items()
    )


@dataclass(frozen=True, slots=True)
class _Outgoing:
    letter: DeadLetter
    body: bytes
    size: int
    points_to_s3: bool


@dataclass(slots=True)
class _ChunkOutcome:
    unsent: list[tuple[_Outgoing, str]] = field(default_factory=list)
    refused: list[tuple[_Outgoing, str]] = field(default_factory=list)
    configuration_error: InfrastructureConfigurationError | None = None


class SqsDeadLetterQueue(DeadLetterQueue):
    """SendMessageBatch, 10 letters and at most 256 KiB per call, several calls at once.

    Letters too large for a message go to S3 first; their message carries `data_location`.
    Entries SQS fails transiently are retried with backoff a bounded number of times. Entries it
    refuses as the sender's fault (SenderFault) are never dropped: the whole letter is written to
    S3 and a pointer message sent in its place. What is still not durable is reported per shard.
    """

    def __init__(
        self,
        sqs: SQSClient,
        queue_url: str,
        overflow: S3DeadLetterStore,
        clock: Clock,
        max_workers: int = 4,
        max_entry_attempts: int = 3,
        retry_base_delay: float = 0.05,
        max_message_bytes: int = SQS_MAX_MESSAGE_BYTES,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_entry_attempts < 1 or max_workers < 1:
            raise ValueError("max_entry_attempts and max_workers must be at least 1")
        self._sqs = sqs
        self._queue_url = queue_url
        self._overflow = overflow
        self._clock = clock
        self._max_workers = max_workers
        self._max_entry_attempts = max_entry_attempts
        self._retry_base_delay = retry_base_delay
        self._max_message_bytes = max_message_bytes
        self._sleep = sleep

    def send(self, letters: Sequence[DeadLetter], deadline: Deadline) -> WriteReport:
        if not letters:
            return COMPLETE
        now = self._clock.now()
        unfinished = _Unfinished()

        outgoing: list[_Outgoing] = []
        oversize: list[DeadLetter] = []
        for letter in letters:
            message = self._message(letter, now, None)
            if message.size > self._max_message_bytes:
                oversize.append(letter)
            else:
                outgoing.append(message)
        outgoing.extend(self._to_s3(oversize, now, deadline, unfinished))

        refused = self._send_all(outgoing, deadline, unfinished)
        # Refused as our fault (e.g. a queue with a smaller size limit): keep the whole letter in
        # S3 and point to it; a refused pointer leaves the letter in S3 only, which is durable.
        only_in_s3 = [(item, problem) for item, problem in refused if item.points_to_s3]
        retry_as_pointer = [item.letter for item, _ in refused if not item.points_to_s3]
        pointers = self._to_s3(retry_as_pointer, now, deadline, unfinished)
        only_in_s3.extend(self._send_all(pointers, deadline, unfinished))
        notes: list[str] = []
        for item, problem in only_in_s3:
            location = self._overflow.location_of(item.letter)
            notes.append(
                f"dead letter kept only in s3://{location.bucket}/{location.key}, "
                f"the queue refused it: {problem}"
            )
        return unfinished.report(notes)

    def _message(
        self, letter: DeadLetter, now: datetime, location: DataLocation | None
    ) -> _Outgoing:
        body = encode_letter(letter, now, location)
        return _Outgoing(letter, body, message_size(body, letter), location is not None)

    def _to_s3(
        self,
        letters: Sequence[DeadLetter],
        now: datetime,
        deadline: Deadline,
        unfinished: _Unfinished,
    ) -> list[_Outgoing]:
        """Write the whole letters to S3; pointer messages for those written."""
        locations, not_written = self._overflow.put_all(letters, now, deadline, self._max_workers)
        unfinished.include(not_written)
        return [self._message(letters[i], now, location) for i, location in locations.items()]

    def _chunks(self, outgoing: Sequence[_Outgoing]) -> list[list[_Outgoing]]:
        chunks: list[list[_Outgoing]] = []
        current: list[_Outgoing] = []
        size = 0
        for item in outgoing:
            too_many = len(current) >= SQS_MAX_BATCH_ENTRIES
            if current and (too_many or size + item.size > self._max_message_bytes):
                chunks.append(current)
                current, size = [], 0
            current.append(item)
            size += item.size
        if current:
            chunks.append(current)
        return chunks

    def _send_all(
        self, outgoing: Sequence[_Outgoing], deadline: Deadline, unfinished: _Unfinished
    ) -> list[tuple[_Outgoing, str]]:
        """Send every message; records what is unsent, returns what SQS refused as our fault."""
        chunks = self._chunks(outgoing)
        if not chunks:
            return []
        with ThreadPoolExecutor(
            max_workers=min(self._max_workers, len(chunks)), thread_name_prefix="sqs-dead-letters"
        ) as pool:
            outcomes = list(pool.map(lambda chunk: self._send_chunk(chunk, deadline), chunks))
        refused: list[tuple[_Outgoing, str]] = []
        for outcome in outcomes:
            if outcome.configuration_error is not None:
                raise outcome.configuration_error
            for item, problem in outcome.unsent:
                unfinished.add(item.letter, problem)
            refused.extend(outcome.refused)
        return refused

    def _send_chunk(self, chunk: list[_Outgoing], deadline: Deadline) -> _ChunkOutcome:
        outcome = _ChunkOutcome()
        remaining = chunk
        last_problem = ""
        for attempt in range(self._max_entry_attempts):
            if attempt:
                # Full jitter: concurrent senders throttled together do not retry together.
                self._sleep(random.uniform(0, self._retry_base_delay * 2 ** (attempt - 1)))
            if deadline.expired():
                last_problem = "deadline reached while dead-lettering"
                break
            entries: list[SendMessageBatchRequestEntryTypeDef] = [
                {
                    "Id": str(index),
                    "MessageBody": item.body.decode("ascii"),
                    "MessageAttributes": message_attributes(item.letter),
                }
                for index, item in enumerate(remaining)
            ]
            try:
                response = self._sqs.send_message_batch(QueueUrl=self._queue_url, Entries=entries)
            except (ClientError, BotoCoreError) as error:
                # botocore has already retried throttling, 5xx and transport errors.
                translated = translate(error, "sqs:SendMessageBatch")
                if isinstance(translated, InfrastructureConfigurationError):
                    outcome.configuration_error = translated
                    return outcome
                last_problem = str(translated)
                break
            succeeded = {entry["Id"] for entry in response.get("Successful", [])}
            retry: list[_Outgoing] = []
            failures = {entry["Id"]: entry for entry in response.get("Failed", [])}
            for index, item in enumerate(remaining):
                entry_id = str(index)
                if entry_id in succeeded:
                    continue
                failure = failures.get(entry_id)
                problem = (
                    f"sqs:SendMessageBatch entry failed: {failure.get('Code', '?')}: "
                    f"{failure.get('Message', '')}"
                    if failure is not None
                    else "sqs:SendMessageBatch entry missing from the response"
                )
                if failure is not None and failure.get("SenderFault", False):
                    outcome.refused.append((item, problem))
                else:
                    retry.append(item)
                    last_problem = problem
            remaining = retry
            if not remaining:
                return outcome
        outcome.unsent.extend((item, last_problem) for item in remaining)
        return outcome
