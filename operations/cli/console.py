"""Where the command line writes: results to stdout, messages to stderr, and its exit codes."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from typing import NoReturn

import typer
from rich.console import Console

from operations.cli.report_output import OutputFormat

PIPED_WIDTH = 160
EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def stdout_console() -> Console:
    # rich colours only a terminal and honours NO_COLOR; results go to stdout, messages to stderr.
    # Piped into a file or a pager, tables get room instead of rich's default 80 columns.
    console = Console(highlight=False, soft_wrap=True)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPED_WIDTH
    return console


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, code: int = EXIT_FAILURES) -> NoReturn:
    stderr_console().print(f"[bold red]error:[/bold red] {message}", markup=True)
    raise typer.Exit(code)


def print_summary(summary: Mapping[str, object], output: OutputFormat) -> None:
    if output is OutputFormat.JSON:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
        return
    console = stdout_console()
    for name, value in summary.items():
        if isinstance(value, Mapping):
            text = ", ".join(f"{k} {v}" for k, v in value.items()) or "none"
        elif isinstance(value, list):
            text = "; ".join(str(v) for v in value) or "none"
        else:
            text = str(value)
        console.print(f"{name.replace('_', ' '):<17} {text}", markup=False)
