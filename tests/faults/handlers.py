"""A Lambda handler assembled from the batch use case: Kinesis event in, partial response out.

The product's handler lives in `entrypoints.lambda_handler`; this one stands in for it where a
test wires the use case to in-memory adapters, with the same contract.
"""

from __future__ import annotations

from typing import Any

from application.ports import Deadline
from application.process_batch import BatchProcessor
from domain.records import KinesisCoordinates, RawRecord
from entrypoints.event_source_emulator import Handler, LambdaContextLike


def records_of(event: dict[str, Any]) -> list[RawRecord]:
    records = []
    for item in event["Records"]:
        kinesis = item["kinesis"]
        shard_id = item["eventID"].rsplit(":", 1)[0]
        coordinates = KinesisCoordinates(
            shard_id,
            kinesis["sequenceNumber"],
            kinesis["partitionKey"],
            float(kinesis["approximateArrivalTimestamp"]),
        )
        records.append(RawRecord(coordinates, kinesis["data"]))
    return records


class ContextDeadline(Deadline):
    """Expired once less than `margin_ms` of the invocation's time is left."""

    def __init__(self, context: LambdaContextLike, margin_ms: int) -> None:
        self._context = context
        self._margin_ms = margin_ms

    def expired(self) -> bool:
        return self._context.get_remaining_time_in_millis() < self._margin_ms


def use_case_handler(processor: BatchProcessor, margin_ms: int = 1_000) -> Handler:
    def handler(event: dict[str, Any], context: LambdaContextLike) -> dict[str, Any]:
        result = processor.process(records_of(event), ContextDeadline(context, margin_ms))
        return {"batchItemFailures": result.batch_item_failures()}

    return handler
