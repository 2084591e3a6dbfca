"""Time as the pipeline counts it, defined once: instants as exact integer microseconds since
the Unix epoch, and the UTC hours and days that counters and the archive are windowed by."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
HOUR_US = 3_600_000_000
"""An hour in microseconds: an hour starts at a multiple of it since the epoch."""
DAY_US = 24 * HOUR_US
"""A UTC day in microseconds: a day starts at a multiple of it since the epoch."""


def epoch_microseconds(moment: datetime) -> int:
    """An aware moment as exact integer microseconds since the Unix epoch (no float rounding)."""
    return (moment - EPOCH) // MICROSECOND


def moment_of(epoch_us: int) -> datetime:
    """The UTC moment `epoch_us` microseconds after the epoch (raises OverflowError outside
    the calendar's range)."""
    return EPOCH + timedelta(microseconds=epoch_us)


def hour_of(epoch_us: int) -> int:
    """The start of the UTC hour holding `epoch_us`, in epoch microseconds."""
    return epoch_us - epoch_us % HOUR_US


def day_of(epoch_us: int) -> int:
    """The start of the UTC day holding `epoch_us`, in epoch microseconds."""
    return epoch_us - epoch_us % DAY_US


HOUR_LABEL_FORMAT = "%Y-%m-%dT%H"
"""How an hourly window is named (counters' keys, the report)."""
DAY_LABEL_FORMAT = "%Y-%m-%d"
"""How a daily window is named (counters' keys, the unique-user markers, the report)."""
