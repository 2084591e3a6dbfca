"""The Lambda function: a Kinesis batch in, a partial batch response out."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from application.ports import Deadline
from entrypoints.container import Container
from entrypoints.kinesis_event import MalformedEventError, raw_records
from infrastructure.garbage_collection import collector_paused, freeze_warm_heap

# Powertools' three utilities are the documented module-level singletons: they hold no
# connection and do no I/O when created. The container (boto3 clients, caches) is built
# lazily on the first invocation and then reused while the container stays warm.
logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "event-processor"))
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Experimently"))
tracer = Tracer(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "event-processor"))
IN_LAMBDA = "AWS_LAMBDA_FUNCTION_NAME" in os.environ
"""Lambda's runtime sets it. The cold-start metric (which Powertools prints at once, even with
metrics disabled) is only published there: a local run or the CLI has no cold start to count."""


class WarmContainer:
    """The composition root of this warm container: built on the first invocation, with
    Powertools' utilities handed in, then reused while the container stays warm."""

    def __init__(self) -> None:
        self._built: Container | None = None

    def __call__(self) -> Container:
        if self._built is None:
            self._built = _container_for_lambda()
        return self._built

    def cache_clear(self) -> None:
        """Forget it: the next invocation builds another from the environment, as a cold start
        would."""
        self._built = None

    @contextmanager
    def replaced_by(self, built: Container) -> Iterator[Container]:
        """Invocations inside run on `built` (a test's or a local run's container, with its
        overrides); the container held before is back afterwards."""
        held, self._built = self._built, built
        try:
            yield built
        finally:
            self._built = held


def _container_for_lambda() -> Container:
    built = Container(powertools_metrics=metrics, powertools_logger=logger, tracer=tracer)
    if stack_name := built.settings().metrics_stack_name:
        metrics.set_default_dimensions(stack=stack_name)
    return built


container = WarmContainer()


class LambdaDeadline(Deadline):
    """Stop starting new writes once less than `margin_ms` of the invocation is left, so the
    batch ends with an honest partial response instead of being killed mid-write.

    The margin never exceeds a quarter of the time the invocation started with: with a short
    function timeout a fixed margin would expire at once and every batch would be sent back
    for ever."""

    MAX_SHARE_OF_INVOCATION = 0.25

    def __init__(self, context: LambdaContext, margin_ms: int) -> None:
        self._context = context
        at_start = context.get_remaining_time_in_millis()
        self._margin_ms = min(margin_ms, int(at_start * self.MAX_SHARE_OF_INVOCATION))

    def expired(self) -> bool:
        return self.remaining_seconds() <= 0

    def remaining_seconds(self) -> float:
        return max(0, self._context.get_remaining_time_in_millis() - self._margin_ms) / 1000


@logger.inject_lambda_context(log_event=False, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=IN_LAMBDA)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, list[dict[str, str]]]:
    try:
        records = raw_records(event)
    except MalformedEventError as error:
        # Not a Kinesis event: the trigger is miswired. Fail the invocation, loudly and countably.
        metrics.add_metric(name="MalformedInvocations", unit=MetricUnit.Count, value=1)
        logger.error("malformed invocation event", extra={"problem": str(error)})
        raise
    logger.set_correlation_id(context.aws_request_id)
    if records:
        first = records[0].coordinates
        logger.append_keys(shard_id=first.shard_id, first_sequence_number=first.sequence_number)
    root = container()
    deadline = LambdaDeadline(context, root.settings().deadline_margin_ms)
    with collector_paused():
        result = root.batch_processor().process(records, deadline)
    _freeze_warm_heap()
    return {"batchItemFailures": result.batch_item_failures()}


@functools.cache
def _freeze_warm_heap() -> None:
    """Once, after the first invocation: move what is alive then (imports, container, clients,
    filled caches) out of the cyclic garbage collector's reach (see
    `infrastructure.garbage_collection`)."""
    freeze_warm_heap()
