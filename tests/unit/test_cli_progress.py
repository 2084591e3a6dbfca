"""The progress of long commands: a live line on a terminal, whole heartbeat lines off it."""

from __future__ import annotations

import io
import re
import time

import pytest
from rich.console import Console

from operations.cli.progress import (
    DEFAULT_HEARTBEAT_SECONDS,
    ProgressReporter,
    heartbeat_seconds,
)


def console(terminal: bool) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=terminal, width=100), out


def wait_for(condition: object, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.01)
    raise AssertionError("timed out")


def test_off_a_terminal_each_heartbeat_is_one_whole_line_with_the_latest_progress() -> None:
    shown, out = console(terminal=False)
    with ProgressReporter("replay from file", shown, heartbeat=0.02) as progress:
        progress.update("10 records")
        wait_for(lambda: "10 records" in out.getvalue())
        progress.update("20 records")
        wait_for(lambda: "20 records" in out.getvalue())

    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert all(line.startswith("[") and "] replay from file: " in line for line in lines)
    assert lines[-1].endswith("20 records")


def test_heartbeat_lines_count_from_the_commands_start_when_given_it() -> None:
    shown, out = console(terminal=False)
    with ProgressReporter(
        "draining", shown, heartbeat=0.02, clock=lambda: 112.5, started=100.0
    ) as progress:
        progress.update("1,000 records done")
        wait_for(lambda: "1,000 records done" in out.getvalue())

    assert out.getvalue().splitlines()[-1] == "[ 12.5 s] draining: 1,000 records done"


def test_a_run_shorter_than_one_heartbeat_prints_nothing() -> None:
    shown, out = console(terminal=False)
    with ProgressReporter("consume", shown, heartbeat=60) as progress:
        progress.update("done")
    assert out.getvalue() == ""


def test_on_a_terminal_the_line_is_redrawn_live_without_heartbeat_lines() -> None:
    shown, out = console(terminal=True)
    with ProgressReporter("consume", shown, heartbeat=0.01) as progress:
        progress.update("1,500 records done")
        wait_for(lambda: "1,500 records done" in out.getvalue())
    assert not re.search(r"\[ *[\d.]+ s\] consume", out.getvalue()), "a heartbeat on a terminal"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("2.5", 2.5), ("0", DEFAULT_HEARTBEAT_SECONDS), ("soon", DEFAULT_HEARTBEAT_SECONDS)],
)
def test_the_heartbeat_period_comes_from_the_environment(
    value: str, expected: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROGRESS_HEARTBEAT_SECONDS", value)
    assert heartbeat_seconds() == expected
