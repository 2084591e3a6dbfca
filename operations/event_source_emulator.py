"""A local Kinesis event-source mapping: reads a stream and invokes a handler the way Lambda does.

It is the local consumer (the CLI's `consume` command) and the harness of the exactly-once proof.
What it reproduces of Lambda's event-source mapping with `ParallelizationFactor` 1:

- one batch in flight per shard; shards are served in turn (interleaved), a child shard only
  after its parents are read to their end;
- the exact Kinesis event shape and a Lambda context whose remaining time runs out;
- `ReportBatchItemFailures`: checkpoint before the lowest reported sequence number and redeliver
  from it; a malformed item (empty, null, or not in the batch) fails the whole batch;
- a function error (exception) or a timeout (the invocation ran past the function timeout; its
  response is discarded) fails the whole batch, which is retried, or split in two first with
  `BisectBatchOnFunctionError` (a split does not count as a retry);
- `MaximumRetryAttempts`: past it the batch goes to the on-failure callback and the checkpoint
  moves past it, as Lambda does. The statistics record every such discarded batch.
"""

from __future__ import annotations

import base64
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient
    from mypy_boto3_kinesis.type_defs import RecordTypeDef, ShardTypeDef


logger = logging.getLogger(__name__)

MAX_INVOCATION_PAYLOAD_BYTES = 6 * 1024 * 1024
"""Lambda's synchronous invocation payload limit: a batch is cut short before it."""
_RECORD_ENVELOPE_BYTES = 600
"""Roughly what one record's JSON adds around its base64 data."""


class StartingPosition(StrEnum):
    TRIM_HORIZON = "TRIM_HORIZON"
    LATEST = "LATEST"


class LambdaContextLike(Protocol):
    """What a handler may use of the Lambda context (the attributes Powertools reads)."""

    @property
    def function_name(self) -> str: ...
    @property
    def function_version(self) -> str: ...
    @property
    def invoked_function_arn(self) -> str: ...
    @property
    def memory_limit_in_mb(self) -> int: ...
    @property
    def aws_request_id(self) -> str: ...
    @property
    def log_group_name(self) -> str: ...
    @property
    def log_stream_name(self) -> str: ...

    def get_remaining_time_in_millis(self) -> int: ...


Handler = Callable[[dict[str, Any], LambdaContextLike], object]


@dataclass(frozen=True, slots=True)
class EmulatedLambdaContext:
    """A Lambda context whose remaining time is read from `clock` against a fixed deadline."""

    function_name: str
    function_version: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    aws_request_id: str
    log_group_name: str
    log_stream_name: str
    deadline: float
    clock: Callable[[], float]

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - self.clock()) * 1000))


def lambda_context(
    function_name: str = "event-processor",
    *,
    timeout_seconds: float = 60.0,
    memory_limit_in_mb: int = 1024,
    region: str = "eu-west-1",
    account_id: str = "123456789012",
    request_id: str | None = None,
    clock: Callable[[], float] = time.monotonic,
    started: float | None = None,
) -> EmulatedLambdaContext:
    """A context as Lambda hands one to an invocation that starts now (or at `started`)."""
    request_id = request_id or str(uuid.uuid4())
    begun = clock() if started is None else started
    return EmulatedLambdaContext(
        function_name=function_name,
        function_version="$LATEST",
        invoked_function_arn=f"arn:aws:lambda:{region}:{account_id}:function:{function_name}",
        memory_limit_in_mb=memory_limit_in_mb,
        aws_request_id=request_id,
        log_group_name=f"/aws/lambda/{function_name}",
        log_stream_name=f"local/[$LATEST]{request_id.replace('-', '')}",
        deadline=begun + timeout_seconds,
        clock=clock,
    )


