"""Archive compression codecs: gzip by default (every tool reads it), zstd when chosen (cheaper)."""

from __future__ import annotations

import gzip
import io
from dataclasses import dataclass
from enum import StrEnum

import zstandard


class CodecName(StrEnum):
    GZIP = "gzip"
    ZSTD = "zstd"


@dataclass(frozen=True, slots=True)
class ArchiveCodec:
    name: CodecName
    level: int

    @property
    def extension(self) -> str:
        return ".jsonl.gz" if self.name is CodecName.GZIP else ".jsonl.zst"

    @property
    def content_encoding(self) -> str:
        return "gzip" if self.name is CodecName.GZIP else "zstd"

    def compress(self, body: bytes) -> bytes:
        if self.name is CodecName.GZIP:
            # mtime=0: the same lines always compress to the same bytes, so a retried write is
            # byte-identical and its content digest (part of the object name) is stable.
            return gzip.compress(body, compresslevel=self.level, mtime=0)
        return zstandard.ZstdCompressor(level=self.level).compress(body)

    def decompress(self, blob: bytes) -> bytes:
        if self.name is CodecName.GZIP:
            return gzip.decompress(blob)
        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(blob)) as reader:
            return reader.read()


def codec_named(name: str, level: int | None = None) -> ArchiveCodec:
    codec = CodecName(name)
    default_level = 6 if codec is CodecName.GZIP else 3
    return ArchiveCodec(codec, default_level if level is None else level)


def codec_for_key(key: str) -> ArchiveCodec:
    return codec_named("zstd" if key.endswith(".zst") else "gzip")
