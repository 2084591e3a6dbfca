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


DEFAULT_LEVELS: dict[CodecName, int] = {CodecName.GZIP: 3, CodecName.ZSTD: 3}
"""Chosen on the reference workload's archive lines (docs/performance.md, `make bench`): gzip 3
is the last level of zlib's fast deflate strategy, as cheap as level 1 with a better ratio and
about half the CPU of level 6 for objects some 13% larger; zstd 3 beats gzip 6's ratio at a
third of gzip 3's CPU."""


def codec_named(name: str, level: int | None = None) -> ArchiveCodec:
    codec = CodecName(name)
    default_level = DEFAULT_LEVELS[codec]
    return ArchiveCodec(codec, default_level if level is None else level)


def codec_for_key(key: str) -> ArchiveCodec:
    return codec_named("zstd" if key.endswith(".zst") else "gzip")
