"""`report`: an experiment's counters, statistics and chart."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from domain.metrics import Granularity
from operations.cli.aws_access import aws_environment, build_container, run_against_aws
from operations.cli.console import EXIT_FAILURES, fail, stderr_console, stdout_console
from operations.cli.options import EndpointUrl, moment_option
from operations.cli.report_output import OutputFormat


class Window(StrEnum):
    HOUR = "hour"
    DAY = "day"


class Measure(StrEnum):
    RATE = "rate"
    EVENTS = "events"
    USERS = "users"


def report(
    experiment: Annotated[str, typer.Option("--experiment", "-e", help="Experiment id.")],
    window: Annotated[Window, typer.Option(help="Counter windows to read.")] = Window.DAY,
    start: Annotated[
        str | None,
        typer.Option(help="First window start to include (ISO 8601; UTC unless a zone is given)."),
    ] = None,
    end: Annotated[
        str | None, typer.Option(help="Windows starting at or after this are left out.")
    ] = None,
    control: Annotated[
        str, typer.Option(help="The variant the others are compared with.")
    ] = "control",
    output: Annotated[
        OutputFormat,
        typer.Option("--format", "-f", help="table for people; json or csv for scripts."),
    ] = OutputFormat.TABLE,
    chart: Annotated[
        Path | None,
        typer.Option(help="Also draw --chart-metric over the windows to this .png, .svg or .pdf."),
    ] = None,
    chart_metric: Annotated[str, typer.Option(help="Metric (event type) to chart.")] = "exposure",
    chart_measure: Annotated[
        Measure,
        typer.Option(
            help="rate: the cumulative rate (for exposure: the share against the weights) "
            "with its 95% band; events or users: the counts per window."
        ),
    ] = Measure.RATE,
    fail_on_srm: Annotated[
        bool,
        typer.Option("--fail-on-srm", help="Exit 1 when the sample ratio check flags a mismatch."),
    ] = False,
    user_sets: Annotated[
        bool,
        typer.Option(
            "--user-sets",
            help="Count distinct users from the users themselves (the first-seen markers), "
            "not the stored counts: a read that grows with the users. Parts of an experiment "
            "and rate charts need it and use it anyway.",
        ),
    ] = False,
    endpoint_url: EndpointUrl = None,
) -> None:
    """Per variant and metric over the range: events, distinct users, value sum and mean, the
    rate per exposed user with a 95% confidence interval, the lift against the control, and,
    first, a sample-ratio check."""
    from application.reporting import UnknownControlVariantError, read_report
    from infrastructure.clock import SystemClock
    from operations.charts import ChartMeasure, ChartPathError, chart_format, write_report_chart
    from operations.cli.report_output import render_table, report_csv, report_json

    first, last = moment_option(start), moment_option(end)
    if first is not None and last is not None and last <= first:
        raise typer.BadParameter("--end must be after --start", param_hint="--end")
    if chart is not None:
        try:
            chart_format(chart)
        except ChartPathError as error:
            raise typer.BadParameter(str(error), param_hint="--chart") from None
    granularity = Granularity(window.value)
    needs_user_sets = user_sets or (chart is not None and chart_measure is Measure.RATE)
    with aws_environment(endpoint_url):
        container = build_container()
        sketched = container.settings().unique_users == "sketch"
        if sketched and needs_user_sets:
            fail(
                "unique users are sketches here (UNIQUE_USERS=sketch), which keep no user ids: "
                "--user-sets and rate charts need them; chart --chart-measure users or events"
            )
        try:
            result = run_against_aws(
                lambda: read_report(
                    container.metric_store(),
                    container.experiment_repository(),
                    experiment,
                    granularity,
                    first,
                    last,
                    control,
                    user_sets=user_sets or (chart is not None and chart_measure is Measure.RATE),
                )
            )
        except UnknownControlVariantError as error:
            raise typer.BadParameter(str(error), param_hint="--control") from None
    if result.experiment is None and not result.windows:
        fail(f"no experiment {experiment!r} and no counters for it")
    if chart is not None and chart_metric not in {*result.metrics, "exposure"}:
        raise typer.BadParameter(
            f"no counters of {chart_metric!r} for {experiment} in this range "
            f"(metrics: {', '.join(result.metrics) or 'none'})",
            param_hint="--chart-metric",
        )
    if output is OutputFormat.JSON:
        sys.stdout.write(report_json(result) + "\n")
    elif output is OutputFormat.CSV:
        sys.stdout.write(report_csv(result))
    else:
        render_table(result, stdout_console())
    if chart is not None:
        lines = write_report_chart(
            result, chart_metric, ChartMeasure(chart_measure.value), chart, SystemClock().now()
        )
        stderr_console().print(f"chart: {chart} ({lines} variants of {chart_metric})", markup=False)
    if fail_on_srm and result.sample_ratio is not None and result.sample_ratio.mismatch:
        raise typer.Exit(EXIT_FAILURES)
