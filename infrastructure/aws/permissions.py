"""The IAM actions each AWS adapter calls, by the resource it calls them on.

The deployment template must grant exactly these (tests check both directions: that the
adapters call nothing undeclared, and that the template grants what is declared).
"""

from __future__ import annotations

from enum import StrEnum


class Resource(StrEnum):
    AGGREGATION_TABLE = "aggregation_table"
    ASSIGNMENTS_TABLE = "assignments_table"
    EXPERIMENTS_TABLE = "experiments_table"
    ARCHIVE_BUCKET = "archive_bucket"
    DEAD_LETTER_QUEUE = "dead_letter_queue"


LAMBDA_PERMISSIONS: dict[Resource, frozenset[str]] = {
    # BatchGetItem: the durable event-id index (EVENT_ID_INDEX=dynamodb) reads committed ids.
    Resource.AGGREGATION_TABLE: frozenset(
        {"dynamodb:UpdateItem", "dynamodb:BatchWriteItem", "dynamodb:BatchGetItem"}
    ),
    Resource.ASSIGNMENTS_TABLE: frozenset({"dynamodb:BatchGetItem"}),
    Resource.EXPERIMENTS_TABLE: frozenset({"dynamodb:BatchGetItem"}),
    Resource.ARCHIVE_BUCKET: frozenset({"s3:PutObject", "s3:PutObjectTagging"}),
    Resource.DEAD_LETTER_QUEUE: frozenset({"sqs:SendMessage"}),
}
"""What the Lambda function's role needs. Reports and replays (run by operators) also need:
`dynamodb:Query`, `PutItem`, `UpdateItem` and `BatchGetItem` on the aggregation table (reports;
replay claims and runs), `s3:ListBucket`/`s3:GetObject` on the bucket,
`sqs:ReceiveMessage`/`sqs:DeleteMessage` on the queue. `forget-user` (erasure) needs
`dynamodb:BatchGetItem`/`BatchWriteItem` on the aggregation table, `s3:ListBucket`,
`GetObject`, `GetObjectTagging`, `PutObject`, `PutObjectTagging` and `DeleteObject` on the
bucket, and `sqs:ReceiveMessage`, `DeleteMessage` and `ChangeMessageVisibility` on the queue."""