@dataclass(frozen=True, slots=True)
class EventSourceMappingSettings:
    """The event-source mapping's settings, named and defaulted as in Lambda's API.

    `maximum_retry_attempts` None means retry until the batch succeeds (Lambda's -1, bounded
    there by the record age); a number sends a batch that failed that many retries to the
    on-failure callback and moves on.
    """

    stream_name: str
    function_name: str = "event-processor"
    function_timeout_seconds: float = 60.0
    memory_limit_in_mb: int = 1024
    region: str = "eu-west-1"
    account_id: str = "123456789012"
    batch_size: int = 100
    maximum_batching_window_seconds: float = 0.0
    starting_position: StartingPosition = StartingPosition.TRIM_HORIZON
    report_batch_item_failures: bool = True
    bisect_batch_on_function_error: bool = False
    maximum_retry_attempts: int | None = None
    idle_poll_seconds: float = 1.0
    """How long to wait before polling again a shard that had nothing new (not when draining)."""
    shard_ids: frozenset[str] | None = None
    """Poll only these shards (None: every shard). Lambda polls each shard on its own, in its
    own warm container; one emulator per shard, each in its own process, does the same."""

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= 10_000:
            raise ValueError("batch_size must be between 1 and 10000")
        if self.maximum_retry_attempts is not None and self.maximum_retry_attempts < 0:
            raise ValueError("maximum_retry_attempts must be >= 0 or None")
        if self.function_timeout_seconds <= 0:
            raise ValueError("function_timeout_seconds must be positive")
        if self.shard_ids is not None and not self.shard_ids:
            raise ValueError("shard_ids must name at least one shard (None: every shard)")


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """One record as read from the stream (data already base64, as Lambda delivers it)."""

    shard_id: str
    sequence_number: str
    partition_key: str
    data: str
    approximate_arrival_timestamp: float

    @property
    def sequence(self) -> int:
        return int(self.sequence_number)


class Outcome(StrEnum):
    SUCCESS = "success"
    PARTIAL_FAILURE = "partial_failure"
    INVALID_RESPONSE = "invalid_response"
    FUNCTION_ERROR = "function_error"
    TIMEOUT = "timeout"


@dataclass(frozen=True, slots=True)
class DiscardedBatch:
    """A batch given up after `maximum_retry_attempts`: Lambda's on-failure destination gets it."""

    shard_id: str
    first_sequence_number: str
    last_sequence_number: str
    records: int
    attempts: int
    last_outcome: Outcome
    last_error: str


@dataclass(frozen=True, slots=True)
class Invocation:
    """What one invocation was given and how it ended."""

    shard_id: str
    request_id: str
    records: int
    first_sequence_number: str
    attempt: int
    outcome: Outcome
    seconds: float
    """How long the handler ran, on the emulator's clock: from the context's start to its
    return (or raise). Lambda's timeout is this past `function_timeout_seconds`; a handler that
    keeps a margin before its deadline returns well inside it."""
    error: str = ""


@dataclass(slots=True)
class EmulatorStats:
    records_read: int = 0
    records_delivered: int = 0
    """Records handed to the handler, counting each redelivery again."""
    records_checkpointed: int = 0
    records_discarded: int = 0
    invocations: int = 0
    retries: int = 0
    """Invocations that redelivered records already delivered once."""
    bisections: int = 0
    outcomes: dict[Outcome, int] = field(default_factory=dict)
    millis_behind_latest: dict[str, int] = field(default_factory=dict)
    discarded_batches: list[DiscardedBatch] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    @property
    def iterator_age_ms(self) -> int:
        """The largest MillisBehindLatest over the shards (Lambda's IteratorAge metric)."""
        return max(self.millis_behind_latest.values(), default=0)

    def count(self, outcome: Outcome) -> int:
        return self.outcomes.get(outcome, 0)


@dataclass(slots=True)
class _Batch:
    records: list[StreamRecord]
    attempts: int = 0
    """Failed attempts so far (the first delivery is attempt 0)."""
    delivered_before: bool = False


@dataclass(slots=True)
class _Shard:
    shard_id: str
    parents: tuple[str, ...]
    iterator: str | None = None
    started: bool = False
    ended: bool = False
    """Closed and read to its last record: GetRecords gave no next iterator."""
    caught_up: bool = False
    """The last GetRecords returned nothing: the shard is read to its current tip."""
    last_read: str | None = None
    buffer: deque[StreamRecord] = field(default_factory=deque)
    retry: deque[_Batch] = field(default_factory=deque)
    checkpoint: str | None = None
    next_poll: float = 0.0
    buffered_since: float = 0.0
    """When the oldest buffered record was read (the batching window counts from it)."""

    @property
    def idle(self) -> bool:
        return not self.buffer and not self.retry


