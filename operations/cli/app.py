"""`event-processor`: the command line of the people who run the pipeline.

Every command that talks to AWS takes `--endpoint-url` (default: the standard AWS configuration)
and reads the same environment variables as the Lambda (entrypoints.settings.Settings). Each
command is a module of `operations.cli.commands`; this one assembles them.

Exit codes: 0 success; 1 the work ran and failures were reported (or a back end failed);
2 bad usage: unknown options, bad values, unreadable or invalid input files.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import typer
from typer.core import TyperGroup

from operations.cli.commands import (
    consume,
    demo,
    forget_user,
    invoke,
    provision,
    put,
    replay,
    report,
    seed,
)
from operations.cli.console import EXIT_FAILURES, EXIT_OK, stderr_console


class _OneLineErrors(TyperGroup):
    """A usage error is one line on stderr (`error: ...`, with where to find help) and exit code
    2, instead of a boxed panel; everything else is as Typer does it."""

    # click declares `main` as two overloads on `standalone_mode`; one body serves both.
    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.Abort:
            stderr_console().print("aborted", markup=False)
            sys.exit(EXIT_FAILURES)
        except typer.TyperException as error:  # Typer's usage and parameter errors
            if type(error).__name__ == "NoArgsIsHelpError":
                getattr(error, "show")()  # noqa: B009 (the help, as Typer shows it)
                sys.exit(error.exit_code)
            context = getattr(error, "ctx", None)
            hint = f" (see '{context.command_path} -h')" if context is not None else ""
            format_message = getattr(error, "format_message", None)
            message = format_message() if callable(format_message) else str(error)
            stderr_console().print(f"error: {message}{hint}", markup=False)
            sys.exit(error.exit_code)
        sys.exit(code if isinstance(code, int) else EXIT_OK)


app = typer.Typer(
    cls=_OneLineErrors,
    name="event-processor",
    help="Run, feed, replay and report on the Experimently event processor.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


# Registered in the order `--help` lists them.
app.command()(report.report)
app.command()(provision.provision)
app.command()(seed.seed)
app.command()(put.put)
app.command()(invoke.invoke)
app.command()(replay.replay)
app.command("forget-user")(forget_user.forget_user)
app.command()(consume.consume)
app.command()(demo.demo)


def main() -> None:
    app()
