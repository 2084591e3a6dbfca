"""The DeadLetterQueue contract, run against the in-memory queue, SQS (with its S3 overflow) and
S3 alone (moto server); then the SQS adapter's failure handling and the readers used by replays."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from mypy_boto3_s3 import S3Client
from mypy_boto3_sqs import SQSClient

from application.ports import DeadLetterQueue, Deadline, NoDeadline
from application.shard_cut import ShardCut
from domain.errors import InfrastructureConfigurationError
from domain.rejections import DeadLetter, RejectionReason
from infrastructure.aws.permissions import LAMBDA_PERMISSIONS, Resource
from infrastructure.aws.sqs_dead_letters import (
    S3DeadLetterQueue,
    S3DeadLetterStore,
    SqsDeadLetterQueue,
)
from infrastructure.clock import ManualClock
from infrastructure.in_memory.dead_letters import InMemoryDeadLetterQueue
from operations.aws.dead_letter_readers import S3DeadLetterReader, SqsDeadLetterReader
from tests.aws_calls import CallRecorder
from tests.aws_faults import FailedBatchEntries
from tests.aws_resources import create_bucket, create_queue
from tests.factories import NOW
from tests.storage_builders import dead_letter, large_data

SHARD_ONE = "shardId-000000000001"
SHARD_TWO = "shardId-000000000002"
LARGE = 300_000  # characters of base64: more than an SQS message holds


class ExpiredDeadline(Deadline):
    def expired(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class QueueUnderTest:
    queue: DeadLetterQueue
    kept: Callable[[], list[DeadLetter]]


def by_coordinates(letters: list[DeadLetter]) -> list[DeadLetter]:
    return sorted(letters, key=lambda letter: (letter.coordinates.shard_id, letter.sequence))


def no_sleep(_: float) -> None:
    return None


@dataclass(frozen=True, slots=True)
class Aws:
    s3: S3Client
    sqs: SQSClient
    bucket: str
    queue_url: str

    def sqs_queue(self, **options: int) -> SqsDeadLetterQueue:
        return SqsDeadLetterQueue(
            self.sqs,
            self.queue_url,
            S3DeadLetterStore(self.s3, self.bucket),
            ManualClock(NOW),
            sleep=no_sleep,
            **options,
        )

    def reader(self, visibility_timeout: int = 300) -> SqsDeadLetterReader:
        return SqsDeadLetterReader(
            self.sqs, self.queue_url, self.s3, wait_seconds=0, visibility_timeout=visibility_timeout
        )

    def received(self) -> list[DeadLetter]:
        """Everything in the queue, restored; fails on any message that is not a dead letter."""
        reader = self.reader()
        letters: list[DeadLetter] = []
        while not (batch := reader.receive()).empty:
            assert batch.unreadable == ()
            letters.extend(received.letter for received in batch.letters)
        return letters

    def raw_messages(self) -> list[dict[str, object]]:
        messages: list[dict[str, object]] = []
        while batch := self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            VisibilityTimeout=300,
        ).get("Messages", []):
            messages.extend(dict(message) for message in batch)
        return messages

    def s3_letters(self) -> list[DeadLetter]:
        return list(S3DeadLetterReader(self.s3, self.bucket).letters())


@pytest.fixture
def aws(s3_client: S3Client, sqs_client: SQSClient, unique_name: str) -> Aws:
    return Aws(
        s3_client,
        sqs_client,
        create_bucket(s3_client, unique_name),
        create_queue(sqs_client, unique_name),
    )


@pytest.fixture(params=["in_memory", "sqs", "s3"])
def queue_under_test(request: pytest.FixtureRequest) -> Iterator[QueueUnderTest]:
    if request.param == "in_memory":
        in_memory = InMemoryDeadLetterQueue()
        yield QueueUnderTest(in_memory, in_memory.letters)
        return
    aws: Aws = request.getfixturevalue("aws")
    if request.param == "sqs":
        yield QueueUnderTest(aws.sqs_queue(), aws.received)
        return
    s3_only = S3DeadLetterQueue(S3DeadLetterStore(aws.s3, aws.bucket), ManualClock(NOW))
    yield QueueUnderTest(s3_only, aws.s3_letters)


# The contract


def test_every_letter_is_kept_with_its_reason_detail_coordinates_and_data(
    queue_under_test: QueueUnderTest,
) -> None:
    reasons = list(RejectionReason)
    letters = [
        dead_letter(sequence, SHARD_ONE if sequence % 2 else SHARD_TWO, reason=reasons[sequence])
        for sequence in range(len(reasons))
    ]
    letters.append(dead_letter(99, data="not base64 \u00e9\x00\ud800"))

    report = queue_under_test.queue.send(letters, NoDeadline())

    assert report.complete
    assert by_coordinates(queue_under_test.kept()) == by_coordinates(letters)


def test_more_letters_than_one_batch_holds_are_all_kept(queue_under_test: QueueUnderTest) -> None:
    letters = [dead_letter(sequence) for sequence in range(1, 24)]

    report = queue_under_test.queue.send(letters, NoDeadline())

    assert report.complete
    assert by_coordinates(queue_under_test.kept()) == letters


def test_a_letter_too_large_for_a_queue_message_is_kept_whole(
    queue_under_test: QueueUnderTest,
) -> None:
    letters = [dead_letter(1), dead_letter(2, data=large_data(LARGE)), dead_letter(3)]

    report = queue_under_test.queue.send(letters, NoDeadline())

    assert report.complete
    assert by_coordinates(queue_under_test.kept()) == letters


def test_a_passed_deadline_leaves_each_shard_unfinished_from_its_lowest_letter(
    queue_under_test: QueueUnderTest,
) -> None:
    letters = [dead_letter(12, SHARD_ONE), dead_letter(4, SHARD_TWO), dead_letter(8, SHARD_ONE)]

    report = queue_under_test.queue.send(letters, ExpiredDeadline())

    assert report.cut == ShardCut({SHARD_ONE: 8, SHARD_TWO: 4})
    assert queue_under_test.kept() == []


def test_sending_no_letters_is_complete(queue_under_test: QueueUnderTest) -> None:
    assert queue_under_test.queue.send([], NoDeadline()).complete
    assert queue_under_test.kept() == []


# The SQS adapter

KEY_OF_SEQUENCE_2 = re.compile(
    rf"^dead-letters/year=2026/month=11/day=20/{SHARD_ONE}-0{{63}}2\.json$"
)


def test_messages_carry_the_documented_body_and_filterable_attributes(aws: Aws) -> None:
    letter = dead_letter(7, reason=RejectionReason.MISSING_FIELD)

    aws.sqs_queue().send([letter], NoDeadline())

    [message] = aws.raw_messages()
    body = json.loads(str(message["Body"]))
    assert body == {
        "format_version": "1",
        "reason": "missing_field",
        "stage": "validate",
        "detail": letter.detail,
        "kinesis": {
            "shard_id": SHARD_ONE,
            "sequence_number": "7",
            "partition_key": "pk-7",
            "approximate_arrival_timestamp": NOW.timestamp(),
        },
        "data": letter.data,
        "dead_lettered_at": "2026-11-20T12:00:00.000+00:00",
    }
    attributes = message["MessageAttributes"]
    assert attributes == {
        "reason": {"DataType": "String", "StringValue": "missing_field"},
        "stage": {"DataType": "String", "StringValue": "validate"},
    }


def test_a_large_letter_is_stored_in_s3_and_its_message_points_there(aws: Aws) -> None:
    letter = dead_letter(2, data=large_data(LARGE))

    aws.sqs_queue().send([letter], NoDeadline())

    [message] = aws.raw_messages()
    body = json.loads(str(message["Body"]))
    assert "data" not in body
    assert body["data_location"]["bucket"] == aws.bucket
    assert KEY_OF_SEQUENCE_2.match(body["data_location"]["key"])
    stored = aws.s3.get_object(Bucket=aws.bucket, Key=body["data_location"]["key"])
    assert json.loads(stored["Body"].read())["data"] == letter.data


def test_calls_hold_at_most_ten_letters_and_stay_under_the_size_limit(aws: Aws) -> None:
    recorder = CallRecorder()
    recorder.attach(aws.sqs)
    small = [dead_letter(sequence) for sequence in range(1, 24)]
    near_limit = [dead_letter(sequence, data=large_data(100_000)) for sequence in range(30, 35)]

    report = aws.sqs_queue().send([*small, *near_limit], NoDeadline())

    assert report.complete
    entries_per_call = [len(params["Entries"]) for _, _, params in recorder.operations]
    bytes_per_call = [
        sum(len(entry["MessageBody"]) for entry in params["Entries"])
        for _, _, params in recorder.operations
    ]
    assert sum(entries_per_call) == 28
    assert max(entries_per_call) == 10
    assert max(bytes_per_call) <= 256 * 1024
    large_per_call = [
        sum(1 for entry in params["Entries"] if len(entry["MessageBody"]) > 100_000)
        for _, _, params in recorder.operations
    ]
    assert max(large_per_call) == 2  # a third would pass the limit


def test_an_entry_failed_by_sqs_is_retried_and_then_kept_once(aws: Aws) -> None:
    faults = FailedBatchEntries({5: 1})
    faults.attach(aws.sqs)
    letters = [dead_letter(sequence) for sequence in range(1, 13)]

    report = aws.sqs_queue().send(letters, NoDeadline())

    assert report.complete
    assert faults.failed_sequences == [5]
    assert by_coordinates(aws.received()) == letters


def test_an_entry_that_keeps_failing_leaves_its_shard_unfinished_from_its_sequence(
    aws: Aws,
) -> None:
    faults = FailedBatchEntries({7: 1000, 9: 1000})
    faults.attach(aws.sqs)
    letters = [dead_letter(sequence, SHARD_ONE) for sequence in range(1, 12)]
    letters += [dead_letter(sequence, SHARD_TWO) for sequence in range(20, 25)]

    report = aws.sqs_queue(max_entry_attempts=3).send(letters, NoDeadline())

    assert report.cut == ShardCut({SHARD_ONE: 7})
    assert any("InternalError" in problem for problem in report.problems)
    assert sorted(faults.failed_sequences) == [7, 7, 7, 9, 9, 9]
    kept = {letter.sequence for letter in aws.received()}
    assert kept == set(range(1, 12)) - {7, 9} | set(range(20, 25))


def test_an_entry_refused_as_the_senders_fault_is_kept_in_s3_behind_a_pointer(aws: Aws) -> None:
    faults = FailedBatchEntries({5: 1}, code="InvalidMessageContents", sender_fault=True)
    faults.attach(aws.sqs)
    letters = [dead_letter(sequence) for sequence in range(1, 8)]

    report = aws.sqs_queue().send(letters, NoDeadline())

    assert report.complete
    assert report.problems == ()
    received = aws.reader().receive(max_messages=10).letters
    assert by_coordinates([r.letter for r in received]) == letters
    [pointed] = [r for r in received if r.data_location is not None]
    assert pointed.letter.sequence == 5


def test_a_letter_whose_pointer_is_refused_too_stays_in_s3_and_is_reported(aws: Aws) -> None:
    faults = FailedBatchEntries({5: 1000}, code="InvalidMessageContents", sender_fault=True)
    faults.attach(aws.sqs)
    letters = [dead_letter(sequence) for sequence in range(1, 8)]

    report = aws.sqs_queue().send(letters, NoDeadline())

    assert report.complete  # durable in S3: redelivering the batch could not do better
    [problem] = report.problems
    assert f"kept only in s3://{aws.bucket}/dead-letters/" in problem
    assert faults.failed_sequences == [5, 5]
    assert aws.s3_letters() == [letters[4]]
    assert {letter.sequence for letter in aws.received()} == {1, 2, 3, 4, 6, 7}


def test_a_missing_queue_fails_loudly_as_a_configuration_error(aws: Aws) -> None:
    queue = SqsDeadLetterQueue(
        aws.sqs,
        f"{aws.queue_url}-missing",
        S3DeadLetterStore(aws.s3, aws.bucket),
        ManualClock(NOW),
    )

    with pytest.raises(InfrastructureConfigurationError):
        queue.send([dead_letter(1)], NoDeadline())


def test_a_missing_overflow_bucket_fails_loudly_as_a_configuration_error(aws: Aws) -> None:
    queue = SqsDeadLetterQueue(
        aws.sqs, aws.queue_url, S3DeadLetterStore(aws.s3, f"{aws.bucket}-missing"), ManualClock(NOW)
    )

    with pytest.raises(InfrastructureConfigurationError, match="NoSuchBucket"):
        queue.send([dead_letter(1, data=large_data(LARGE))], NoDeadline())


def test_send_needs_only_the_declared_queue_and_bucket_permissions(aws: Aws) -> None:
    sqs_calls, s3_calls = CallRecorder(), CallRecorder()
    sqs_calls.attach(aws.sqs)
    s3_calls.attach(aws.s3)

    aws.sqs_queue().send([dead_letter(1), dead_letter(2, data=large_data(LARGE))], NoDeadline())

    assert sqs_calls.actions == {"sqs:SendMessage"}
    assert sqs_calls.actions <= LAMBDA_PERMISSIONS[Resource.DEAD_LETTER_QUEUE]
    assert s3_calls.actions == {"s3:PutObject"}
    assert s3_calls.actions <= LAMBDA_PERMISSIONS[Resource.ARCHIVE_BUCKET]


# The SQS reader


def test_the_reader_deletes_only_the_messages_it_is_told_to(aws: Aws) -> None:
    letters = [dead_letter(sequence) for sequence in range(1, 4)]
    aws.sqs_queue().send(letters, NoDeadline())
    reader = aws.reader(visibility_timeout=0)

    first = reader.receive().letters
    again = reader.receive().letters
    done = [r.receipt_handle for r in again if r.letter.sequence == 2]
    not_deleted = reader.delete(done)

    assert by_coordinates([r.letter for r in first]) == letters
    assert by_coordinates([r.letter for r in again]) == letters
    assert not_deleted == []
    assert {letter.sequence for letter in aws.received()} == {1, 3}


def test_a_message_that_is_not_a_dead_letter_is_handed_back_as_unreadable(aws: Aws) -> None:
    aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody='{"hello": "world"}')

    batch = aws.reader().receive()

    assert batch.letters == ()
    [unreadable] = batch.unreadable
    assert "format version" in unreadable.problem


def test_a_message_whose_s3_payload_is_gone_is_unreadable_and_the_others_are_not(
    aws: Aws,
) -> None:
    letters = [dead_letter(1, data=large_data(LARGE)), dead_letter(2)]
    aws.sqs_queue().send(letters, NoDeadline())
    [key] = S3DeadLetterReader(aws.s3, aws.bucket).keys()
    aws.s3.delete_object(Bucket=aws.bucket, Key=key)

    batch = aws.reader().receive()

    assert [received.letter for received in batch.letters] == [letters[1]]
    [unreadable] = batch.unreadable
    assert "does not exist" in unreadable.problem


# Without a queue: S3 alone


def test_a_letter_sent_again_rewrites_its_own_object(aws: Aws) -> None:
    queue = S3DeadLetterQueue(S3DeadLetterStore(aws.s3, aws.bucket), ManualClock(NOW))
    letter = dead_letter(2)

    queue.send([letter], NoDeadline())
    queue.send([letter], NoDeadline())

    keys = list(S3DeadLetterReader(aws.s3, aws.bucket).keys())
    assert len(keys) == 1
    assert KEY_OF_SEQUENCE_2.match(keys[0])
    assert aws.s3_letters() == [letter]


def test_s3_dead_letters_fail_loudly_without_their_bucket(aws: Aws) -> None:
    queue = S3DeadLetterQueue(S3DeadLetterStore(aws.s3, f"{aws.bucket}-missing"), ManualClock(NOW))

    with pytest.raises(InfrastructureConfigurationError, match="NoSuchBucket"):
        queue.send([dead_letter(1), dead_letter(2)], NoDeadline())


def test_s3_dead_letters_need_only_the_declared_bucket_permissions(aws: Aws) -> None:
    recorder = CallRecorder()
    recorder.attach(aws.s3)
    queue = S3DeadLetterQueue(S3DeadLetterStore(aws.s3, aws.bucket), ManualClock(NOW))

    queue.send([dead_letter(1), dead_letter(2)], NoDeadline())

    assert recorder.count("s3", "PutObject") == 2
    assert recorder.actions <= LAMBDA_PERMISSIONS[Resource.ARCHIVE_BUCKET]
