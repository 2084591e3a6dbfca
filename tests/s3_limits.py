"""S3's limits on an object's key and metadata on a moto client: moto stores any key and any
metadata, S3 does not.

S3 refuses, with HTTP 400, a PutObject whose key is longer than 1,024 bytes in UTF-8
(`KeyTooLongError`, "Your key is too long") or whose user-defined metadata (the UTF-8 bytes of
every name and value) exceeds 2 KB (`MetadataTooLarge`). moto 5 takes both, so the contract
suites attach this hook to the S3 client under test: it answers such requests as S3 documents,
before they reach moto, and lets every other request through."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.client import BaseClient

from domain.limits import S3_KEY_BYTES, S3_METADATA_BYTES, utf8_length
from tests.botocore_answers import answer_errors


class S3ObjectLimits:
    """Attach to a client; `refused` counts the requests answered."""

    def __init__(self) -> None:
        self.refused = 0

    def attach(self, client: BaseClient) -> None:
        answer_errors(client, "PutObject", _put_problem, self._count)

    def _count(self) -> None:
        self.refused += 1


def _put_problem(params: Mapping[str, Any]) -> tuple[str, str] | None:
    # Written from S3's documentation, not from infrastructure.s3_layout: the rule under test.
    if utf8_length(params["Key"]) > S3_KEY_BYTES:
        return "KeyTooLongError", "Your key is too long"
    metadata: Mapping[str, str] = params.get("Metadata", {})
    if sum(utf8_length(name) + utf8_length(value) for name, value in metadata.items()) > (
        S3_METADATA_BYTES
    ):
        return (
            "MetadataTooLarge",
            "Your metadata headers exceed the maximum allowed metadata size.",
        )
    return None
