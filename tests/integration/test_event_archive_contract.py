"""The EventArchive contract, run against the in-memory archive and S3 (moto server); then the
S3 adapter's own failure handling and the archive reader used by replays."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta

import boto3
import pytest
from mypy_boto3_s3 import S3Client

from application.ports import COMPLETE, Deadline, EventArchive, NoDeadline
from application.shard_cut import ShardCut
from domain.archiving import ARCHIVE_SCHEMA_VERSION, ArchiveObject
from domain.errors import InfrastructureConfigurationError
from domain.limits import S3_KEY_BYTES
from domain.partitions import hour_partition
from infrastructure.archive_format import object_key
from infrastructure.aws.client_config import client_config
from infrastructure.aws.permissions import LAMBDA_PERMISSIONS, Resource
from infrastructure.aws.s3_archive import S3Encryption, S3EventArchive
from infrastructure.codecs import ArchiveCodec, codec_for_key, codec_named
from infrastructure.in_memory.archive import InMemoryEventArchive
from operations.aws.archive_reader import S3ArchiveReader
from tests.aws_calls import CallRecorder
from tests.aws_faults import ThrottledPuts
from tests.aws_resources import create_bucket
from tests.conftest import REGION
from tests.factories import NOW, SHARD
from tests.s3_limits import S3ObjectLimits
from tests.storage_builders import archive_objects

PREFIX = "events/"
PARTITION_KEY = re.compile(
    r"^events/year=\d{4}/month=\d{2}/day=\d{2}/hour=\d{2}/shardId-\d+-\d{64}-\d{64}-[0-9a-f]{16}"
    r"\.jsonl\.(gz|zst)$"
)


class ExpiredDeadline(Deadline):
    def expired(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class StoredView:
    key: str
    blob: bytes
    metadata: dict[str, str]
    content_encoding: str

    @property
    def lines(self) -> list[bytes]:
        return codec_for_key(self.key).decompress(self.blob).splitlines(keepends=True)


@dataclass(frozen=True, slots=True)
class ArchiveUnderTest:
    archive: EventArchive
    stored: Callable[[], list[StoredView]]


ArchiveFactory = Callable[[ArchiveCodec], ArchiveUnderTest]


def in_memory_archive(codec: ArchiveCodec) -> ArchiveUnderTest:
    archive = InMemoryEventArchive(codec, prefix=PREFIX)

    def stored() -> list[StoredView]:
        return [
            StoredView(o.key, o.blob, o.metadata, o.content_encoding) for o in archive.objects()
        ]

    return ArchiveUnderTest(archive, stored)


def s3_stored(s3: S3Client, bucket: str) -> list[StoredView]:
    views = []
    for entry in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        response = s3.get_object(Bucket=bucket, Key=entry["Key"])
        views.append(
            StoredView(
                entry["Key"],
                response["Body"].read(),
                response["Metadata"],
                response.get("ContentEncoding", ""),
            )
        )
    return views


@pytest.fixture
def archive_bucket(s3_client: S3Client, unique_name: str) -> str:
    return create_bucket(s3_client, unique_name)


@pytest.fixture(params=["in_memory", "s3"])
def make_archive(request: pytest.FixtureRequest) -> Iterator[ArchiveFactory]:
    if request.param == "in_memory":
        yield in_memory_archive
        return
    s3: S3Client = request.getfixturevalue("s3_client")
    bucket: str = request.getfixturevalue("archive_bucket")
    endpoint_url: str = request.getfixturevalue("endpoint_url")
    writer: S3Client = boto3.client("s3", endpoint_url=endpoint_url, region_name=REGION)
    S3ObjectLimits().attach(writer)  # moto takes any key and metadata; S3 does not

    def s3_archive(codec: ArchiveCodec) -> ArchiveUnderTest:
        archive = S3EventArchive(writer, bucket, PREFIX, codec, max_workers=4)
        return ArchiveUnderTest(archive, lambda: s3_stored(s3, bucket))

    yield s3_archive


def lines_of(objects: list[ArchiveObject]) -> list[bytes]:
    return [line for item in objects for line in item.body.splitlines(keepends=True)]


# The contract


def test_stored_objects_decompress_to_exactly_the_lines_given(make_archive: ArchiveFactory) -> None:
    under_test = make_archive(codec_named("gzip"))
    objects = archive_objects(3)

    report = under_test.archive.store(objects, NoDeadline())

    assert report.complete
    stored = under_test.stored()
    assert sorted(line for view in stored for line in view.lines) == sorted(lines_of(objects))
    assert len(stored) == 3


def test_objects_are_keyed_under_their_hour_partition(make_archive: ArchiveFactory) -> None:
    under_test = make_archive(codec_named("gzip"))
    hour = NOW - timedelta(hours=5)

    under_test.archive.store(archive_objects(2, hour=hour), NoDeadline())

    keys = [view.key for view in under_test.stored()]
    assert len(keys) == 2
    assert all(PARTITION_KEY.match(key) for key in keys), keys
    assert all(key.startswith(f"events/{hour_partition(hour)}") for key in keys)


def test_each_object_carries_its_metadata_and_content_encoding(
    make_archive: ArchiveFactory,
) -> None:
    under_test = make_archive(codec_named("gzip"))
    [item] = archive_objects(1, first_sequence=500, events_per_object=4)

    under_test.archive.store([item], NoDeadline())

    [view] = under_test.stored()
    assert view.content_encoding == "gzip"
    assert view.metadata == {
        "event-count": "4",
        "shard-id": item.shard_id,
        "first-sequence-number": "500",
        "last-sequence-number": "503",
        "schema-version": ARCHIVE_SCHEMA_VERSION,
    }


def test_rewriting_an_identical_object_leaves_the_archive_as_it_was(
    make_archive: ArchiveFactory,
) -> None:
    under_test = make_archive(codec_named("gzip"))
    objects = archive_objects(2)
    under_test.archive.store(objects, NoDeadline())
    before = under_test.stored()

    report = under_test.archive.store(objects, NoDeadline())

    assert report.complete
    assert under_test.stored() == before


def test_zstd_objects_round_trip(make_archive: ArchiveFactory) -> None:
    under_test = make_archive(codec_named("zstd"))
    objects = archive_objects(2)

    under_test.archive.store(objects, NoDeadline())

    stored = under_test.stored()
    assert {view.content_encoding for view in stored} == {"zstd"}
    assert all(view.key.endswith(".jsonl.zst") for view in stored)
    assert sorted(line for view in stored for line in view.lines) == sorted(lines_of(objects))


def test_a_passed_deadline_leaves_every_shard_unfinished_from_its_first_object(
    make_archive: ArchiveFactory,
) -> None:
    under_test = make_archive(codec_named("gzip"))
    objects = [
        *archive_objects(2, shard_id="shardId-000000000001", first_sequence=40),
        *archive_objects(1, shard_id="shardId-000000000002", first_sequence=7),
    ]

    report = under_test.archive.store(objects, ExpiredDeadline())

    assert report.cut == ShardCut({"shardId-000000000001": 40, "shardId-000000000002": 7})
    assert under_test.stored() == []


def test_storing_nothing_is_complete(make_archive: ArchiveFactory) -> None:
    under_test = make_archive(codec_named("gzip"))

    assert under_test.archive.store([], NoDeadline()).complete


# What S3 refuses, both archives refuse alike


def _shard_id_making_the_key(key_bytes: int, codec: ArchiveCodec) -> str:
    """A shard id (no shard of Kinesis: at most 128 characters) that makes the object keys of
    `archive_objects` exactly `key_bytes` long."""
    [probe] = on_shard("", archive_objects(1))
    return "s" * (key_bytes - len(object_key(PREFIX, probe, codec).encode()))


def on_shard(shard_id: str, objects: list[ArchiveObject]) -> list[ArchiveObject]:
    """The same objects, named as of another shard (the events keep their own ids)."""
    return [replace(item, shard_id=shard_id) for item in objects]


def test_an_object_whose_key_s3_cannot_hold_is_refused_record_by_record_and_the_rest_stored(
    make_archive: ArchiveFactory,
) -> None:
    under_test = make_archive(codec_named("gzip"))
    too_long = _shard_id_making_the_key(S3_KEY_BYTES + 1, codec_named("gzip"))
    [refused_object] = on_shard(too_long, archive_objects(1, first_sequence=10))
    [kept] = archive_objects(1, shard_id=SHARD, first_sequence=20)

    report = under_test.archive.store([refused_object, kept], NoDeadline())

    assert report.complete, report
    assert set(report.refused) == {(too_long, sequence) for sequence in (10, 11, 12)}
    assert all("KeyTooLongError" in problem for problem in report.refused.values())
    assert [view.metadata["shard-id"] for view in under_test.stored()] == [SHARD]


def test_an_object_whose_key_is_exactly_s3s_limit_is_stored(make_archive: ArchiveFactory) -> None:
    under_test = make_archive(codec_named("gzip"))
    longest = _shard_id_making_the_key(S3_KEY_BYTES, codec_named("gzip"))
    objects = on_shard(longest, archive_objects(1))

    report = under_test.archive.store(objects, NoDeadline())

    assert report == COMPLETE
    [view] = under_test.stored()
    assert len(view.key.encode()) == S3_KEY_BYTES


def test_an_object_whose_metadata_is_not_ascii_is_refused(make_archive: ArchiveFactory) -> None:
    under_test = make_archive(codec_named("gzip"))
    objects = on_shard("shard-\u00e9", archive_objects(1))

    report = under_test.archive.store(objects, NoDeadline())

    assert report.complete, report
    assert set(report.refused) == {("shard-\u00e9", sequence) for sequence in objects[0].sequences}
    assert all("ASCII" in problem for problem in report.refused.values())
    assert under_test.stored() == []


def test_moto_alone_stores_a_key_s3_refuses(s3_client: S3Client, archive_bucket: str) -> None:
    """Why the S3 contract runs with `S3ObjectLimits`: moto is more lenient than S3."""
    key = "k" * (S3_KEY_BYTES + 1)
    s3_client.put_object(Bucket=archive_bucket, Key=key, Body=b"")

    assert s3_client.head_object(Bucket=archive_bucket, Key=key)["ContentLength"] == 0


# The S3 adapter


def test_objects_are_encrypted_typed_and_tagged(s3_client: S3Client, archive_bucket: str) -> None:
    archive = S3EventArchive(s3_client, archive_bucket, PREFIX)
    [item] = archive_objects(1)

    archive.store([item], NoDeadline())

    [entry] = s3_client.list_objects_v2(Bucket=archive_bucket)["Contents"]
    head = s3_client.head_object(Bucket=archive_bucket, Key=entry["Key"])
    assert head["ServerSideEncryption"] == "AES256"
    assert head["ContentType"] == "application/x-ndjson"
    tags = s3_client.get_object_tagging(Bucket=archive_bucket, Key=entry["Key"])["TagSet"]
    assert {t["Key"]: t["Value"] for t in tags} == {
        "pipeline": "experimently-event-processor",
        "schema-version": ARCHIVE_SCHEMA_VERSION,
    }


def test_objects_can_be_encrypted_with_a_kms_key(s3_client: S3Client, archive_bucket: str) -> None:
    encryption = S3Encryption("aws:kms", "alias/event-archive")
    archive = S3EventArchive(s3_client, archive_bucket, PREFIX, encryption=encryption)

    archive.store(archive_objects(1), NoDeadline())

    [entry] = s3_client.list_objects_v2(Bucket=archive_bucket)["Contents"]
    head = s3_client.head_object(Bucket=archive_bucket, Key=entry["Key"])
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head.get("SSEKMSKeyId", "").endswith("alias/event-archive")


def test_a_missing_bucket_fails_loudly_as_a_configuration_error(
    s3_client: S3Client, unique_name: str
) -> None:
    archive = S3EventArchive(s3_client, f"{unique_name}-missing", PREFIX)

    with pytest.raises(InfrastructureConfigurationError, match="NoSuchBucket"):
        archive.store(archive_objects(2), NoDeadline())


def test_a_throttled_put_leaves_its_shard_unfinished_from_that_object(
    endpoint_url: str, archive_bucket: str
) -> None:
    # One attempt in all, so the 503 is not retried here.
    s3 = boto3.client(
        "s3", endpoint_url=endpoint_url, region_name=REGION, config=client_config(max_attempts=1)
    )
    shard_one = archive_objects(3, shard_id="shardId-000000000001", first_sequence=10)
    shard_two = archive_objects(2, shard_id="shardId-000000000002", first_sequence=50)
    throttled = shard_one[1]
    faults = ThrottledPuts({f"{throttled.shard_id}-{throttled.first_sequence:064d}"})
    faults.attach(s3)
    archive = S3EventArchive(s3, archive_bucket, PREFIX, max_workers=4)

    report = archive.store([*shard_one, *shard_two], NoDeadline())

    assert report.cut == ShardCut({"shardId-000000000001": throttled.first_sequence})
    assert any("SlowDown" in problem for problem in report.problems)
    assert faults.throttled == 1
    stored_keys = {view.key for view in s3_stored(s3, archive_bucket)}
    assert len(stored_keys) == 4
    assert not any(f"{throttled.first_sequence:064d}-" in key for key in stored_keys)


def test_store_needs_only_the_declared_archive_permissions(
    s3_client: S3Client, archive_bucket: str
) -> None:
    recorder = CallRecorder()
    recorder.attach(s3_client)
    archive = S3EventArchive(s3_client, archive_bucket, PREFIX)

    archive.store(archive_objects(2), NoDeadline())

    assert recorder.count("s3", "PutObject") == 2
    assert recorder.actions <= LAMBDA_PERMISSIONS[Resource.ARCHIVE_BUCKET]


# The reader used by replays


def test_the_reader_lists_only_the_hours_in_range_and_reads_back_their_lines(
    s3_client: S3Client, archive_bucket: str
) -> None:
    archive = S3EventArchive(s3_client, archive_bucket, PREFIX, codec=codec_named("zstd"))
    first_hour = NOW - timedelta(hours=6)
    by_hour = {
        offset: archive_objects(
            2, first_sequence=1000 * offset, hour=first_hour + timedelta(hours=offset)
        )
        for offset in range(4)
    }
    archive.store([item for objects in by_hour.values() for item in objects], NoDeadline())
    recorder = CallRecorder()
    recorder.attach(s3_client)
    reader = S3ArchiveReader(s3_client, archive_bucket, PREFIX, page_size=1)

    summaries = list(
        reader.list_objects(
            first_hour + timedelta(hours=1, minutes=30), first_hour + timedelta(hours=3)
        )
    )

    assert len(summaries) == 4
    assert all(summary.size > 0 for summary in summaries)
    read = [line + b"\n" for summary in summaries for line in reader.read_lines(summary.key)]
    assert sorted(read) == sorted(lines_of([*by_hour[1], *by_hour[2]]))
    # Only the two hours in range are listed, and page_size=1 makes each take several pages.
    assert recorder.actions == {"s3:ListBucket", "s3:GetObject"}
    assert recorder.count("s3", "ListObjectsV2") >= 4


def test_the_reader_reads_gzip_objects_by_their_extension(
    s3_client: S3Client, archive_bucket: str
) -> None:
    objects = archive_objects(1)
    S3EventArchive(s3_client, archive_bucket, PREFIX).store(objects, NoDeadline())
    reader = S3ArchiveReader(s3_client, archive_bucket, PREFIX)

    [summary] = reader.list_objects(NOW - timedelta(days=1), NOW)

    assert summary.key.endswith(".jsonl.gz")
    assert [line + b"\n" for line in reader.read_lines(summary.key)] == lines_of(objects)
