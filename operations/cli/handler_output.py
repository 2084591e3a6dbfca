"""Running the Lambda handler inside a command without mixing its output into the command's."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout


@contextmanager
def lambda_output_to_stderr() -> Iterator[None]:
    """The handler's logs and EMF metrics go to stderr, leaving stdout to the command's result."""
    from entrypoints import lambda_handler

    handler = lambda_handler.logger.registered_handler
    if not isinstance(handler, logging.StreamHandler):
        with redirect_stdout(sys.stderr):
            yield
        return
    # Swapped without setStream(), which would flush a stream its owner may have closed.
    previous = handler.stream
    handler.stream = sys.stderr
    try:
        with redirect_stdout(sys.stderr):
            yield
    finally:
        handler.stream = previous
