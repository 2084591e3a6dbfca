"""The storage partitions of time, defined once: the archive keeps its objects under the hour
of their events' time, the dead letters in S3 under the day they arrived (Hive-style
`year=/month=/day=[/hour=]/` prefixes, which Athena's partition projection reads)."""

from __future__ import annotations

from datetime import datetime

from domain.time import moment_of

DAY_PARTITION_FORMAT = "year=%Y/month=%m/day=%d/"
HOUR_PARTITION_FORMAT = DAY_PARTITION_FORMAT + "hour=%H/"


def hour_partition(moment: datetime) -> str:
    """The archive partition of the hour holding `moment`, a UTC moment."""
    return moment.strftime(HOUR_PARTITION_FORMAT)


def hour_partition_of(hour_us: int) -> str:
    """The archive partition of the hour starting `hour_us` microseconds after the epoch
    (raises OverflowError or ValueError for an hour outside the calendar's range)."""
    return moment_of(hour_us).strftime(HOUR_PARTITION_FORMAT)


def day_partition(moment: datetime) -> str:
    """The partition of the day holding `moment`, a UTC moment (dead letters kept in S3)."""
    return moment.strftime(DAY_PARTITION_FORMAT)
