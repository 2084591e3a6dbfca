"""Everything a run wrote where logs go: log records at or above a level, the Powertools
logger's JSON lines, and warnings, as one text to search."""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
from aws_lambda_powertools import Logger

_FORMATTER = logging.Formatter("%(levelname)s %(name)s %(message)s")


@dataclass
class CapturedOutput:
    powertools: io.StringIO = field(default_factory=io.StringIO)
    """What the Powertools logger's handler wrote (its JSON lines)."""
    warned: list[warnings.WarningMessage] = field(default_factory=list)

    def text(self, caplog: pytest.LogCaptureFixture, *more: str) -> str:
        """The records caplog kept, each with its traceback and every attribute (`extra`
        included), the Powertools lines, the warnings and `more`."""
        records = [f"{_FORMATTER.format(record)} {vars(record)!r}" for record in caplog.records]
        shown = [f"{w.category.__name__}: {w.message}" for w in self.warned]
        return "\n".join([*records, self.powertools.getvalue(), *shown, *more])


@contextmanager
def captured_at(
    level: str, logger: Logger, caplog: pytest.LogCaptureFixture
) -> Iterator[CapturedOutput]:
    """Log records at `level` and above (every logger's, the Powertools logger's included), the
    Powertools logger's output at `level`, and every warning, for the block's duration."""
    captured = CapturedOutput()
    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    previous_stream, previous_level = handler.stream, logger.log_level
    # Swapped without setStream(), which would flush a stream its owner may have closed.
    handler.stream = captured.powertools
    logger.setLevel(level)
    caplog.set_level(level)
    try:
        with warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")
            yield captured
            captured.warned.extend(warned)
    finally:
        handler.stream = previous_stream
        logger.setLevel(previous_level)