class EventSourceMappingEmulator:
    """Reads every shard of a stream and invokes `handler` with Lambda's batches and retries."""

    def __init__(
        self,
        kinesis: KinesisClient,
        handler: Handler,
        settings: EventSourceMappingSettings,
        *,
        on_progress: Callable[[EmulatorStats], None] | None = None,
        on_failure: Callable[[DiscardedBatch, Sequence[StreamRecord]], None] | None = None,
        on_invocation: Callable[[Invocation], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        start_after: Mapping[str, str] | None = None,
    ) -> None:
        """`start_after` maps a shard to the last sequence number already processed (a resumed
        consumer's checkpoints); those shards are read from the record after it."""
        self._kinesis = kinesis
        self._handler = handler
        self._settings = settings
        self._on_progress = on_progress
        self._on_failure = on_failure
        self._on_invocation = on_invocation
        self._clock = clock
        self._sleep = sleep
        self._start_after = dict(start_after or {})
        self._shards: dict[str, _Shard] = {}
        self._stream_arn: str | None = None
        self._turn = 0
        self.stats = EmulatorStats(started=clock())

    # -- public -----------------------------------------------------------------------------

    def run(
        self, *, until_drained: bool = True, should_stop: Callable[[], bool] | None = None
    ) -> EmulatorStats:
        """Invoke until every shard is read to its end with nothing pending (`until_drained`), or
        until `should_stop()` says so."""
        while should_stop is None or not should_stop():
            worked = self.step(waiting_allowed=not until_drained)
            if worked:
                continue
            if until_drained and self.drained():
                break
            if not until_drained:
                self._sleep(self._settings.idle_poll_seconds)
        return self.stats

    def step(self, waiting_allowed: bool = False) -> bool:
        """Give one shard its turn: read what it needs and invoke at most once. False when no
        shard had anything to do."""
        self._discover_shards()
        shards = [s for s in self._shards.values() if self._eligible(s)]
        for offset in range(len(shards)):
            shard = shards[(self._turn + offset) % len(shards)]
            if self._serve(shard, waiting_allowed):
                self._turn = (self._turn + offset + 1) % max(1, len(shards))
                return True
        return False

    def drained(self) -> bool:
        return all(s.idle and (s.ended or s.caught_up) for s in self._shards.values())

    def checkpoints(self) -> dict[str, str]:
        """Per shard, the last sequence number whose batch is done (what Lambda stores)."""
        return {s.shard_id: s.checkpoint for s in self._shards.values() if s.checkpoint}

    # -- reading ----------------------------------------------------------------------------

    def _stream(self) -> str:
        if self._stream_arn is None:
            summary = self._kinesis.describe_stream_summary(StreamName=self._settings.stream_name)
            self._stream_arn = summary["StreamDescriptionSummary"]["StreamARN"]
        return self._stream_arn

    def _discover_shards(self) -> None:
        if self._shards and all(not s.ended for s in self._shards.values()):
            return
        for shard in self._list_shards():
            shard_id = shard["ShardId"]
            if shard_id in self._shards:
                continue
            if self._settings.shard_ids is not None and shard_id not in self._settings.shard_ids:
                continue
            parents = tuple(
                p for p in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId")) if p
            )
            self._shards[shard_id] = _Shard(shard_id, parents)

    def _list_shards(self) -> Iterator[ShardTypeDef]:
        response = self._kinesis.list_shards(StreamName=self._settings.stream_name)
        yield from response["Shards"]
        while token := response.get("NextToken"):
            response = self._kinesis.list_shards(NextToken=token)
            yield from response["Shards"]

    def _eligible(self, shard: _Shard) -> bool:
        """A child shard waits until its parents are read to their end (Kinesis ordering)."""
        for parent_id in shard.parents:
            parent = self._shards.get(parent_id)
            if parent is not None and not (parent.ended and parent.idle):
                return False
        return True

    def _open_iterator(self, shard: _Shard) -> str:
        self._stream()
        after = shard.last_read or self._start_after.get(shard.shard_id)
        if after is not None:
            response = self._kinesis.get_shard_iterator(
                StreamName=self._settings.stream_name,
                ShardId=shard.shard_id,
                ShardIteratorType="AFTER_SEQUENCE_NUMBER",
                StartingSequenceNumber=after,
            )
        else:
            response = self._kinesis.get_shard_iterator(
                StreamName=self._settings.stream_name,
                ShardId=shard.shard_id,
                ShardIteratorType=self._settings.starting_position.value,
            )
        return response["ShardIterator"]

    def _read(self, shard: _Shard) -> None:
        """One GetRecords call into the shard's buffer."""
        if shard.ended:
            return
        if not shard.started:
            shard.iterator = self._open_iterator(shard)
            shard.started = True
        if shard.iterator is None:
            shard.ended = True
            return
        limit = min(10_000, max(self._settings.batch_size, 1_000))
        try:
            response = self._kinesis.get_records(ShardIterator=shard.iterator, Limit=limit)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ExpiredIteratorException":
                raise
            shard.iterator = self._open_iterator(shard)
            response = self._kinesis.get_records(ShardIterator=shard.iterator, Limit=limit)
        records = [_stream_record(shard.shard_id, r) for r in response["Records"]]
        if records and not shard.buffer:
            shard.buffered_since = self._clock()
        shard.buffer.extend(records)
        if records:
            shard.last_read = records[-1].sequence_number
        shard.caught_up = not records
        shard.iterator = response.get("NextShardIterator")
        if shard.iterator is None:
            shard.ended = True
        self.stats.records_read += len(records)
        self.stats.millis_behind_latest[shard.shard_id] = response.get("MillisBehindLatest", 0)

    # -- invoking ---------------------------------------------------------------------------

    def _serve(self, shard: _Shard, waiting_allowed: bool) -> bool:
        if shard.retry:
            self._invoke(shard, shard.retry.popleft())
            return True
        settings = self._settings
        now = self._clock()
        if now < shard.next_poll and not shard.buffer:
            return False
        while len(shard.buffer) < settings.batch_size and not shard.ended:
            before = len(shard.buffer)
            self._read(shard)
            if len(shard.buffer) == before:
                break
        if not shard.buffer:
            shard.next_poll = now + settings.idle_poll_seconds if waiting_allowed else 0.0
            return False
        window = settings.maximum_batching_window_seconds
        if (
            waiting_allowed
            and window > 0
            and len(shard.buffer) < settings.batch_size
            and now - shard.buffered_since < window
            and not shard.ended
        ):
            shard.next_poll = now + min(window, settings.idle_poll_seconds)
            return False
        self._invoke(shard, _Batch(self._take_batch(shard)))
        return True

    def _take_batch(self, shard: _Shard) -> list[StreamRecord]:
        batch: list[StreamRecord] = []
        size = 0
        while shard.buffer and len(batch) < self._settings.batch_size:
            record = shard.buffer[0]
            record_size = len(record.data) + _RECORD_ENVELOPE_BYTES
            if batch and size + record_size > MAX_INVOCATION_PAYLOAD_BYTES:
                break
            batch.append(shard.buffer.popleft())
            size += record_size
        return batch

    def _invoke(self, shard: _Shard, batch: _Batch) -> None:
        settings = self._settings
        request_id = str(uuid.uuid4())
        event = self._event(batch.records)
        started = self._clock()
        context = lambda_context(
            settings.function_name,
            timeout_seconds=settings.function_timeout_seconds,
            memory_limit_in_mb=settings.memory_limit_in_mb,
            region=settings.region,
            account_id=settings.account_id,
            request_id=request_id,
            clock=self._clock,
            started=started,
        )
        self.stats.invocations += 1
        self.stats.records_delivered += len(batch.records)
        if batch.delivered_before:
            self.stats.retries += 1
        error = ""
        failed_from: int | None = None
        try:
            response = self._handler(event, context)
        except Exception as exception:  # the function failed: Lambda sees an error, whatever it is
            seconds = self._clock() - started
            outcome, error = Outcome.FUNCTION_ERROR, f"{type(exception).__name__}: {exception}"
            logger.warning("invocation %s on %s failed: %s", request_id, shard.shard_id, error)
        else:
            seconds = self._clock() - started
            if seconds > settings.function_timeout_seconds:
                outcome, error = Outcome.TIMEOUT, "task timed out; its response is discarded"
            else:
                outcome, failed_from, error = self._judge(response, batch.records)
        self.stats.outcomes[outcome] = self.stats.outcomes.get(outcome, 0) + 1
        if self._on_invocation is not None:
            self._on_invocation(
                Invocation(
                    shard.shard_id,
                    request_id,
                    len(batch.records),
                    batch.records[0].sequence_number,
                    batch.attempts,
                    outcome,
                    seconds,
                    error,
                )
            )
        self._settle(shard, batch, outcome, failed_from, error)
        if self._on_progress is not None:
            self._on_progress(self.stats)

    def _judge(
        self, response: object, records: list[StreamRecord]
    ) -> tuple[Outcome, int | None, str]:
        """Read a response the way Lambda reads it with `ReportBatchItemFailures`."""
        if not self._settings.report_batch_item_failures or response is None:
            return Outcome.SUCCESS, None, ""
        if not isinstance(response, Mapping):
            return Outcome.SUCCESS, None, ""
        failures = response.get("batchItemFailures")
        if not failures:
            return Outcome.SUCCESS, None, ""
        if not isinstance(failures, list):
            return Outcome.INVALID_RESPONSE, None, "batchItemFailures is not a list"
        index_of = {r.sequence_number: i for i, r in enumerate(records)}
        lowest: int | None = None
        for item in failures:
            identifier = item.get("itemIdentifier") if isinstance(item, Mapping) else None
            if not isinstance(identifier, str) or identifier not in index_of:
                return Outcome.INVALID_RESPONSE, None, f"invalid batch item failure {item!r}"
            index = index_of[identifier]
            lowest = index if lowest is None else min(lowest, index)
        return Outcome.PARTIAL_FAILURE, lowest, f"{len(failures)} records reported failed"

    def _settle(
        self,
        shard: _Shard,
        batch: _Batch,
        outcome: Outcome,
        failed_from: int | None,
        error: str,
    ) -> None:
        records = batch.records
        if outcome is Outcome.SUCCESS:
            self._checkpoint(shard, records)
            return
        if outcome is Outcome.PARTIAL_FAILURE:
            assert failed_from is not None
            self._checkpoint(shard, records[:failed_from])
            remaining = _Batch(records[failed_from:], batch.attempts + 1, delivered_before=True)
            self._retry_or_discard(shard, remaining, outcome, error)
            return
        function_error = outcome in (Outcome.FUNCTION_ERROR, Outcome.TIMEOUT)
        if function_error and self._settings.bisect_batch_on_function_error and len(records) > 1:
            middle = len(records) // 2
            self.stats.bisections += 1
            # Splitting does not count as a retry; the halves go first, in order.
            shard.retry.appendleft(_Batch(records[middle:], batch.attempts, delivered_before=True))
            shard.retry.appendleft(_Batch(records[:middle], batch.attempts, delivered_before=True))
            return
        again = _Batch(records, batch.attempts + 1, delivered_before=True)
        self._retry_or_discard(shard, again, outcome, error)

    def _retry_or_discard(self, shard: _Shard, batch: _Batch, outcome: Outcome, error: str) -> None:
        limit = self._settings.maximum_retry_attempts
        if limit is None or batch.attempts <= limit:
            shard.retry.appendleft(batch)
            return
        discarded = DiscardedBatch(
            shard.shard_id,
            batch.records[0].sequence_number,
            batch.records[-1].sequence_number,
            len(batch.records),
            batch.attempts,
            outcome,
            error,
        )
        logger.error("batch given up after %d retries: %s", batch.attempts - 1, discarded)
        self.stats.discarded_batches.append(discarded)
        self.stats.records_discarded += len(batch.records)
        if self._on_failure is not None:
            self._on_failure(discarded, batch.records)
        self._checkpoint(shard, batch.records)

    def _checkpoint(self, shard: _Shard, done: Sequence[StreamRecord]) -> None:
        if done:
            shard.checkpoint = done[-1].sequence_number
            self.stats.records_checkpointed += len(done)

    def _event(self, records: Sequence[StreamRecord]) -> dict[str, Any]:
        settings = self._settings
        stream_arn = self._stream()
        role = f"arn:aws:iam::{settings.account_id}:role/{settings.function_name}-role"
        return {
            "Records": [
                {
                    "kinesis": {
                        "kinesisSchemaVersion": "1.0",
                        "partitionKey": r.partition_key,
                        "sequenceNumber": r.sequence_number,
                        "data": r.data,
                        "approximateArrivalTimestamp": r.approximate_arrival_timestamp,
                    },
                    "eventSource": "aws:kinesis",
                    "eventVersion": "1.0",
                    "eventID": f"{r.shard_id}:{r.sequence_number}",
                    "eventName": "aws:kinesis:record",
                    "invokeIdentityArn": role,
                    "awsRegion": settings.region,
                    "eventSourceARN": stream_arn,
                }
                for r in records
            ]
        }


def _stream_record(shard_id: str, record: RecordTypeDef) -> StreamRecord:
    arrival = record.get("ApproximateArrivalTimestamp")
    return StreamRecord(
        shard_id=shard_id,
        sequence_number=record["SequenceNumber"],
        partition_key=record["PartitionKey"],
        data=base64.b64encode(record["Data"]).decode("ascii"),
        approximate_arrival_timestamp=arrival.timestamp() if arrival is not None else 0.0,
    )
