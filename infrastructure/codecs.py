"""Archive compression codecs: gzip by default (every tool reads it), zstd when chosen (smaller).

gzip is written by ISA-L (Intel's igzip, through python-isal) unless a level is set: ISA-L makes
standard gzip (one member, RFC 1952) at about a fifth of zlib's CPU, but knows only levels 0-3.
A level that is set keeps the meaning it has in zlib and in `gzip -N`, 1-9, and is written by
zlib. Reading does not depend on the writer: any gzip (several members, zlib's or gzip(1)'s
objects) is read by ISA-L's decompressor.
"""

from __future__ import annotations

import gzip
import io
from dataclasses import dataclass
from enum import StrEnum

import zstandard
from isal import igzip


class CodecName(StrEnum):
    GZIP = "gzip"
    ZSTD = "zstd"


class Compressor(StrEnum):
    """The library that writes a codec's bytes."""

    ISAL = "isal"
    ZLIB = "zlib"
    ZSTD = "zstd"


LEVELS: dict[Compressor, range] = {
    Compressor.ISAL: range(0, 4),
    Compressor.ZLIB: range(1, 10),
    Compressor.ZSTD: range(1, 23),
}
"""The levels each compressor is used with (zlib's 0 stores without compressing: not offered)."""

_WRITER_NAME = {Compressor.ISAL: "ISA-L", Compressor.ZLIB: "zlib", Compressor.ZSTD: "zstd"}

_FORMAT: dict[Compressor, CodecName] = {
    Compressor.ISAL: CodecName.GZIP,
    Compressor.ZLIB: CodecName.GZIP,
    Compressor.ZSTD: CodecName.ZSTD,
}


@dataclass(frozen=True, slots=True)
class ArchiveCodec:
    compressor: Compressor
    level: int

    def __post_init__(self) -> None:
        levels = LEVELS[self.compressor]
        if self.level not in levels:
            raise ValueError(
                f"{_WRITER_NAME[self.compressor]} compression level must be "
                f"{levels.start}-{levels.stop - 1}, not {self.level}"
            )

    @property
    def name(self) -> CodecName:
        return _FORMAT[self.compressor]

    @property
    def label(self) -> str:
        """`gzip-isal-2`, `gzip-zlib-6`, `zstd-3`: format, writer when it matters, level."""
        if self.name is CodecName.GZIP:
            return f"gzip-{self.compressor.value}-{self.level}"
        return f"{self.name.value}-{self.level}"

    @property
    def extension(self) -> str:
        return ".jsonl.gz" if self.name is CodecName.GZIP else ".jsonl.zst"

    @property
    def content_encoding(self) -> str:
        return self.name.value

    def compress(self, body: bytes) -> bytes:
        # mtime=0: the same lines always compress to the same bytes, so a retried write is
        # byte-identical (the object's name holds a digest of the lines, not of these bytes).
        if self.compressor is Compressor.ISAL:
            return igzip.compress(body, compresslevel=self.level, mtime=0)
        if self.compressor is Compressor.ZLIB:
            return gzip.compress(body, compresslevel=self.level, mtime=0)
        return zstandard.ZstdCompressor(level=self.level).compress(body)

    def decompress(self, blob: bytes) -> bytes:
        if self.name is CodecName.GZIP:
            # Every member, whoever wrote it; a corrupt or truncated object raises. python-isal
            # leaves this one function unannotated (it returns bytes).
            decompressed: bytes = igzip.decompress(blob)  # type: ignore[no-untyped-call]
            return decompressed
        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(blob)) as reader:
            return reader.read()


DEFAULT_CODECS: dict[CodecName, ArchiveCodec] = {
    CodecName.GZIP: ArchiveCodec(Compressor.ISAL, 2),
    CodecName.ZSTD: ArchiveCodec(Compressor.ZSTD, 3),
}
"""What each codec writes when no level is set, chosen on the archive objects of one reference
batch (lines of 756 bytes; docs/performance.md "Codecs", `make bench`). CPU per event, ratio:

- gzip: ISA-L level 2, 0.86 µs, 6.78. ISA-L 0: 0.84 µs, 4.96; ISA-L 1: 0.84 µs, 6.74; ISA-L 3:
  2.13 µs, 6.69 (its slower strategy does not pay on objects this small). zlib, the writer of the
  levels one sets: 3 (the previous default) 4.34 µs, 6.93; 6: 9.01 µs, 7.94; 9: 24.8 µs, 8.39.
  ISA-L 2 costs a fifth of zlib 3 for objects 2% larger.
- zstd: level 3, 1.64 µs, 7.89 (level 1: 1.19 µs, 8.30): zlib 6's ratio at a fifth of its CPU.
"""


def codec_named(name: str, level: int | None = None) -> ArchiveCodec:
    """The codec `ARCHIVE_CODEC`/`ARCHIVE_COMPRESSION_LEVEL` ask for; ValueError if none fits.

    gzip: no level -> ISA-L level 2; a level 1-9 -> zlib at that level (as `gzip -N`).
    zstd: no level -> 3; a level 1-22 -> that level.
    """
    codec = CodecName(name)
    if level is None:
        return DEFAULT_CODECS[codec]
    compressor = Compressor.ZLIB if codec is CodecName.GZIP else Compressor.ZSTD
    levels = LEVELS[compressor]
    if level not in levels:
        default = DEFAULT_CODECS[codec]
        raise ValueError(
            f"{codec.value} has no compression level {level}: set "
            f"{levels.start}-{levels.stop - 1} ({_WRITER_NAME[compressor]}'s levels), or none for "
            f"{_WRITER_NAME[default.compressor]} level {default.level}"
        )
    return ArchiveCodec(compressor, level)


def codec_for_key(key: str) -> ArchiveCodec:
    """A codec that reads the object stored under `key` (by its extension)."""
    return codec_named("zstd" if key.endswith(".zst") else "gzip")
