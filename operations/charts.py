"""Charts of an experiment over its report's windows, as PNG, SVG or PDF.

Two kinds, one honest layout:
- `rate`: the report's statistic as it stood at the end of each window, per variant, with its
  95% interval as a band: for `exposure` each variant's share of the exposed users against the
  share its configured weight gives (a sample-ratio check over time), for another metric the
  rate per exposed user;
- `events` / `users`: the counts of each window.

A window in which the experiment was counted but a variant had no counter of the metric is a
zero; a window with no counter of the experiment at all is a gap, and no line is drawn across
it (see `application.report_series`). The window still in progress is drawn apart, hollow and
shaded, so that its partial count does not read as a drop.

matplotlib runs on its Agg back end (no display needed); the figure is built and closed per
call, nothing is kept at module level.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from application.ports import MetricSnapshot
from application.report_series import WindowGrid, cumulative_series, window_grid
from application.reporting import ExperimentReport
from domain.metrics import Granularity
from domain.statistics import EXPOSURE_METRIC

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from numpy.typing import NDArray


class ChartMeasure(StrEnum):
    RATE = "rate"
    EVENTS = "events"
    USERS = "users"

    def of(self, snapshot: MetricSnapshot) -> int:
        return (
            snapshot.measures.event_count if self is ChartMeasure.EVENTS else snapshot.unique_users
        )

    @property
    def label(self) -> str:
        return {"rate": "rate", "events": "events", "users": "unique users"}[self.value]


class ChartFormat(StrEnum):
    PNG = "png"
    SVG = "svg"
    PDF = "pdf"


class ChartPathError(ValueError):
    """A chart path the command cannot write: an unknown extension or a missing directory."""


def chart_format(path: Path) -> ChartFormat:
    """The format the file's extension names; raises `ChartPathError` for any other, and when
    the file's directory does not exist (it is not created)."""
    extension = path.suffix.lower().removeprefix(".")
    try:
        chosen = ChartFormat(extension)
    except ValueError:
        known = ", ".join(f".{f.value}" for f in ChartFormat)
        raise ChartPathError(
            f"{str(path)!r}: the extension chooses the format, one of {known}"
        ) from None
    directory = path.parent
    if not directory.is_dir():
        raise ChartPathError(f"{str(path)!r}: no directory {str(directory)!r}")
    return chosen


def _numpy_moments(moments: Sequence[datetime]) -> NDArray[np.datetime64]:
    import numpy as np

    return np.array([m.astimezone(UTC).replace(tzinfo=None) for m in moments], "datetime64[s]")


def report_figure(
    report: ExperimentReport, metric: str, measure: ChartMeasure, now: datetime
) -> Figure:
    """The chart of `metric` over the report's windows, as it stands at `now`."""
    # Imported here because matplotlib is slow to import and most commands never draw.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 5), dpi=100)
    axes = figure.add_subplot()
    if measure is ChartMeasure.RATE:
        described = _draw_cumulative(axes, report, metric, now)
    else:
        described = _draw_counts(axes, report.windows, report.granularity, metric, measure, now)
    title = f"{report.experiment_id}"
    if report.experiment is not None:
        title += f" ({report.experiment.name})"
    figure.suptitle(f"{title}: {described}", fontsize=12)
    span = (
        f"{_label(report.start) if report.start else 'beginning'} to "
        f"{_label(report.end) if report.end else 'now'}"
    )
    srm = report.sample_ratio
    if srm is not None and srm.mismatch:
        axes.set_title(
            f"SAMPLE RATIO MISMATCH ({srm.reason}): every number is suspect",
            color="tab:red",
            fontsize=10,
        )
    else:
        axes.set_title(f"{report.granularity.value} windows, {span}", fontsize=10)
    figure.autofmt_xdate()
    figure.tight_layout()
    return figure


