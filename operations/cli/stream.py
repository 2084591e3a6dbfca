"""The stream side of the command line: provisioning, seeding, feeding and draining a stream.

Shared by `provision`, `seed`, `consume`, `invoke` and `demo`; typed against the boto3 stubs,
with the clients handed in by the command (built by the container).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from operations.aws.kinesis_producer import OutgoingRecord, PutOutcome, put_records
from operations.synthetic.workload import StreamEntry

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient

    from operations.event_source_emulator import EmulatorStats

DEFAULT_STREAM = "experiment-events"
DEFAULT_QUEUE = "event-dead-letters"

KINESIS_RECORD_BYTES = 1024 * 1024
"""A record's data and partition key together (PutRecords refuses a larger one)."""
PARTITION_KEY_CHARACTERS = 256


class EventFileError(ValueError):
    """Lines of an event file that no Kinesis stream would take; each problem names its line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(problems))


def records_of_lines(lines: Sequence[bytes]) -> list[OutgoingRecord]:
    """One record per non-blank line, exactly its bytes (without the line break), partitioned by
    the event's `user_id` as producers do (a user's events stay in order on one shard), or by
    its line number when the line carries none. The pipeline judges the content: a line that is
    not a valid event is put all the same and dead-lettered with its reason."""
    records: list[OutgoingRecord] = []
    problems: list[str] = []
    for number, raw in enumerate(lines, start=1):
        data = raw.rstrip(b"\r\n")
        if not data.strip():
            continue
        key = _user_id_of(data) or f"line-{number}"
        if len(data) + len(key.encode()) > KINESIS_RECORD_BYTES:
            problems.append(
                f"line {number}: {len(data):,} bytes, over Kinesis's {KINESIS_RECORD_BYTES:,}"
            )
            continue
        records.append(OutgoingRecord(data, key))
    if problems:
        raise EventFileError(problems)
    return records


def _user_id_of(data: bytes) -> str | None:
    try:
        event = json.loads(data)
    except ValueError:
        return None
    user_id = event.get("user_id") if isinstance(event, dict) else None
    if isinstance(user_id, str) and 0 < len(user_id) <= PARTITION_KEY_CHARACTERS:
        return user_id
    return None


def put_entries(
    kinesis: KinesisClient,
    stream_name: str,
    entries: Sequence[StreamEntry],
    on_progress: Callable[[int], None] | None = None,
) -> PutOutcome:
    """Put the generated entries into the stream, in order, refused ones again."""
    records = [OutgoingRecord(e.data, e.partition_key) for e in entries]
    return put_records(kinesis, stream_name, records, on_progress)


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
