"""Batch outcomes as CloudWatch metrics (EMF) and one structured log line, via Powertools."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from application.ports import Telemetry
from application.results import BatchResult
from domain.rejections import STAGE_OF_REASON, Stage


class PowertoolsTelemetry(Telemetry):
    def __init__(self, metrics: Metrics, logger: Logger) -> None:
        self._metrics = metrics
        self._logger = logger

    def publish(self, result: BatchResult) -> None:
        by_stage = dict.fromkeys(Stage, 0)
        for reason, count in result.dead_lettered.items():
            by_stage[STAGE_OF_REASON[reason]] += count
        add = self._metrics.add_metric
        add(
            name="BatchProcessingTime",
            unit=MetricUnit.Milliseconds,
            value=1000 * sum(result.stage_seconds.values()),
        )
        add(name="RecordsReceived", unit=MetricUnit.Count, value=result.records)
        add(name="RecordsProcessed", unit=MetricUnit.Count, value=result.processed)
        add(name="Duplicates", unit=MetricUnit.Count, value=result.duplicates)
        add(
            name="ParseErrors",
            unit=MetricUnit.Count,
            value=by_stage[Stage.DECODE] + by_stage[Stage.PARSE],
        )
        add(name="ValidationErrors", unit=MetricUnit.Count, value=by_stage[Stage.VALIDATE])
        # Records the contract accepted that a stage or a store then refused: each one is a
        # gap in the contract to close (dead-lettered `unprocessable` / `unstorable`).
        add(
            name="ContractEscapes",
            unit=MetricUnit.Count,
            value=by_stage[Stage.PROCESS] + by_stage[Stage.STORE],
        )
        add(name="EnrichmentMisses", unit=MetricUnit.Count, value=result.unattributed)
        add(name="DeadLetters", unit=MetricUnit.Count, value=result.dead_lettered_total)
        add(name="ReportedFailures", unit=MetricUnit.Count, value=len(result.failures))
        add(name="ArchiveObjects", unit=MetricUnit.Count, value=result.archived_objects)
        add(name="MetricKeysUpdated", unit=MetricUnit.Count, value=result.metric_keys_updated)
        for stage, errors in result.stage_errors.items():
            add(name=f"{stage_metric_name(stage)}Errors", unit=MetricUnit.Count, value=errors)
        self._dead_letters_by_reason(result)
        log = self._logger.warning if result.failures else self._logger.info
        log(
            "batch processed",
            extra={
                "records": result.records,
                "processed": result.processed,
                "duplicates": result.duplicates,
                "dead_lettered": {reason.value: n for reason, n in result.dead_lettered.items()},
                "unattributed": result.unattributed,
                "archived_objects": result.archived_objects,
                "metric_keys_updated": result.metric_keys_updated,
                "reported_failures": len(result.failures),
                "first_failed_sequence_number": result.failures[0].sequence_number
                if result.failures
                else None,
                "problems": list(result.problems),
                "stage_seconds": {k: round(v, 4) for k, v in result.stage_seconds.items()},
            },
        )

    def _dead_letters_by_reason(self, result: BatchResult) -> None:
        """`DeadLetters` again, per reason (a dimension of its own): which kind of bad input
        arrives, for an alarm or a dashboard to break down. One EMF line per reason seen."""
        if is_metrics_disabled():  # single_metric prints at once, whatever the setting
            return
        dimensions = dict(self._metrics.default_dimensions)
        if self._metrics.service:
            dimensions = {"service": str(self._metrics.service), **dimensions}
        for reason, count in sorted(result.dead_lettered.items()):
            if not count:
                continue
            with single_metric(
                name="DeadLetters",
                unit=MetricUnit.Count,
                value=count,
                namespace=self._metrics.namespace,
                default_dimensions=dimensions,
            ) as metric:
                metric.add_dimension(name="reason", value=reason.value)


def stage_metric_name(stage: str) -> str:
    return "".join(part.capitalize() for part in stage.split("_"))
