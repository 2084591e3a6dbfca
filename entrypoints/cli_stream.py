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

from infrastructure.aws.kinesis_producer import OutgoingRecord, PutOutcome, put_records
from infrastructure.synthetic.workload import StreamEntry

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient

    from entrypoints.event_source_emulator import EmulatorStats

DEFAULT_STREAM = "experiment-events"
DEFAULT_QUEUE = "event-dead-letters"


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
