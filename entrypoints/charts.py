"""Charts of experiment counters: one line per variant over the report's windows, as PNG.

matplotlib runs on its Agg back end (no display needed); the figure is built and closed per
call, nothing is kept at module level.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from application.ports import MetricSnapshot


class ChartMeasure(StrEnum):
    EVENTS = "events"
    USERS = "users"

    def of(self, snapshot: MetricSnapshot) -> int:
        return snapshot.event_count if self is ChartMeasure.EVENTS else snapshot.unique_users

    @property
    def label(self) -> str:
        return "events" if self is ChartMeasure.EVENTS else "unique users"


def write_time_series_chart(
    snapshots: Sequence[MetricSnapshot],
    metric: str,
    path: Path,
    measure: ChartMeasure = ChartMeasure.EVENTS,
    title: str | None = None,
) -> int:
    """Draw `metric` per variant and window to a PNG at `path`; return the number of lines."""
    # A bare Figure renders with Agg and touches no global pyplot state; imported here because
    # matplotlib is slow to import and most commands never draw.
    import numpy as np
    from matplotlib.figure import Figure

    series: dict[str, list[tuple[datetime, int]]] = {}
    for snapshot in sorted(snapshots, key=lambda s: s.key):
        if snapshot.key.metric != metric:
            continue
        series.setdefault(snapshot.key.variant_id, []).append(
            (snapshot.key.window_start, measure.of(snapshot))
        )
    figure = Figure(figsize=(9, 4.5), dpi=100)
    axes = figure.add_subplot()
    for variant_id, points in sorted(series.items()):
        axes.plot(
            np.array([m.astimezone(UTC).replace(tzinfo=None) for m, _ in points], "datetime64[s]"),
            [value for _, value in points],
            marker="o",
            label=variant_id,
        )
    if not series:
        axes.text(0.5, 0.5, f"no {metric} counters", ha="center", va="center")
    else:
        axes.legend(title="variant")
    moments = sorted({m for points in series.values() for m, _ in points})
    if len(moments) == 1:
        # One window alone would get a range of years around it: show a window each side.
        length = snapshots[0].key.granularity.length
        # matplotlib's date unit: days since its epoch, 1970-01-01 by default.
        axes.set_xlim(
            (moments[0] - length).timestamp() / 86_400, (moments[0] + length).timestamp() / 86_400
        )
    axes.set_ylim(bottom=0)
    granularity = snapshots[0].key.granularity.value if snapshots else "window"
    axes.set_xlabel(f"{granularity} (UTC, window start)")
    axes.set_ylabel(f"{metric} {measure.label}")
    axes.set_title(title or f"{metric} {measure.label} per {granularity}")
    axes.grid(visible=True, alpha=0.3)
    figure.autofmt_xdate()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return len(series)
