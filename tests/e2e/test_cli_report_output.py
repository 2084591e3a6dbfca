"""The report's renderings (JSON, CSV, table) and the chart, over counters the pipeline wrote."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from pathlib import Path

import pytest
from rich.console import Console

from application.reporting import read_report
from domain.metrics import Granularity
from operations.charts import ChartMeasure, ChartPathError, write_time_series_chart
from operations.cli.report_output import (
    WINDOW_COLUMNS,
    render_table,
    report_csv,
    report_document,
)
from operations.synthetic.workload import WorkloadSpec, generate
from tests.containers import MemoryBackEnd

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def back_end() -> MemoryBackEnd:
    workload = generate(WorkloadSpec(events=3_000, experiments=2, users=600, seed=11))
    back_end = MemoryBackEnd.empty()
    back_end.experiments.put_all(workload.experiments)
    back_end.assignments.put_all(workload.assignments)
    processor = back_end.processor()
    records = workload.records()
    for i in range(0, len(records), 500):
        processor.process(records[i : i + 500])
    return back_end


def test_the_json_windows_are_exactly_the_stored_counters(back_end: MemoryBackEnd) -> None:
    report = read_report(back_end.metrics, back_end.experiments, "exp-00", Granularity.HOUR)

    document = json.loads(json.dumps(report_document(report)))

    stored = back_end.metrics.snapshots("exp-00", Granularity.HOUR)
    assert len(stored) > 4
    assert [
        (
            w["variant_id"],
            w["metric"],
            w["window_start"],
            w["event_count"],
            w["unique_users"],
            Decimal(w["value_sum"]),
        )
        for w in document["windows"]
    ] == [
        (
            s.key.variant_id,
            s.key.metric,
            s.key.window_start.isoformat().replace("+00:00", "Z"),
            s.measures.event_count,
            s.unique_users,
            s.measures.value_sum,
        )
        for s in stored
    ]


def test_the_json_summary_agrees_with_the_daily_counters(back_end: MemoryBackEnd) -> None:
    report = read_report(back_end.metrics, back_end.experiments, "exp-00", Granularity.DAY)

    summary = report_document(report)["summary"]

    assert isinstance(summary, dict)
    assert summary["unique_users_exact"] is True
    assert summary["windows_without_unique_users"] == 0
    assert summary["fixed_horizon"] is True
    assert next(iter(summary)) == "sample_ratio"
    daily = {
        (s.key.variant_id, s.key.metric): s
        for s in back_end.metrics.snapshots("exp-00", Granularity.DAY, user_sets=True)
    }
    for total in summary["totals"]:
        snapshot = daily[(total["variant_id"], total["metric"])]
        assert total["event_count"] == snapshot.measures.event_count
        assert total["unique_users"] == snapshot.unique_users
    for rate in summary["rates"]:
        exposed = daily[(rate["variant_id"], "exposure")].user_ids or frozenset()
        users = daily[(rate["variant_id"], rate["metric"])].user_ids or frozenset()
        assert rate["users"] == len(users & exposed)
        assert rate["unexposed_users"] == len(users - exposed)
        assert rate["rate"] == pytest.approx(len(users & exposed) / len(exposed))
        assert rate["rate_ci_low"] <= rate["rate"] <= rate["rate_ci_high"]
    assert summary["sample_ratio"]["mismatch"] is False


def test_the_csv_has_one_row_per_window_with_the_documented_columns(
    back_end: MemoryBackEnd,
) -> None:
    report = read_report(back_end.metrics, back_end.experiments, "exp-01", Granularity.HOUR)

    rows = list(csv.DictReader(io.StringIO(report_csv(report))))

    assert tuple(rows[0]) == WINDOW_COLUMNS
    assert len(rows) == len(report.windows)
    assert sum(int(r["event_count"]) for r in rows) == sum(
        s.measures.event_count for s in report.windows
    )


def test_the_table_shows_every_variant_and_the_sample_ratio_verdict(
    back_end: MemoryBackEnd,
) -> None:
    report = read_report(back_end.metrics, back_end.experiments, "exp-00", Granularity.DAY)
    console = Console(file=io.StringIO(), width=200, color_system=None)

    render_table(report, console)

    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "sample ratio: ok" in text
    for total in report.totals:
        assert total.variant_id in text
    assert f"{report.totals[0].measures.event_count:,}" in text


def test_the_chart_is_a_png_file(back_end: MemoryBackEnd, tmp_path: Path) -> None:
    path = tmp_path / "exposures.png"
    snapshots = back_end.metrics.snapshots("exp-00", Granularity.HOUR)

    lines = write_time_series_chart(snapshots, "exposure", path, ChartMeasure.USERS)

    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 10_000
    assert lines == len({s.key.variant_id for s in snapshots})


def test_a_chart_is_not_written_into_a_directory_that_does_not_exist(
    back_end: MemoryBackEnd, tmp_path: Path
) -> None:
    path = tmp_path / "no-such-directory" / "exposures.png"
    snapshots = back_end.metrics.snapshots("exp-00", Granularity.HOUR)

    with pytest.raises(ChartPathError, match="no directory"):
        write_time_series_chart(snapshots, "exposure", path, ChartMeasure.USERS)

    assert not path.parent.exists()
