"""An archive in memory: compressed objects under the same keys and metadata as in S3, written
by the pipeline (`EventArchive`) and edited by erasure (`ArchiveEditor`)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from application.ports import (
    COMPLETE,
    ArchiveEditor,
    ArchiveObjectLines,
    Deadline,
    EventArchive,
    RecordId,
    WriteReport,
)
from application.shard_cut import ShardCut
from domain.archiving import ArchiveObject
from domain.errors import ArchiveObjectChangedError, InfrastructureConfigurationError
from infrastructure.archive_format import object_key, object_metadata, rewritten_metadata
from infrastructure.codecs import ArchiveCodec, codec_for_key, codec_named
from infrastructure.s3_layout import object_problem


@dataclass(frozen=True, slots=True)
class StoredObject:
    key: str
    blob: bytes
    metadata: dict[str, str]
    content_encoding: str
    version: str
    """Changes on every write of the key, as S3's ETag does (erasure's writes are conditional
    on it)."""


class InMemoryEventArchive(EventArchive, ArchiveEditor):
    """Refuses, as S3 does, an object whose key or metadata S3 would refuse (`object_problem`):
        its records are reported refused, the other objects are stored. Reading an object that is
        not there fails as S3's NoSuchKey does (through the S3 adapter: a configuration error). Like
    S3 with If-Match, a rewrite or a deletion made from a stale reading is refused
    (`ArchiveObjectChangedError`)."""

    def __init__(self, codec: ArchiveCodec | None = None, prefix: str = "") -> None:
        self._codec = codec or codec_named("gzip")
        self._prefix = prefix
        self._lock = threading.Lock()
        self._objects: dict[str, StoredObject] = {}
        self._versions = itertools.count(1)

    def store(self, objects: Sequence[ArchiveObject], deadline: Deadline) -> WriteReport:
        late: list[RecordId] = []
        refused: dict[RecordId, str] = {}
        for item in objects:
            if deadline.expired():
                late.append((item.shard_id, item.first_sequence))
                continue
            key = object_key(self._prefix, item, self._codec)
            metadata = object_metadata(item)
            problem = object_problem(key, metadata)
            if problem is not None:
                refused.update(
                    ((item.shard_id, sequence), str(problem)) for sequence in item.sequences
                )
                continue
            blob = self._codec.compress(item.body)
            with self._lock:
                self._objects[key] = StoredObject(
                    key, blob, metadata, self._codec.content_encoding, self._next_version()
                )
        if late or refused:
            problems = ("deadline reached while archiving",) if late else ()
            return WriteReport(ShardCut.of(late), problems, refused)
        return COMPLETE

    def objects(self) -> list[StoredObject]:
        with self._lock:
            return sorted(self._objects.values(), key=lambda o: o.key)

    def lines(self) -> Iterator[bytes]:
        """Every archived line, decompressed, in key order."""
        for stored in self.objects():
            yield from codec_for_key(stored.key).decompress(stored.blob).splitlines()

    # -- ArchiveEditor ---------------------------------------------------------------------------

    def object_keys(self) -> Iterator[str]:
        with self._lock:
            keys = sorted(key for key in self._objects if key.startswith(self._prefix))
        yield from keys

    def read_lines(self, key: str) -> ArchiveObjectLines:
        with self._lock:
            stored = self._objects.get(key)
        if stored is None:
            raise InfrastructureConfigurationError(
                "s3:GetObject", "NoSuchKey: The specified key does not exist."
            )
        lines = codec_for_key(key).decompress(stored.blob).splitlines()
        return ArchiveObjectLines(tuple(lines), stored.version)

    def replace(self, key: str, lines: Sequence[bytes], version: str) -> None:
        if not lines:
            raise ValueError("an archive object holds at least one line: delete it instead")
        with self._lock:
            old = self._objects.get(key)
            if old is None or old.version != version:
                raise ArchiveObjectChangedError(key)
            metadata = rewritten_metadata(old.metadata, lines)
            problem = object_problem(key, metadata)
            if problem is not None:
                raise InfrastructureConfigurationError("s3:PutObject", str(problem))
            codec = codec_for_key(key)
            blob = codec.compress(b"".join(line + b"\n" for line in lines))
            self._objects[key] = StoredObject(
                key, blob, metadata, codec.content_encoding, self._next_version()
            )

    def delete(self, key: str, version: str) -> None:
        with self._lock:
            old = self._objects.get(key)
            if old is None:
                return
            if old.version != version:
                raise ArchiveObjectChangedError(key)
            del self._objects[key]

    def _next_version(self) -> str:
        return f"v{next(self._versions)}"
