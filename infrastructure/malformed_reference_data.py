"""Malformed reference data, skipped alike by every repository: counted, and logged with what
was skipped, its experiment and why, never with the user ids it holds (personal data)."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass

from pydantic import ValidationError

logger = logging.getLogger(__name__)

_LOGGED_ID_CHARS = 64
"""An experiment id is logged up to this many characters (a malformed one may be huge)."""


def validation_reason(error: ValidationError) -> str:
    """Where and why a model refused an item, without the values it refused (a user id, say)."""
    return "; ".join(
        f"{'.'.join(str(part) for part in detail['loc']) or 'item'}: {detail['msg']}"
        for detail in error.errors()
    )


@dataclass(frozen=True, slots=True)
class Skipped:
    what: str
    """`assignment`, `assignment item` (a user's whole item), `experiment`."""
    experiment_id: str | None
    reason: str


class MalformedReferenceData:
    """Counts the items a repository skipped and logs each lookup's once, one WARNING line per
    (kind, experiment, reason) with how many."""

    def __init__(self, source: str) -> None:
        self._source = source
        self._lock = threading.Lock()
        self.count = 0

    def report(self, skipped: list[Skipped]) -> None:
        if not skipped:
            return
        with self._lock:
            self.count += len(skipped)
        for (what, experiment_id, reason), count in sorted(
            Counter((s.what, s.experiment_id, s.reason) for s in skipped).items(),
            key=lambda entry: (entry[0][0], entry[0][1] or "", entry[0][2]),
        ):
            experiment = _shown(experiment_id)
            logger.warning(
                "skipped %d malformed %s (experiment %s) in %s: %s",
                count,
                what,
                experiment,
                self._source,
                reason,
                extra={
                    "source": self._source,
                    "skipped": count,
                    "kind": what,
                    "experiment_id": experiment,
                    "reason": reason,
                },
            )


def _shown(experiment_id: str | None) -> str:
    if experiment_id is None:
        return "unknown"
    if len(experiment_id) <= _LOGGED_ID_CHARS:
        return repr(experiment_id)
    return f"{experiment_id[:_LOGGED_ID_CHARS]!r}... ({len(experiment_id)} characters)"
