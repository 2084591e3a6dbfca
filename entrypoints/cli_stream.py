"""The stream side of the command line: provisioning, seeding, feeding and draining a stream.

Shared by `provision`, `seed`, `consume`, `invoke` and `demo`; typed against the boto3 stubs,
with the clients handed in by the command (built by the container).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from domain.errors import TransientInfrastructureError
from infrastructure.aws.errors import translate
from infrastructure.synthetic.workload import StreamEntry

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient
    from mypy_boto3_kinesis.type_defs import PutRecordsRequestEntryTypeDef

    from entrypoints.event_source_emulator import EmulatorStats

PUT_RECORDS_LIMIT = 500
PUT_RECORDS_BYTES = 5 * 1024 * 1024
DEFAULT_STREAM = "experiment-events"
DEFAULT_QUEUE = "event-dead-letters"


@dataclass(frozen=True, slots=True)
class PutSummary:
    records: int
    calls: int


def put_entries(
    kinesis: KinesisClient,
    stream_name: str,
    entries: Sequence[StreamEntry],
    on_progress: Callable[[int], None] | None = None,
    max_attempts: int = 8,
) -> PutSummary:
    """Put every entry into the stream, in order per partition key, retrying the records that
    PutRecords reports as failed (throttled) until all are in."""
    calls = 0
    done = 0
    for chunk in _chunks(entries):
        pending: list[PutRecordsRequestEntryTypeDef] = [
            {"Data": e.data, "PartitionKey": e.partition_key} for e in chunk
        ]
        for attempt in range(max_attempts):
            try:
                response = kinesis.put_records(StreamName=stream_name, Records=pending)
            except (BotoCoreError, ClientError) as error:
                raise translate(error, "PutRecords") from error
            calls += 1
            if not response.get("FailedRecordCount"):
                break
            pending = [
                entry
                for entry, result in zip(pending, response["Records"], strict=True)
                if "ErrorCode" in result
            ]
            time.sleep(min(1.0, 0.05 * 2**attempt))
        else:
            raise TransientInfrastructureError(
                "PutRecords", f"{len(pending)} records still refused after {max_attempts} attempts"
            )
        done += len(chunk)
        if on_progress is not None:
            on_progress(done)
    return PutSummary(done, calls)


def _chunks(entries: Sequence[StreamEntry]) -> Iterator[Sequence[StreamEntry]]:
    start = 0
    while start < len(entries):
        size = 0
        end = start
        while end < len(entries) and end - start < PUT_RECORDS_LIMIT:
            record_size = len(entries[end].data) + len(entries[end].partition_key.encode())
            if end > start and size + record_size > PUT_RECORDS_BYTES:
                break
            size += record_size
            end += 1
        yield entries[start:end]
        start = end


@dataclass(frozen=True, slots=True)
class LocalLambdaContext:
    """The Lambda context of a local invocation; its remaining time runs out at `deadline`."""

    function_name: str
    function_version: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    aws_request_id: str
    log_group_name: str
    log_stream_name: str
    deadline: float

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


def lambda_context(
    function_name: str = "event-processor", timeout_seconds: float = 60.0
) -> LocalLambdaContext:
    """A context for one local invocation, as `sam local invoke` would give."""
    return LocalLambdaContext(
        function_name=function_name,
        function_version="$LATEST",
        invoked_function_arn=f"arn:aws:lambda:eu-west-1:123456789012:function:{function_name}",
        memory_limit_in_mb=1024,
        aws_request_id=str(uuid.uuid4()),
        log_group_name=f"/aws/lambda/{function_name}",
        log_stream_name="local",
        deadline=time.monotonic() + timeout_seconds,
    )


def progress_line(stats: EmulatorStats, now: float) -> str:
    elapsed = max(now - stats.started, 1e-9)
    return (
        f"{stats.records_checkpointed:,} records done in {stats.invocations:,} invocations, "
        f"{stats.records_checkpointed / elapsed:,.0f} records/s, "
        f"iterator lag {stats.iterator_age_ms:,} ms"
    )


def consumer_summary(stats: EmulatorStats, now: float) -> dict[str, object]:
    elapsed = max(now - stats.started, 1e-9)
    return {
        "records_read": stats.records_read,
        "records_done": stats.records_checkpointed,
        "records_delivered": stats.records_delivered,
        "records_discarded": stats.records_discarded,
        "invocations": stats.invocations,
        "retries": stats.retries,
        "outcomes": {outcome.value: count for outcome, count in sorted(stats.outcomes.items())},
        "seconds": round(elapsed, 3),
        "records_per_second": round(stats.records_checkpointed / elapsed, 1),
        "iterator_age_ms": stats.iterator_age_ms,
    }


def load_event(text: str) -> dict[str, Any]:
    event = json.loads(text)
    if not isinstance(event, dict) or not isinstance(event.get("Records"), list):
        raise ValueError("not a Kinesis event: expected an object with a 'Records' list")
    return event


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of the block, then restore them."""
    previous = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
