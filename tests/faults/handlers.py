"""A Lambda handler assembled from the batch use case: Kinesis event in, partial response out.

The product's handler lives in `entrypoints.lambda_handler`; this one stands in for it where a
test wires the use case to in-memory adapters, with the same contract.
"""

from __future__ import annotations

from typing import Any

from application.ports import Deadline
from application.process_batch import BatchProcessor
from entrypoints.kinesis_event import raw_records
from operations.event_source_emulator import Handler, LambdaContextLike


class ContextDeadline(Deadline):
    """Expired once less than `margin_ms` of the invocation's time is left."""

    def __init__(self, context: LambdaContextLike, margin_ms: int) -> None:
        self._context = context
        self._margin_ms = margin_ms

    def expired(self) -> bool:
        return self._context.get_remaining_time_in_millis() < self._margin_ms

    def remaining_seconds(self) -> float:
        return max(0, self._context.get_remaining_time_in_millis() - self._margin_ms) / 1000


def use_case_handler(processor: BatchProcessor, margin_ms: int = 1_000) -> Handler:
    def handler(event: dict[str, Any], context: LambdaContextLike) -> dict[str, Any]:
        result = processor.process(raw_records(event), ContextDeadline(context, margin_ms))
        return {"batchItemFailures": result.batch_item_failures()}

    return handler
