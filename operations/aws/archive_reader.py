"""Reads the S3 event archive back for replays: lists hour partitions, streams an object's lines."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from domain.partitions import hour_partition
from infrastructure.aws.errors import translate
from infrastructure.aws.s3_archive import DEFAULT_ARCHIVE_PREFIX
from infrastructure.aws.s3_listing import listed_objects
from infrastructure.codecs import codec_for_key

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@dataclass(frozen=True, slots=True)
class ArchivedObjectSummary:
    key: str
    size: int


def hour_partitions(start: datetime, end: datetime) -> list[datetime]:
    """The starts of the hours that overlap [start, end)."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be time-zone aware")
    hour = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    hours: list[datetime] = []
    while hour < end:
        hours.append(hour)
        hour += timedelta(hours=1)
    return hours


class S3ArchiveReader:
    """Reads the archive back for replays: lists hour partitions, streams an object's lines."""

    def __init__(
        self,
        s3: S3Client,
        bucket: str,
        prefix: str = DEFAULT_ARCHIVE_PREFIX,
        page_size: int = 1000,
    ) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._prefix = prefix
        self._page_size = page_size

    def list_objects(self, start: datetime, end: datetime) -> Iterator[ArchivedObjectSummary]:
        """The objects of the hours overlapping [start, end), hour by hour, in key order.

        One prefix per hour: a replay of an afternoon lists that afternoon, not the bucket.
        """
        for hour in hour_partitions(start, end):
            prefix = f"{self._prefix}{hour_partition(hour)}"
            for entry in listed_objects(self._s3, self._bucket, prefix, self._page_size):
                yield ArchivedObjectSummary(entry["Key"], entry.get("Size", 0))

    def read_lines(self, key: str) -> Iterator[bytes]:
        """The archive lines of one object, without their line ends."""
        try:
            response = self._s3.get_object(Bucket=self._bucket, Key=key)
            blob = response["Body"].read()
        except (ClientError, BotoCoreError) as error:
            raise translate(error, "s3:GetObject") from error
        body = codec_for_key(key).decompress(blob)
        for line in body.split(b"\n"):
            if line:
                yield line
