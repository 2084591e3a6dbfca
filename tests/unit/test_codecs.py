"""The archive codecs: what each setting writes, that it is standard and stable, what is refused."""

from __future__ import annotations

import gzip
import io
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from entrypoints.settings import Settings
from infrastructure.codecs import (
    LEVELS,
    ArchiveCodec,
    CodecName,
    Compressor,
    codec_for_key,
    codec_named,
)

LINES = b"".join(
    b'{"event_id":"%d","experiment_id":"checkout-%d","variant":"%s","value":%d.25}\n'
    % (i, i % 7, b"treatment" if i % 3 else b"control", i)
    for i in range(2_000)
)

EVERY_LEVEL = [
    ArchiveCodec(compressor, level)
    for compressor, levels in LEVELS.items()
    for level in levels
    if compressor is not Compressor.ZSTD or level in (levels[0], 3, 19, levels[-1])
]
"""Every gzip level; zstd's first, default, last regular and last ultra level (each of its
ultra levels takes a second to set up, and they differ from each other in parameters only)."""


def test_the_default_gzip_codec_is_written_by_isa_l_at_level_2() -> None:
    codec = codec_named("gzip")

    assert (codec.compressor, codec.level, codec.label) == (Compressor.ISAL, 2, "gzip-isal-2")
    assert (codec.extension, codec.content_encoding) == (".jsonl.gz", "gzip")


def test_a_gzip_level_that_is_set_is_zlib_at_that_level_byte_for_byte() -> None:
    for level in range(1, 10):
        codec = codec_named("gzip", level)

        assert (codec.compressor, codec.level) == (Compressor.ZLIB, level)
        assert codec.compress(LINES) == gzip.compress(LINES, compresslevel=level, mtime=0)


def test_zstd_keeps_level_3_by_default_and_takes_a_level_that_is_set() -> None:
    assert codec_named("zstd") == ArchiveCodec(Compressor.ZSTD, 3)
    assert codec_named("zstd", 19) == ArchiveCodec(Compressor.ZSTD, 19)
    assert codec_named("zstd").label == "zstd-3"


def test_gzip_written_by_isa_l_is_standard_gzip_that_the_standard_library_reads() -> None:
    blob = codec_named("gzip").compress(LINES)

    assert blob[:3] == b"\x1f\x8b\x08"  # gzip magic, deflate
    assert gzip.decompress(blob) == LINES
    assert zlib.decompressobj(wbits=31).decompress(blob) == LINES
    assert len(blob) < len(LINES) / 4


@pytest.mark.parametrize("codec", EVERY_LEVEL, ids=lambda codec: codec.label)
def test_every_supported_level_round_trips_and_gzip_ones_are_read_by_the_standard_library(
    codec: ArchiveCodec,
) -> None:
    blob = codec.compress(LINES)

    assert codec.decompress(blob) == LINES
    if codec.name is CodecName.GZIP:
        assert gzip.decompress(blob) == LINES


@pytest.mark.parametrize("codec", EVERY_LEVEL, ids=lambda codec: codec.label)
def test_compression_is_deterministic_so_a_retried_write_stores_the_same_bytes(
    codec: ArchiveCodec,
) -> None:
    first = codec.compress(LINES)
    again = ArchiveCodec(codec.compressor, codec.level).compress(LINES)

    assert first == again
    if codec.name is CodecName.GZIP:
        assert first[4:8] == b"\x00\x00\x00\x00"  # mtime 0: no clock in the bytes


@pytest.mark.parametrize(
    ("name", "level"),
    [("gzip", 0), ("gzip", 10), ("gzip", -1), ("zstd", 0), ("zstd", 23), ("zstd", -5)],
)
def test_a_level_the_codec_does_not_have_is_refused_with_the_levels_it_has(
    name: str, level: int
) -> None:
    with pytest.raises(ValueError, match=f"{name} has no compression level {level}: set 1-"):
        codec_named(name, level)


def test_isa_l_refuses_levels_above_3_when_built_directly() -> None:
    with pytest.raises(ValueError, match="ISA-L compression level must be 0-3, not 4"):
        ArchiveCodec(Compressor.ISAL, 4)


def test_the_settings_refuse_an_archive_level_when_read_not_at_the_first_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ARCHIVE_CODEC", "gzip")
    monkeypatch.setenv("ARCHIVE_COMPRESSION_LEVEL", "12")

    with pytest.raises(ValidationError, match="gzip has no compression level 12"):
        Settings()


def test_the_settings_accept_the_documented_levels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARCHIVE_CODEC", "zstd")
    monkeypatch.setenv("ARCHIVE_COMPRESSION_LEVEL", "22")

    assert Settings().archive_compression_level == 22
    assert Settings(archive_codec="gzip", archive_compression_level=9).archive_codec == "gzip"
    assert Settings(archive_codec="gzip", archive_compression_level=None).archive_codec == "gzip"


def test_objects_written_by_the_former_zlib_codec_still_decompress() -> None:
    written_by_zlib_level_3 = gzip.compress(LINES, compresslevel=3, mtime=0)

    assert codec_for_key("x.jsonl.gz").decompress(written_by_zlib_level_3) == LINES


def test_gzip_written_by_other_tools_with_a_name_and_a_time_in_the_header_decompresses() -> None:
    buffer = io.BytesIO()
    with gzip.GzipFile(
        filename="events.jsonl", mode="wb", fileobj=buffer, mtime=1_700_000_000
    ) as f:
        f.write(LINES)

    assert buffer.getvalue()[3] & 0x08  # FNAME flag: the header carries the file's name
    assert codec_named("gzip").decompress(buffer.getvalue()) == LINES


def test_a_gzip_of_several_members_decompresses_to_all_of_them_in_order() -> None:
    head, tail = LINES[:30_000], LINES[30_000:]
    members = codec_named("gzip").compress(head) + gzip.compress(tail, compresslevel=9)

    assert codec_named("gzip").decompress(members) == LINES


def test_a_truncated_gzip_object_raises_instead_of_returning_part_of_its_lines() -> None:
    blob = codec_named("gzip").compress(LINES)

    with pytest.raises(EOFError):
        codec_named("gzip").decompress(blob[:-5])


def test_the_key_extension_chooses_the_codec_that_reads_an_object() -> None:
    assert codec_for_key("a/b.jsonl.zst").decompress(codec_named("zstd").compress(LINES)) == LINES
    assert codec_for_key("a/b.jsonl.gz").decompress(codec_named("gzip", 6).compress(LINES)) == LINES


@settings(max_examples=60, deadline=None)
@given(body=st.binary(max_size=20_000), codec=st.sampled_from(EVERY_LEVEL))
def test_any_bytes_round_trip_through_every_codec_and_level(
    body: bytes, codec: ArchiveCodec
) -> None:
    blob = codec.compress(body)

    assert codec.decompress(blob) == body
    assert codec_for_key("k" + codec.extension).decompress(blob) == body
    if codec.name is CodecName.GZIP:
        assert gzip.decompress(blob) == body
