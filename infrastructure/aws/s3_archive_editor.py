"""Erasure's view of the S3 archive: list it, read an object's lines, rewrite or delete it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from application.ports import ArchiveEditor, ArchiveObjectLines
from domain.errors import ArchiveObjectChangedError
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


_CHANGED_SINCE_READ = frozenset(
    {"PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "412", "404"}
)
"""How S3 refuses a request conditional on an ETag the object no longer has: 412 (another
ETag), 409 (a conflicting write under way: read again and retry, S3's documentation says) or
404 (the object was deleted). HeadObject answers without a body: its code is the status."""


def _changed_since_read(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code", "") in _CHANGED_SINCE_READ


class S3ArchiveEditor(ArchiveEditor):
    """`object_keys` lists the whole archive prefix (ListObjectsV2, 1,000 keys a page): erasure
    cannot tell from a user id which hours hold their events. A reading's version is the
    object's ETag. `replace` is one PutObject under the same key (S3 makes it visible
    atomically) with `IfMatch` the ETag read, the object's content type, encoding, tags and
    metadata kept, its event count and sequence range updated, and the archive's encryption;
    `delete` is one DeleteObject with `IfMatch` (S3 supports both conditions on general-purpose
    buckets, and moto honours them). Neither needs an IAM action beyond PutObject and
    DeleteObject."""

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
        self._metadata: dict[tuple[str, str], Mapping[str, str]] = {}
        """Each object's metadata as read, by key and ETag: kept on the rewrite."""

    def object_keys(self) -> Iterator[str]:
        for entry in listed_objects(self._s3, self._bucket, self._prefix):
            yield entry["Key"]

    def read_lines(self, key: str) -> ArchiveObjectLines:
        try:
            response = self._s3.get_object(Bucket=self._bucket, Key=key)
            blob = response["Body"].read()
        except (ClientError, BotoCoreError) as error:
            raise translate(error, "s3:GetObject") from error
        version = response["ETag"]
        self._metadata[key, version] = response.get("Metadata", {})
        lines = [line for line in codec_for_key(key).decompress(blob).split(b"\n") if line]
        return ArchiveObjectLines(tuple(lines), version)

    def replace(self, key: str, lines: Sequence[bytes], version: str) -> None:
        if not lines:
            raise ValueError("an archive object holds at least one line: delete it instead")
        codec = codec_for_key(key)
        try:
            old = self._metadata.get((key, version))
            if old is None:
                old = self._s3.head_object(Bucket=self._bucket, Key=key, IfMatch=version).get(
                    "Metadata", {}
                )
            tagging = self._s3.get_object_tagging(Bucket=self._bucket, Key=key)
            request: PutObjectRequestTypeDef = {
                "Bucket": self._bucket,
                "Key": key,
                "Body": codec.compress(b"".join(line + b"\n" for line in lines)),
                "ContentType": ARCHIVE_CONTENT_TYPE,
                "ContentEncoding": codec.content_encoding,
                "Metadata": rewritten_metadata(old, lines),
                "IfMatch": version,
            }
            tags = tagging.get("TagSet", [])
            if tags:
                request["Tagging"] = object_tagging({tag["Key"]: tag["Value"] for tag in tags})
            self._encryption.apply_to(request)
            self._s3.put_object(**request)
        except ClientError as error:
            if _changed_since_read(error):
                raise ArchiveObjectChangedError(key) from error
            raise translate(error, "s3:PutObject") from error
        except BotoCoreError as error:
            raise translate(error, "s3:PutObject") from error
        finally:
            self._metadata.pop((key, version), None)

    def delete(self, key: str, version: str) -> None:
        try:
            self._s3.delete_object(Bucket=self._bucket, Key=key, IfMatch=version)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code == "NoSuchKey":
                return  # deleted by someone else: what was to go is gone
            if _changed_since_read(error):
                raise ArchiveObjectChangedError(key) from error
            raise translate(error, "s3:DeleteObject") from error
        except BotoCoreError as error:
            raise translate(error, "s3:DeleteObject") from error
        finally:
            self._metadata.pop((key, version), None)
