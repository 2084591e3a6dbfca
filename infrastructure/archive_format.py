"""How an archive object is named and described, shared by every archive adapter."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from domain.archiving import (
    ARCHIVE_SCHEMA_VERSION,
    ArchiveLineError,
    ArchiveObject,
    record_from_archive_line,
)
from infrastructure.codecs import ArchiveCodec


def object_key(prefix: str, item: ArchiveObject, codec: ArchiveCodec) -> str:
    """`<prefix>year=/month=/day=/hour=/<shard>-<first>-<last>-<digest><ext>`.

    Shard and sequence range keep two shards or two different deliveries apart; the digest of
    the lines keeps apart two deliveries of the same range that enriched differently. An
    identical retry gets the identical name and simply rewrites the same bytes.
    """
    digest = hashlib.sha256(item.body).hexdigest()[:16]
    return f"{prefix}{item.name_stem}-{digest}{codec.extension}"


def object_metadata(item: ArchiveObject) -> dict[str, str]:
    return {
        "event-count": str(item.event_count),
        "shard-id": item.shard_id,
        "first-sequence-number": str(item.first_sequence),
        "last-sequence-number": str(item.last_sequence),
        "schema-version": ARCHIVE_SCHEMA_VERSION,
    }


def rewritten_metadata(old: Mapping[str, str], lines: Sequence[bytes]) -> dict[str, str]:
    """The metadata of an archive object rewritten to hold only `lines` (erasure): the event
    count and sequence range describe what it now holds; the rest is kept."""
    metadata = dict(old)
    metadata["event-count"] = str(len(lines))
    sequences = []
    for line in lines:
        try:
            sequences.append(record_from_archive_line(line).coordinates.sequence)
        except (ArchiveLineError, ValueError):
            continue
    if sequences:
        metadata["first-sequence-number"] = str(min(sequences))
        metadata["last-sequence-number"] = str(max(sequences))
    return metadata
