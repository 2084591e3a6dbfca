"""The chart's drawing: no line across a window where nothing was counted, zero where the
experiment was counted, the window in progress drawn apart, the experiment in the title."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from matplotlib.lines import Line2D

from application.ports import MetricSnapshot
from application.reporting import build_report
from domain.experiments import Experiment, ExperimentStatus, Variant
from domain.metrics import Granularity, Measures, MetricKey
from domain.statistics import EXPOSURE_METRIC
from operations.charts import (
    ChartFormat,
    ChartMeasure,
    ChartPathError,
    chart_format,
    report_figure,
)

HOUR = datetime(2026, 11, 20, 10, tzinfo=UTC)
EXPERIMENT = Experiment(
    experiment_id="exp-1",
    name="Checkout copy",
    status=ExperimentStatus.RUNNING,
    variants=(Variant(variant_id="control"), Variant(variant_id="treatment")),
)


def _snapshot(variant_id: str, metric: str, hour: int, *users: str) -> MetricSnapshot:
    key = MetricKey("exp-1", variant_id, metric, Granularity.HOUR, HOUR + timedelta(hours=hour))
    return MetricSnapshot(key, Measures(len(users)), frozenset(users))


# Hours 0, 1, 3 and 4 counted; hour 2 nothing at all; treatment had no conversion in hour 1;
# hour 4 is in progress at NOW.
WINDOWS = [
    _snapshot("control", EXPOSURE_METRIC, 0, "a", "b"),
    _snapshot("treatment", EXPOSURE_METRIC, 0, "c", "d"),
    _snapshot("control", "conversion", 0, "a"),
    _snapshot("treatment", "conversion", 0, "c"),
    _snapshot("control", EXPOSURE_METRIC, 1, "e"),
    _snapshot("treatment", EXPOSURE_METRIC, 1, "f"),
    _snapshot("control", "conversion", 1, "e"),
    _snapshot("control", EXPOSURE_METRIC, 3, "g"),
    _snapshot("treatment", EXPOSURE_METRIC, 3, "h"),
    _snapshot("treatment", "conversion", 3, "h"),
    _snapshot("control", EXPOSURE_METRIC, 4, "i"),
    _snapshot("treatment", "conversion", 4, "d"),
]
NOW = HOUR + timedelta(hours=4, minutes=10)


def _solid_lines(lines: list[Line2D], variant_id: str) -> list[Line2D]:
    return [line for line in lines if line.get_label() == variant_id]


@pytest.mark.parametrize("measure", [ChartMeasure.RATE, ChartMeasure.EVENTS])
def test_no_line_crosses_the_window_with_nothing_counted_nor_reaches_the_partial_one(
    measure: ChartMeasure,
) -> None:
    report = build_report("exp-1", EXPERIMENT, WINDOWS, Granularity.HOUR)

    figure = report_figure(report, "conversion", measure, NOW)

    lines = figure.axes[0].get_lines()
    for variant_id in ("control", "treatment"):
        (line,) = _solid_lines(lines, variant_id)
        y = np.asarray(line.get_ydata(), float)
        assert len(y) == 5
        assert np.isnan(y[2]), "the hour with nothing counted is a gap"
        assert np.isnan(y[4]), "the hour in progress is not on the line"
        assert not np.isnan(y[[0, 1, 3]]).any()
    hollow = [line for line in lines if line.get_markerfacecolor() == "white"]
    assert len(hollow) == 2
    assert all(line.get_linestyle() == ":" for line in hollow)


def test_a_counted_window_without_a_counter_of_the_variant_is_zero() -> None:
    report = build_report("exp-1", EXPERIMENT, WINDOWS, Granularity.HOUR)

    figure = report_figure(report, "conversion", ChartMeasure.USERS, NOW)

    (treatment,) = _solid_lines(figure.axes[0].get_lines(), "treatment")
    assert np.asarray(treatment.get_ydata(), float)[1] == 0.0


def test_the_cumulative_rate_is_drawn_with_its_band() -> None:
    report = build_report("exp-1", EXPERIMENT, WINDOWS, Granularity.HOUR)

    figure = report_figure(report, "conversion", ChartMeasure.RATE, NOW)

    (control,) = _solid_lines(figure.axes[0].get_lines(), "control")
    # Control: a, b exposed and a converted in hour 0; e exposed and converted in hour 1.
    assert np.asarray(control.get_ydata(), float)[[0, 1]] == pytest.approx([1 / 2, 2 / 3])
    assert len(figure.axes[0].collections) >= 2  # a band per variant
    title = figure.get_suptitle()
    assert "exp-1 (Checkout copy)" in title
    assert "cumulative conversion rate" in title


def test_the_exposure_chart_shows_the_configured_weights() -> None:
    report = build_report("exp-1", EXPERIMENT, WINDOWS, Granularity.HOUR)

    figure = report_figure(report, EXPOSURE_METRIC, ChartMeasure.RATE, NOW)

    dashed = [line for line in figure.axes[0].get_lines() if line.get_linestyle() == "--"]
    assert [float(np.asarray(line.get_ydata(), float)[0]) for line in dashed] == [0.5, 0.5]
    assert "share of exposed users" in figure.get_suptitle()


def test_a_sample_ratio_mismatch_is_written_on_the_chart() -> None:
    broken = [_snapshot("control", EXPOSURE_METRIC, 0, *(f"u{i}" for i in range(300)))]
    broken.append(_snapshot("treatment", EXPOSURE_METRIC, 0, "x"))
    report = build_report("exp-1", EXPERIMENT, broken, Granularity.HOUR)

    figure = report_figure(report, EXPOSURE_METRIC, ChartMeasure.RATE, NOW)

    assert figure.axes[0].get_title().startswith("SAMPLE RATIO MISMATCH")


@pytest.mark.parametrize(
    ("name", "expected"),
    [("x.png", ChartFormat.PNG), ("x.SVG", ChartFormat.SVG), ("x.pdf", ChartFormat.PDF)],
)
def test_the_extension_chooses_the_format(tmp_path: Path, name: str, expected: ChartFormat) -> None:
    assert chart_format(tmp_path / name) is expected


@pytest.mark.parametrize("name", ["x.jpg", "x", "x.png.txt"])
def test_another_extension_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ChartPathError, match=r"one of \.png, \.svg, \.pdf"):
        chart_format(tmp_path / name)
