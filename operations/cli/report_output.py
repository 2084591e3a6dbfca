"""The `report` command's work: read the counters, compute the statistics, render them.

Three renderings of one `ExperimentReport`: a JSON document (the stable, documented form other
tools read; see docs/cli.md), CSV of the window rows, and rich tables for people.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from application.ports import MetricSnapshot
from application.reporting import ExperimentReport, UsersCounted
from domain.metrics import Granularity
from domain.statistics import (
    CONFIDENCE_LEVEL,
    SRM_P_VALUE_THRESHOLD,
    Interval,
    MetricRate,
    SampleRatioCheck,
)

JSON_FORMAT_VERSION = 1
WINDOW_COLUMNS = (
    "experiment_id",
    "variant_id",
    "metric",
    "granularity",
    "window_start",
    "event_count",
    "unique_users",
    "value_sum",
    "value_count",
)


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


def parse_moment(text: str) -> datetime:
    """An ISO 8601 date or date-time; without a zone it is UTC."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _decimal(value: Decimal | None) -> str | None:
    """Decimals travel as strings: a JSON number would be read back as a binary float."""
    return None if value is None else format(value.normalize(), "f")


def window_row(snapshot: MetricSnapshot) -> dict[str, object]:
    key = snapshot.key
    return {
        "experiment_id": key.experiment_id,
        "variant_id": key.variant_id,
        "metric": key.metric,
        "granularity": key.granularity.value,
        "window_start": _iso(key.window_start),
        "event_count": snapshot.measures.event_count,
        "unique_users": snapshot.unique_users,
        "value_sum": _decimal(snapshot.measures.value_sum),
        "value_count": snapshot.measures.value_count,
    }


def _bounds(interval: Interval | None) -> tuple[float | None, float | None]:
    return (None, None) if interval is None else (interval.low, interval.high)


def _rate_row(rate: MetricRate) -> dict[str, object]:
    low, high = _bounds(rate.interval)
    difference_low, difference_high = _bounds(rate.difference_interval)
    return {
        "variant_id": rate.variant_id,
        "metric": rate.metric,
        "users": rate.users,
        "exposed_users": rate.exposed_users,
        "unexposed_users": rate.unexposed_users,
        "rate": rate.rate,
        "rate_ci_low": low,
        "rate_ci_high": high,
        "lift": rate.lift,
        "difference": rate.difference,
        "difference_ci_low": difference_low,
        "difference_ci_high": difference_high,
    }


def report_document(report: ExperimentReport) -> dict[str, object]:
    srm = report.sample_ratio
    sample_ratio: dict[str, object] | None = None
    if srm is not None:
        sample_ratio = {
            "observed": dict(srm.observed),
            "expected": dict(srm.expected),
            "statistic": srm.statistic,
            "degrees_of_freedom": srm.degrees_of_freedom,
            "p_value": srm.p_value,
            "threshold": SRM_P_VALUE_THRESHOLD,
            "mismatch": srm.mismatch,
            "reason": srm.reason,
        }
    return {
        "format_version": JSON_FORMAT_VERSION,
        "experiment_id": report.experiment_id,
        "experiment_known": report.experiment is not None,
        "granularity": report.granularity.value,
        "start": _iso(report.start),
        "end": _iso(report.end),
        "windows": [window_row(snapshot) for snapshot in report.windows],
        "summary": {
            "sample_ratio": sample_ratio,
            "control_variant": report.control_variant,
            "confidence_level": CONFIDENCE_LEVEL,
            # Totals are distinct users over the whole range (format 1 had sums of windows).
            "unique_users_exact": report.users_counted is not UsersCounted.SKETCHES,
            "unique_users_from": report.users_counted.value,
            "windows_without_unique_users": len(report.windows_without_users),
            "fixed_horizon": True,
            "totals": [
                {
                    "variant_id": total.variant_id,
                    "metric": total.metric,
                    "event_count": total.measures.event_count,
                    "unique_users": total.unique_users,
                    "value_sum": _decimal(total.measures.value_sum),
                    "value_count": total.measures.value_count,
                    "value_mean": _decimal(total.measures.value_mean),
                    "windows": total.windows,
                }
                for total in report.totals
            ],
            "rates": [_rate_row(rate) for rate in report.rates],
        },
    }


def report_json(report: ExperimentReport) -> str:
    return json.dumps(report_document(report), indent=2)


def report_csv(report: ExperimentReport) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=WINDOW_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for snapshot in report.windows:
        writer.writerow(window_row(snapshot))
    return buffer.getvalue()


def _percent(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.2%}" if signed else f"{value:.2%}"


def _interval_text(interval: Interval | None, signed: bool = False) -> str:
    if interval is None:
        return "-"
    return f"[{_percent(interval.low, signed)}, {_percent(interval.high, signed)}]"


