from __future__ import annotations

import json

import pytest
from aws_lambda_powertools import Logger, Metrics

from application.results import BatchResult
from domain.records import KinesisCoordinates
from domain.rejections import RejectionReason
from infrastructure.powertools_telemetry import PowertoolsTelemetry


def test_publishes_batch_outcomes_as_emf_metrics_and_one_log_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    metrics = Metrics(namespace="Test", service="processor")
    metrics.clear_metrics()  # Powertools shares the metric set between instances of a process
    telemetry = PowertoolsTelemetry(metrics, Logger(service="processor"))
    result = BatchResult(
        records=10,
        processed=5,
        duplicates=1,
        dead_lettered={RejectionReason.INVALID_JSON: 2, RejectionReason.MISSING_FIELD: 1},
        unattributed=2,
        attributions=6,
        archived_objects=1,
        metric_keys_updated=12,
        failures=(KinesisCoordinates("shard-1", "9", "pk", 0.0),),
        stage_seconds={"decode": 0.01, "archive": 0.02},
        stage_errors={"write_metrics": 1},
    )
    telemetry.publish(result)
    metrics.flush_metrics()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    emf = next(line for line in lines if "_aws" in line and "reason" not in line)
    log = next(line for line in lines if line.get("message") == "batch processed")
    assert emf["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Test"
    assert emf["RecordsProcessed"] == [5.0]
    assert emf["ParseErrors"] == [2.0]
    assert emf["ValidationErrors"] == [1.0]
    assert emf["DeadLetters"] == [3.0]
    assert emf["ReportedFailures"] == [1.0]
    assert emf["WriteMetricsErrors"] == [1.0]
    assert log["level"] == "WARNING"
    assert log["first_failed_sequence_number"] == "9"
    assert "data" not in json.dumps(log)


def test_dead_letters_are_also_counted_per_reason_under_the_stacks_dimensions(
    capsys: pytest.CaptureFixture[str],
) -> None:
    metrics = Metrics(namespace="Test", service="processor")
    metrics.clear_metrics()
    metrics.set_default_dimensions(stack="experimently-prod")
    try:
        telemetry = PowertoolsTelemetry(metrics, Logger(service="processor"))
        telemetry.publish(
            BatchResult(
                records=4,
                processed=1,
                duplicates=0,
                dead_lettered={
                    RejectionReason.INVALID_JSON: 2,
                    RejectionReason.MISSING_FIELD: 1,
                    RejectionReason.INVALID_UTF8: 0,
                },
                unattributed=0,
                attributions=1,
                archived_objects=1,
                metric_keys_updated=2,
                failures=(),
            )
        )
        metrics.flush_metrics()
    finally:
        metrics.clear_default_dimensions()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    by_reason = {
        line["reason"]: (line["DeadLetters"], line["_aws"]["CloudWatchMetrics"][0]["Dimensions"])
        for line in lines
        if "reason" in line
    }
    dimensions = [["service", "stack", "reason"]]
    assert by_reason == {"invalid_json": ([2.0], dimensions), "missing_field": ([1.0], dimensions)}
    [total] = [line for line in lines if "_aws" in line and "reason" not in line]
    assert total["stack"] == "experimently-prod"
    assert total["DeadLetters"] == [3.0]
