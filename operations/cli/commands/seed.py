"""`seed`: experiments and assignments from a seed file into their tables."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from operations.cli.aws_access import (
    aws_environment,
    build_container,
    real_account,
    run_against_aws,
)
from operations.cli.console import EXIT_USAGE, fail, stderr_console, stdout_console
from operations.cli.options import EndpointUrl

if TYPE_CHECKING:
    from operations.aws.reference_data import Changes


def seed(
    file: Annotated[
        Path,
        typer.Argument(help="Seed file: JSON with experiments and assignments (docs/cli.md)."),
    ],
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Validate the file and say what would change; write nothing."
        ),
    ] = False,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="Write each user's item whole: assignments of experiments not in the file go.",
        ),
    ] = False,
    yes: Annotated[
        bool,
        typer.Option("--yes", help="Write to a real AWS account (no --endpoint-url) anyway."),
    ] = False,
    endpoint_url: EndpointUrl = None,
) -> None:
    """Load experiments and assignments into their DynamoDB tables from a JSON seed file.

    A user's assignments are merged: each experiment of the file is set in the user's item, the
    user's other assignments stay (`--replace` writes the item whole). An experiment's name,
    status and variants are set; its other attributes stay. What is already as the file says is
    not written again. Without `--endpoint-url` (or AWS_ENDPOINT_URL) the tables are those of the
    account your credentials name, and `seed` writes there only with `--yes`."""
    from operations.seed_file import SeedFileError, load_seed

    try:
        data = load_seed(file)
    except SeedFileError as error:
        console = stderr_console()
        console.print(f"[bold red]error:[/bold red] invalid seed file {error.source}:")
        for problem in error.problems:
            console.print(f"  {problem}", markup=False)
        raise typer.Exit(EXIT_USAGE) from None
    if not dry_run and not yes and real_account(endpoint_url):
        fail(
            "seed would write to the AWS account of your credentials (no --endpoint-url or "
            "AWS_ENDPOINT_URL): add --yes to do so, or --dry-run to see what would change",
            EXIT_USAGE,
        )
    users = len({a.user_id for a in data.assignments})
    with aws_environment(endpoint_url):
        container = build_container()
        writer = container.reference_data_writer()
        if dry_run:
            experiments = run_against_aws(lambda: writer.plan_experiments(data.experiments))
            assignments = run_against_aws(
                lambda: writer.plan_assignments(data.assignments, replace=replace)
            )
        else:
            experiments = run_against_aws(lambda: writer.write_experiments(data.experiments))
            assignments = run_against_aws(
                lambda: writer.write_assignments(data.assignments, replace=replace)
            )
    console = stdout_console()
    console.print(
        f"{'would write (dry run, nothing written)' if dry_run else 'seeded'}: "
        f"{len(data.experiments)} experiments ({_changes(experiments)}), "
        f"{len(data.assignments)} assignments of {users} users ({_changes(assignments)})",
        markup=False,
    )
    if assignments.kept:
        console.print(
            f"kept: {assignments.kept} assignments of these users to experiments not in the file",
            markup=False,
        )
    if assignments.removed:
        verb = "would remove" if dry_run else "removed"
        console.print(
            f"{verb} (--replace): {assignments.removed} assignments of these users to "
            "experiments not in the file",
            markup=False,
        )


def _changes(changes: Changes) -> str:
    return f"{changes.new} new, {changes.changed} changed, {changes.unchanged} unchanged"