def _difference_text(rate: MetricRate) -> str:
    """The absolute difference from control in percentage points, with its interval."""
    if rate.difference is None:
        return "-"
    text = f"{rate.difference * 100:+.2f} pp"
    if rate.difference_interval is not None:
        low, high = rate.difference_interval.low * 100, rate.difference_interval.high * 100
        text += f" [{low:+.2f}, {high:+.2f}]"
    return text


def _money(value: Decimal | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


FIXED_HORIZON_NOTE = (
    "intervals are fixed-horizon 95% intervals: valid for one look at a range chosen in "
    "advance; looking again and again and stopping when one excludes 0 makes false positives "
    "far likelier than 5% (no correction for peeking)"
)


def render_table(report: ExperimentReport, console: Console) -> None:
    title = f"Experiment {report.experiment_id}"
    if report.experiment is not None:
        title += f" - {report.experiment.name} ({report.experiment.status.value})"
    span = f"{_iso(report.start) or 'beginning'} to {_iso(report.end) or 'now'}"
    console.print(f"[bold]{escape(title)}[/bold]")
    adjective = "hourly" if report.granularity is Granularity.HOUR else "daily"
    console.print(
        f"{adjective} windows, {span}, {len(report.windows)} counters, distinct users from "
        f"{report.users_counted.value}"
    )
    missing = len(report.windows_without_users)
    if missing:
        console.print(
            f"[bold yellow]{missing} of the {len(report.windows)} counters hold events but no "
            f"unique users in {report.users_counted.value}[/bold yellow] (counted in the other "
            "UNIQUE_USERS mode or before unique users were kept, or their users' markers "
            "erased): those users are missing from the distinct counts and rates below"
        )
    srm = report.sample_ratio
    _render_sample_ratio(srm, console)
    suspect = srm is not None and srm.mismatch
    warning = " - SUSPECT: sample ratio mismatch" if suspect else ""
    row_style = "dim" if suspect else None

    counts = Table(
        title=f"Counters per variant and metric (distinct users over the range){warning}",
        title_justify="left",
    )
    for header in ("variant", "metric", "events", "unique users", "value sum", "value mean"):
        counts.add_column(header, justify="left" if header in ("variant", "metric") else "right")
    for total in report.totals:
        counts.add_row(
            total.variant_id,
            total.metric,
            f"{total.measures.event_count:,}",
            f"{total.unique_users:,}",
            _money(total.measures.value_sum) if total.measures.value_count else "-",
            _money(total.measures.value_mean),
            style=row_style,
        )
    console.print(counts)

    rates = Table(
        title=f"Exposed users who did the metric, per exposed user, against "
        f"{report.control_variant or 'control'}{warning}",
        title_justify="left",
    )
    rates.add_column("metric")
    rates.add_column("variant")
    for header in (
        "users",
        "exposed",
        "rate",
        "95% CI",
        f"lift vs {report.control_variant or '-'}",
    ):
        rates.add_column(header, justify="right")
    rates.add_column("difference [95% CI]", justify="right")
    rates.add_column("unexposed", justify="right")
    for rate in sorted(report.rates, key=lambda r: r.metric):
        rates.add_row(
            rate.metric,
            rate.variant_id,
            f"{rate.users:,}",
            f"{rate.exposed_users:,}",
            _percent(rate.rate),
            _interval_text(rate.interval),
            _percent(rate.lift, signed=True),
            _difference_text(rate),
            f"{rate.unexposed_users:,}",
            style=row_style,
        )
    console.print(rates)
    console.print(f"note: {FIXED_HORIZON_NOTE}.")
    if any(rate.unexposed_users for rate in report.rates):
        console.print(
            "note: unexposed users did the metric without an exposure in range; they are in "
            "no rate."
        )
    if suspect:
        console.print(
            "[bold red]SAMPLE RATIO MISMATCH[/bold red]: the results above are suspect "
            "(see the check at the top)."
        )


def _render_sample_ratio(srm: SampleRatioCheck | None, console: Console) -> None:
    if srm is None:
        console.print("sample ratio: experiment configuration unknown, not checked")
    elif srm.mismatch:
        console.print(f"[bold red]SAMPLE RATIO MISMATCH[/bold red]: {srm.reason}")
        console.print(f"  exposed users {dict(srm.observed)}, expected {_expected(srm.expected)}")
    else:
        console.print(f"sample ratio: ok ({srm.reason}); exposed users {dict(srm.observed)}")


def _expected(expected: Mapping[str, float]) -> str:
    return "{" + ", ".join(f"{k!r}: {v:.1f}" for k, v in expected.items()) + "}"
