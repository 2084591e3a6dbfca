"""Progress of a long command: a live line on a terminal, a periodic heartbeat line off it.

On a terminal, rich's progress display redraws one line in place (spinner, what is done, time
elapsed) and leaves nothing behind. Off a terminal (CI logs, `nohup`, a pipe) nothing is
redrawn: every `PROGRESS_HEARTBEAT_SECONDS` (default 10) one line says what is done so far, so
a long run is never silent and a log reads line by line. A run shorter than one period prints
nothing.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from types import TracebackType

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

DEFAULT_HEARTBEAT_SECONDS = 10.0
HEARTBEAT_VARIABLE = "PROGRESS_HEARTBEAT_SECONDS"


def heartbeat_seconds() -> float:
    """The heartbeat period off a terminal, from `PROGRESS_HEARTBEAT_SECONDS` (a bad value is
    the default: progress must never stop a command)."""
    try:
        value = float(os.environ.get(HEARTBEAT_VARIABLE, DEFAULT_HEARTBEAT_SECONDS))
    except ValueError:
        return DEFAULT_HEARTBEAT_SECONDS
    return value if value > 0 else DEFAULT_HEARTBEAT_SECONDS


class ProgressReporter:
    """`with ProgressReporter("replay from file", console) as progress: progress.update(...)`."""

    def __init__(
        self,
        label: str,
        console: Console,
        heartbeat: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        started: float | None = None,
    ) -> None:
        """`started`: the moment (on `clock`) that heartbeat lines count from, when the command
        numbers its own lines from its start (the demo); by default, when the reporter is
        entered."""
        self._label = label
        self._console = console
        self._heartbeat = heartbeat if heartbeat is not None else heartbeat_seconds()
        self._clock = clock
        self._origin = started
        self._started = clock() if started is None else started
        self._text = "nothing done yet"
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> ProgressReporter:
        if self._origin is None:
            self._started = self._clock()
        if self._console.is_terminal:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=self._console,
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(self._line(), total=None)
        else:
            self._thread = threading.Thread(
                target=self._beat, name="progress-heartbeat", daemon=True
            )
            self._thread.start()
        return self

    def update(self, text: str) -> None:
        with self._lock:
            self._text = text
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=self._line())

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()
        if self._progress is not None:
            self._progress.stop()

    def _line(self) -> str:
        with self._lock:
            return f"{self._label}: {self._text}"

    def _beat(self) -> None:
        while not self._stopped.wait(self._heartbeat):
            elapsed = self._clock() - self._started
            self._console.print(
                f"{elapsed_label(elapsed)} {self._line()}", markup=False, highlight=False
            )


def elapsed_label(seconds: float) -> str:
    """How a line off a terminal says when it was written: `[ 12.5 s]`, aligned."""
    return f"[{seconds:5.1f} s]"
