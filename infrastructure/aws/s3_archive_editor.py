"""Erasure's view of the S3 archive: list it, read an object's lines, rewrite or delete it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from application.ports import ArchiveEditor
from infrastructure.archive_format import rewritten_metadata
from infrastructure.aws.errors import translate
from infrastructure.aws.s3_archive import (
    ARCHIVE_CONTENT_TYPE,
    DEFAULT_ARCHIVE_PREFIX,
    S3Encryption,
    object_tagging,
)
from infrastructure.aws.s3_listing import listed_objects
from infrastructure.codecs import codec_for_key

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import PutObjectRequestTypeDef


class S3ArchiveEditor(ArchiveEditor):
    """`object_keys` lists the whole archive prefix (ListObjectsV2, 1,000 keys a page): erasure
    cannot tell from a user id which hours hold their events. `replace` is one PutObject under
    the same key (S3 makes it visible atomically), with the object's content type, encoding,
    tags and metadata kept, its event count and sequence range updated, and the archive's
    encryption; `delete` is one DeleteObject."""

    def __init__(
        self,
        s3: S3Client,
        bucket: str,
        prefix: str = DEFAULT_ARCHIVE_PREFIX,
        encryption: S3Encryption | None = None,
    ) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._prefix = prefix
        self._encryption = encryption or S3Encryption()
        self._metadata: dict[str, Mapping[str, str]] = {}

    def object_keys(self) -> Iterator[str]:
        for entry in listed_objects(self._s3, self._bucket, self._prefix):
            yield entry["Key"]

    def read_lines(self, key: str) -> list[bytes]:
        try:
            response = self._s3.get_object(Bucket=self._bucket, Key=key)
            blob = response["Body"].read()
        except (ClientError, BotoCoreError) as error:
            raise translate(error, "s3:GetObject") from error
        self._metadata[key] = response.get("Metadata", {})
        return [line for line in codec_for_key(key).decompress(blob).split(b"\n") if line]

    def replace(self, key: str, lines: Sequence[bytes]) -> None:
        if not lines:
            raise ValueError("an archive object holds at least one line: delete it instead")
        codec = codec_for_key(key)
        try:
            old = self._metadata.get(key)
            if old is None:
                old = self._s3.head_object(Bucket=self._bucket, Key=key).get("Metadata", {})
            tagging = self._s3.get_object_tagging(Bucket=self._bucket, Key=key)
            request: PutObjectRequestTypeDef = {
                "Bucket": self._bucket,
                "Key": key,
                "Body": codec.compress(b"".join(line + b"\n" for line in lines)),
                "ContentType": ARCHIVE_CONTENT_TYPE,
                "ContentEncoding": codec.content_encoding,
                "Metadata": rewritten_metadata(old, lines),
            }
            tags = tagging.get("TagSet", [])
            if tags:
                request["Tagging"] = object_tagging({tag["Key"]: tag["Value"] for tag in tags})
            self._encryption.apply_to(request)
            self._s3.put_object(**request)
        except (ClientError, BotoCoreError) as error:
            raise translate(error, "s3:PutObject") from error
        self._metadata.pop(key, None)

    def delete(self, key: str) -> None:
        try:
            self._s3.delete_object(Bucket=self._bucket, Key=key)
        except (ClientError, BotoCoreError) as error:
            raise translate(error, "s3:DeleteObject") from error
        self._metadata.pop(key, None)
