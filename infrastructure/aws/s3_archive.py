"""The event archive in S3: one compressed JSON Lines object per archive object."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlencode

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from application.ports import COMPLETE, Deadline, EventArchive, RecordId, WriteReport
from application.shard_cut import ShardCut
from domain.archiving import ARCHIVE_SCHEMA_VERSION, ArchiveObject
from domain.errors import InfrastructureConfigurationError, TransientInfrastructureError
from infrastructure.archive_format import object_key, object_metadata
from infrastructure.aws.errors import translate
from infrastructure.codecs import ArchiveCodec, codec_named
from infrastructure.s3_layout import (
    DATA_REFUSAL_CODES,
    NON_ASCII_METADATA,
    NON_ASCII_METADATA_MESSAGE,
    S3Refusal,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import PutObjectRequestTypeDef

DEFAULT_ARCHIVE_PREFIX = "events/"
ARCHIVE_CONTENT_TYPE = "application/x-ndjson"
PIPELINE_NAME = "experimently-event-processor"


@dataclass(frozen=True, slots=True)
class S3Encryption:
    """Server-side encryption of every object we write: SSE-S3 unless a KMS key is chosen."""

    algorithm: Literal["AES256", "aws:kms"] = "AES256"
    kms_key_id: str | None = None

    def __post_init__(self) -> None:
        if self.kms_key_id is not None and self.algorithm != "aws:kms":
            raise ValueError("a KMS key id needs the aws:kms algorithm")

    def apply_to(self, request: PutObjectRequestTypeDef) -> None:
        request["ServerSideEncryption"] = self.algorithm
        if self.kms_key_id is not None:
            request["SSEKMSKeyId"] = self.kms_key_id


def object_tagging(tags: Mapping[str, str]) -> str:
    """S3 wants tags as a URL query string."""
    return urlencode(sorted(tags.items()))


class S3EventArchive(EventArchive):
    """Writes each object with one PutObject, concurrently, under a deterministic key.

    Keys depend only on the lines (see `object_key`), so a retried write rewrites the same bytes
    under the same name. A transient failure is reported per shard from the lowest sequence
    number not known to be written; a configuration failure (missing bucket, access denied) is
    raised, because retrying cannot fix it. An object S3 refuses for its key or metadata
    (`s3_layout.DATA_REFUSAL_CODES`) is reported refused, record by record, and the others are
    written: the use case dead-letters those records.
    """

    def __init__(
        self,
        s3: S3Client,
        bucket: str,
        prefix: str = DEFAULT_ARCHIVE_PREFIX,
        codec: ArchiveCodec | None = None,
        max_workers: int = 8,
        encryption: S3Encryption | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self._s3 = s3
        self._bucket = bucket
        self._prefix = prefix
        self._codec = codec or codec_named("gzip")
        self._max_workers = max_workers
        self._encryption = encryption or S3Encryption()
        self._tagging = object_tagging(
            tags
            if tags is not None
            else {"pipeline": PIPELINE_NAME, "schema-version": ARCHIVE_SCHEMA_VERSION}
        )

    def store(self, objects: Sequence[ArchiveObject], deadline: Deadline) -> WriteReport:
        if not objects:
            return COMPLETE
        workers = min(self._max_workers, len(objects))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="s3-archive") as pool:
            outcomes = list(pool.map(lambda item: self._put(item, deadline), objects))

        unfinished: list[RecordId] = []
        problems: list[str] = []
        refused: dict[RecordId, str] = {}
        configuration_errors: list[InfrastructureConfigurationError] = []
        for item, outcome in zip(objects, outcomes, strict=True):
            if outcome is None:
                continue
            if isinstance(outcome, InfrastructureConfigurationError):
                configuration_errors.append(outcome)
                continue
            if isinstance(outcome, S3Refusal):
                refused.update(
                    ((item.shard_id, sequence), str(outcome)) for sequence in item.sequences
                )
                continue
            unfinished.append((item.shard_id, item.first_sequence))
            problems.append(outcome)
        if configuration_errors:
            raise configuration_errors[0]
        if unfinished or refused:
            return WriteReport(ShardCut.of(unfinished), tuple(sorted(set(problems))), refused)
        return COMPLETE

    def _put(
        self, item: ArchiveObject, deadline: Deadline
    ) -> str | S3Refusal | InfrastructureConfigurationError | None:
        """None when written; otherwise why not (a problem text, S3's refusal of the object, or
        the error to raise)."""
        if deadline.expired():
            return "deadline reached while archiving"
        request: PutObjectRequestTypeDef = {
            "Bucket": self._bucket,
            "Key": object_key(self._prefix, item, self._codec),
            "Body": self._codec.compress(item.body),
            "ContentType": ARCHIVE_CONTENT_TYPE,
            "ContentEncoding": self._codec.content_encoding,
            "Metadata": object_metadata(item),
            "Tagging": self._tagging,
        }
        self._encryption.apply_to(request)
        try:
            self._s3.put_object(**request)
        except (ClientError, BotoCoreError) as error:
            refusal = data_refusal(error)
            if refusal is not None:
                return refusal
            translated = translate(error, "s3:PutObject")
            if isinstance(translated, TransientInfrastructureError):
                return str(translated)
            return translated
        return None


def data_refusal(error: Exception) -> S3Refusal | None:
    """S3's (or botocore's, for metadata S3 could not carry) refusal of an object for its own
    key or metadata, or None for any other failure."""
    if isinstance(error, ParamValidationError) and NON_ASCII_METADATA_MESSAGE in str(error):
        return S3Refusal(NON_ASCII_METADATA, NON_ASCII_METADATA_MESSAGE)
    if not isinstance(error, ClientError):
        return None
    details = error.response.get("Error", {})
    code = details.get("Code", "")
    if code not in DATA_REFUSAL_CODES:
        return None
    return S3Refusal(code, details.get("Message", ""))
