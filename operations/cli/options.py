"""Options and parameter checks several commands share."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from urllib.parse import urlsplit

import typer

from operations.cli.report_output import OutputFormat, parse_moment


def _endpoint_url(value: str | None) -> str | None:
    """An endpoint is an http(s) URL with a host: `localhost:5123` alone is not one."""
    if value is None:
        return None
    parsed = urlsplit(value)
    try:
        parsed.port  # noqa: B018 (a port that is not a number raises here)
    except ValueError:
        raise typer.BadParameter(f"{value!r} has a port that is not a number") from None
    if parsed.scheme not in {"http", "https"} or not parsed.hostname:
        raise typer.BadParameter(f"{value!r} is not an http(s) URL, e.g. http://127.0.0.1:5000")
    return value


def table_or_json(value: OutputFormat) -> OutputFormat:
    """The commands whose output is a summary have no CSV form: refuse it, never ignore it."""
    if value is OutputFormat.CSV:
        raise typer.BadParameter("csv is only for `report`; this command prints table or json")
    return value


def moment_option(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_moment(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO 8601 date or date-time (e.g. 2026-11-20 or 2026-11-20T10:00Z)"
        ) from None


EndpointUrl = Annotated[
    str | None,
    typer.Option(
        "--endpoint-url",
        callback=_endpoint_url,
        help="AWS endpoint (e.g. http://127.0.0.1:5000 for an emulator). "
        "Default: the standard AWS configuration (AWS_ENDPOINT_URL if set).",
        show_default=False,
    ),
]

StreamName = Annotated[
    str,
    typer.Option("--stream", help="Kinesis stream name.", envvar="KINESIS_STREAM"),
]

SummaryFormat = Annotated[
    OutputFormat,
    typer.Option("--format", "-f", help="table or json.", callback=table_or_json),
]
"""The output option of the commands that print a summary (everything but `report`)."""
