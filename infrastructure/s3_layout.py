"""What S3 refuses of an object's key and metadata, in S3's words: shared by the S3 adapters,
which recognise S3's answers, and the in-memory ones, which must refuse the same. No boto3 here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from domain.limits import S3_KEY_BYTES, S3_METADATA_BYTES, utf8_length

KEY_TOO_LONG = "KeyTooLongError"
METADATA_TOO_LARGE = "MetadataTooLarge"
DATA_REFUSAL_CODES = frozenset({KEY_TOO_LONG, METADATA_TOO_LARGE})
"""S3's error codes (HTTP 400) for an object it refuses for its own name or description:
retrying cannot help, and neither is it a configuration error."""
NON_ASCII_METADATA = "NonAsciiMetadata"
NON_ASCII_METADATA_MESSAGE = "S3 metadata can only contain ASCII characters"
"""botocore's words (a `ParamValidationError`, before anything is sent) for metadata that is
not ASCII; the code is ours, botocore gives none."""

PREFIX_BYTES = 256
"""The longest archive or dead-letter prefix the settings take: with it, the longest shard id
and sequence numbers Kinesis gives still make keys within S3's 1,024 bytes (a test proves it)."""


@dataclass(frozen=True, slots=True)
class S3Refusal:
    """S3 refused an object for good: its error code and message."""

    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def object_problem(key: str, metadata: Mapping[str, str]) -> S3Refusal | None:
    """What S3 would answer a PutObject of `key` with `metadata`, or None when it takes it."""
    if utf8_length(key) > S3_KEY_BYTES:
        return S3Refusal(KEY_TOO_LONG, "Your key is too long")
    if not all(name.isascii() and value.isascii() for name, value in metadata.items()):
        return S3Refusal(NON_ASCII_METADATA, NON_ASCII_METADATA_MESSAGE)
    if sum(utf8_length(name) + utf8_length(value) for name, value in metadata.items()) > (
        S3_METADATA_BYTES
    ):
        return S3Refusal(
            METADATA_TOO_LARGE, "Your metadata headers exceed the maximum allowed metadata size."
        )
    return None
