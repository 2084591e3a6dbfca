"""A monotonic clock that tests move by hand, so a Lambda context's time can run out at will."""

from __future__ import annotations

import threading
import time


class SteppingClock:
    """Real monotonic time plus a jump offset: `jump` makes every deadline come sooner."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offset = 0.0

    def __call__(self) -> float:
        with self._lock:
            return time.monotonic() + self._offset

    def jump(self, seconds: float) -> None:
        with self._lock:
            self._offset += seconds
