"""Putting records into a Kinesis stream: PutRecords within its limits, refused entries again."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from domain.errors import TransientInfrastructureError
from infrastructure.aws.errors import translate

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient
    from mypy_boto3_kinesis.type_defs import PutRecordsRequestEntryTypeDef

PUT_RECORDS_MAX_ENTRIES = 500
PUT_RECORDS_MAX_BYTES = 4 * 1024 * 1024
"""Below the 5 MiB request limit of PutRecords, leaving room for the request's own framing."""


@dataclass(frozen=True, slots=True)
class OutgoingRecord:
    data: bytes
    partition_key: str


@dataclass(frozen=True, slots=True)
class PlacedRecord:
    shard_id: str
    sequence_number: str


@dataclass(frozen=True, slots=True)
class PutOutcome:
    placed: list[PlacedRecord]
    """Where each record landed, in the order given."""
    calls: int


def put_records(
    kinesis: KinesisClient,
    stream_name: str,
    records: Sequence[OutgoingRecord],
    on_progress: Callable[[int], None] | None = None,
    max_attempts: int = 8,
    sleep: Callable[[float], None] = time.sleep,
) -> PutOutcome:
    """Put every record, in order, as few PutRecords calls as the limits allow; the entries a
    call refuses (throttled) are put again with backoff before the next call starts."""
    placed: list[PlacedRecord | None] = [None] * len(records)
    calls = 0
    done = 0
    for chunk in _chunks(records):
        pending = chunk
        for attempt in range(max_attempts):
            request: list[PutRecordsRequestEntryTypeDef] = [
                {"Data": records[i].data, "PartitionKey": records[i].partition_key} for i in pending
            ]
            try:
                response = kinesis.put_records(StreamName=stream_name, Records=request)
            except (BotoCoreError, ClientError) as error:
                raise translate(error, "PutRecords") from error
            calls += 1
            refused = []
            for index, result in zip(pending, response["Records"], strict=True):
                if "SequenceNumber" in result and "ShardId" in result:
                    placed[index] = PlacedRecord(result["ShardId"], result["SequenceNumber"])
                else:
                    refused.append(index)
            pending = refused
            if not pending:
                break
            sleep(min(1.0, 0.05 * 2**attempt))
        else:
            raise TransientInfrastructureError(
                "PutRecords", f"{len(pending)} records still refused after {max_attempts} attempts"
            )
        done += len(chunk)
        if on_progress is not None:
            on_progress(done)
    return PutOutcome([p for p in placed if p is not None], calls)


def _chunks(records: Sequence[OutgoingRecord]) -> Iterator[list[int]]:
    chunk: list[int] = []
    size = 0
    for index, record in enumerate(records):
        record_size = len(record.data) + len(record.partition_key.encode())
        if chunk and (
            len(chunk) >= PUT_RECORDS_MAX_ENTRIES or size + record_size > PUT_RECORDS_MAX_BYTES
        ):
            yield chunk
            chunk, size = [], 0
        chunk.append(index)
        size += record_size
    if chunk:
        yield chunk
