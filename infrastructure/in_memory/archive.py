"""An archive in memory: compressed objects under the same keys and metadata as in S3."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from application.ports import COMPLETE, Deadline, EventArchive, WriteReport
from domain.archiving import ArchiveObject
from infrastructure.archive_format import object_key, object_metadata
from infrastructure.codecs import ArchiveCodec, codec_for_key, codec_named


@dataclass(frozen=True, slots=True)
class StoredObject:
    key: str
    blob: bytes
    metadata: dict[str, str]
    content_encoding: str


class InMemoryEventArchive(EventArchive):
    def __init__(self, codec: ArchiveCodec | None = None, prefix: str = "") -> None:
        self._codec = codec or codec_named("gzip")
        self._prefix = prefix
        self._lock = threading.Lock()
        self._objects: dict[str, StoredObject] = {}

    def store(self, objects: Sequence[ArchiveObject], deadline: Deadline) -> WriteReport:
        unfinished: dict[str, int] = {}
        for item in objects:
            if deadline.expired():
                previous = unfinished.get(item.shard_id, item.first_sequence)
                unfinished[item.shard_id] = min(previous, item.first_sequence)
                continue
            key = object_key(self._prefix, item, self._codec)
            blob = self._codec.compress(item.body)
            with self._lock:
                self._objects[key] = StoredObject(
                    key, blob, object_metadata(item), self._codec.content_encoding
                )
        if unfinished:
            return WriteReport(unfinished, ("deadline reached while archiving",))
        return COMPLETE

    def objects(self) -> list[StoredObject]:
        with self._lock:
            return sorted(self._objects.values(), key=lambda o: o.key)

    def lines(self) -> Iterator[bytes]:
        """Every archived line, decompressed, in key order."""
        for stored in self.objects():
            yield from codec_for_key(stored.key).decompress(stored.blob).splitlines()
