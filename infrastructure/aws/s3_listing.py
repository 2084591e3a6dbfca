"""Listing objects under an S3 prefix, page after page, with S3's failures translated."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from infrastructure.aws.errors import translate

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectTypeDef


def listed_objects(
    s3: S3Client, bucket: str, prefix: str, page_size: int | None = None
) -> Iterator[ObjectTypeDef]:
    """Every object whose key starts with `prefix`, in key order (ListObjectsV2, `page_size`
    keys a page, 1,000 when None). A failure raises the translated error of `s3:ListBucket`,
    the permission ListObjectsV2 needs."""
    paginator = s3.get_paginator("list_objects_v2")
    pages = (
        paginator.paginate(Bucket=bucket, Prefix=prefix)
        if page_size is None
        else paginator.paginate(
            Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": page_size}
        )
    )
    try:
        for page in pages:
            yield from page.get("Contents", [])
    except (ClientError, BotoCoreError) as error:
        raise translate(error, "s3:ListBucket") from error
