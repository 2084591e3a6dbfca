"""`forget-user`: erase users' personal data from every store that keeps it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from operations.cli.aws_access import aws_environment, build_container, run_against_aws
from operations.cli.console import EXIT_USAGE, fail, stderr_console, stdout_console
from operations.cli.options import EndpointUrl, SummaryFormat
from operations.cli.progress import ProgressReporter
from operations.cli.report_output import OutputFormat


def forget_user(
    user_id: Annotated[
        str | None,
        typer.Argument(
            metavar="USER_ID", help="The user to erase (or --from-file).", show_default=False
        ),
    ] = None,
    from_file: Annotated[
        Path | None,
        typer.Option(
            "--from-file", metavar="IDS.txt", help="Erase every user id of a file, one a line."
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Find and count; write and delete nothing.")
    ] = False,
    output: SummaryFormat = OutputFormat.TABLE,
    endpoint_url: EndpointUrl = None,
) -> None:
    """Erase users: their unique-user markers, event-id items, replay claims, dead letters (queue
    and S3) and archive lines. Counters (event counts, sums) stay as they are: they are
    aggregates, not personal data; unique-user counts lose the erased users.

    Reads the whole archive once per run (however many users): see docs/cli.md for the cost.
    Running it again touches nothing; an interrupted run is finished by running it again."""
    from operations.cli.erasure import IdFileError, read_user_ids, report_lines

    if (user_id is None) == (from_file is None):
        raise typer.BadParameter("give exactly one of USER_ID or --from-file", param_hint="USER_ID")
    if user_id is not None:
        if not user_id.strip():
            raise typer.BadParameter("a user id is not empty", param_hint="USER_ID")
        users = [user_id]
    else:
        assert from_file is not None
        try:
            users = read_user_ids(from_file)
        except IdFileError as error:
            fail(str(error), EXIT_USAGE)
    reporter = ProgressReporter("forget-user", stderr_console())
    with aws_environment(endpoint_url), reporter:
        container = build_container()
        eraser = container.user_eraser(on_progress=reporter.update)
        report = run_against_aws(lambda: eraser.erase(users, dry_run=dry_run))
    if output is OutputFormat.JSON:
        sys.stdout.write(json.dumps(report.as_dict(), indent=2) + "\n")
        return
    console = stdout_console()
    for line in report_lines(report):
        console.print(line, markup=False)