def _label(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _draw_cumulative(axes: Axes, report: ExperimentReport, metric: str, now: datetime) -> str:
    import numpy as np

    grid, series = cumulative_series(report, metric)
    partial = grid.partial(now)
    length = grid.granularity.length
    # A point stands for everything up to the end of its window (now, for the one in progress).
    ends = [
        min(start + length, now) if i == partial else start + length
        for i, start in enumerate(grid.starts)
    ]
    x = _numpy_moments(ends)
    colours = _colours(len(series))
    for colour, variant in zip(colours, series, strict=True):
        estimate = np.array(
            [
                p.estimate if counted and p.estimate is not None else np.nan
                for p, counted in zip(variant.points, grid.counted, strict=True)
            ],
            float,
        )
        low = np.array([p.interval.low if p.interval else np.nan for p in variant.points], float)
        high = np.array([p.interval.high if p.interval else np.nan for p in variant.points], float)
        low[np.isnan(estimate)] = np.nan
        high[np.isnan(estimate)] = np.nan
        done = estimate.copy()
        if partial is not None:
            done[partial] = np.nan
        axes.plot(x, done, marker="o", markersize=3, color=colour, label=variant.variant_id)
        axes.fill_between(x, low, high, color=colour, alpha=0.18, linewidth=0)
        if partial is not None and not np.isnan(estimate[partial]):
            _draw_partial_point(axes, x, estimate, partial, colour)
        if variant.expected is not None:
            axes.axhline(variant.expected, color=colour, linestyle="--", linewidth=1)
    _mark_partial_window(axes, grid, partial, now)
    if not grid.starts:
        axes.text(0.5, 0.5, f"no counters of {report.experiment_id}", ha="center", va="center")
    if metric == EXPOSURE_METRIC:
        axes.set_ylabel("share of exposed users (dashed: configured weight)")
        described = "cumulative share of exposed users per variant, 95% Wilson band"
    else:
        axes.set_ylabel(f"exposed users with {metric} / exposed users")
        described = f"cumulative {metric} rate per exposed user, 95% Wilson band"
    axes.set_xlabel("end of window (UTC), distinct users since the range's start")
    axes.set_ylim(bottom=0)
    _finish(axes, bool(series))
    return described


def _draw_counts(
    axes: Axes,
    windows: Sequence[MetricSnapshot],
    granularity: Granularity,
    metric: str,
    measure: ChartMeasure,
    now: datetime,
) -> str:
    import numpy as np

    grid = window_grid(windows, granularity)
    partial = grid.partial(now)
    index = {start: i for i, start in enumerate(grid.starts)}
    variant_ids = sorted({s.key.variant_id for s in windows})
    values = {v: np.where(np.array(grid.counted, bool), 0.0, np.nan) for v in variant_ids}
    for snapshot in windows:
        if snapshot.key.metric == metric and snapshot.key.granularity is granularity:
            values[snapshot.key.variant_id][index[snapshot.key.window_start]] = measure.of(snapshot)
    x = _numpy_moments(grid.starts)
    for colour, variant_id in zip(_colours(len(variant_ids)), variant_ids, strict=True):
        done = values[variant_id].copy()
        if partial is not None:
            done[partial] = np.nan
        axes.plot(x, done, marker="o", markersize=3, color=colour, label=variant_id)
        if partial is not None and not np.isnan(values[variant_id][partial]):
            _draw_partial_point(axes, x, values[variant_id], partial, colour)
    _mark_partial_window(axes, grid, partial, now)
    if not any(s.key.metric == metric for s in windows):
        axes.text(0.5, 0.5, f"no {metric} counters", ha="center", va="center")
    if len(grid.starts) == 1:
        # One window alone would get a range of years around it: show a window each side.
        length = granularity.length
        # matplotlib's date unit: days since its epoch, 1970-01-01 by default.
        axes.set_xlim(
            (grid.starts[0] - length).timestamp() / 86_400,
            (grid.starts[0] + length).timestamp() / 86_400,
        )
    axes.set_xlabel(f"{granularity.value} (UTC, window start)")
    axes.set_ylabel(f"{metric} {measure.label}")
    axes.set_ylim(bottom=0)
    _finish(axes, bool(variant_ids))
    return (
        f"{metric} {measure.label} per {granularity.value} (0: counted, none; gap: nothing counted)"
    )


def _draw_partial_point(
    axes: Axes,
    x: NDArray[np.datetime64],
    values: NDArray[np.float64],
    partial: int,
    colour: str,
) -> None:
    """The window in progress: a hollow marker, joined to the last full window by a dotted line."""
    import numpy as np

    first = partial - 1 if partial > 0 and not np.isnan(values[partial - 1]) else partial
    axes.plot(
        x[first : partial + 1],
        values[first : partial + 1],
        linestyle=":",
        marker="o",
        markevery=[partial - first],
        markersize=5,
        markerfacecolor="white",
        color=colour,
    )


def _mark_partial_window(axes: Axes, grid: WindowGrid, partial: int | None, now: datetime) -> None:
    if partial is None:
        return
    start = grid.starts[partial]
    axes.axvspan(
        start.timestamp() / 86_400,
        (start + grid.granularity.length).timestamp() / 86_400,
        color="0.85",
        alpha=0.6,
        zorder=0,
        label=f"{grid.granularity.value} in progress (partial, to {now:%H:%M} UTC)",
    )


def _colours(count: int) -> list[str]:
    palette = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    return [palette[i % len(palette)] for i in range(count)]


def _finish(axes: Axes, has_lines: bool) -> None:
    if has_lines:
        axes.legend(title="variant", fontsize=8)
    axes.grid(visible=True, alpha=0.3)


def write_figure(figure: Figure, path: Path) -> None:
    """Save in the format the extension names; the directory must exist (`chart_format`)."""
    import matplotlib

    chosen = chart_format(path)
    # Text stays text in SVG (searchable, and the title readable by tools), not glyph paths.
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        figure.savefig(path, format=chosen.value)


def write_report_chart(
    report: ExperimentReport, metric: str, measure: ChartMeasure, path: Path, now: datetime
) -> int:
    """Draw and save the report's chart; return the number of variants drawn."""
    write_figure(report_figure(report, metric, measure, now), path)
    if measure is ChartMeasure.RATE:
        return len(report.variant_ids)
    return len({s.key.variant_id for s in report.windows if s.key.metric == metric})


def write_time_series_chart(
    snapshots: Sequence[MetricSnapshot],
    metric: str,
    path: Path,
    measure: ChartMeasure = ChartMeasure.EVENTS,
    title: str | None = None,
    now: datetime | None = None,
) -> int:
    """Counts of `metric` per variant and window (`events` or `users`); return the lines."""
    from matplotlib.figure import Figure

    if measure is ChartMeasure.RATE:
        raise ValueError("a rate needs the report: use write_report_chart")
    figure = Figure(figsize=(10, 5), dpi=100)
    axes = figure.add_subplot()
    granularity = snapshots[0].key.granularity if snapshots else Granularity.HOUR
    described = _draw_counts(
        axes, snapshots, granularity, metric, measure, now or datetime.now(UTC)
    )
    axes.set_title(title or described, fontsize=10)
    figure.autofmt_xdate()
    figure.tight_layout()
    write_figure(figure, path)
    return len({s.key.variant_id for s in snapshots if s.key.metric == metric})
