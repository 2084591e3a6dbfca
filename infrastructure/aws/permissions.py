"""The IAM actions each AWS adapter calls, by the resource it calls them on.

The deployment template must grant exactly these (tests check both directions: that the
adapters call nothing undeclared, and that the template grants what is declared).
"""

from __future__ import annotations

from enum import StrEnum

from infrastructure.aws.dynamodb_recent_events import EVENT_PREFIX
from infrastructure.dynamodb_layout import COUNTER_PARTITION_PREFIX, MARKER_PARTITION_PREFIX


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
`sqs:ReceiveMessage`/`sqs:DeleteMessage` on the queue."""

LAMBDA_PARTITION_KEY_PREFIXES: dict[str, frozenset[str]] = {
    "dynamodb:UpdateItem": frozenset({COUNTER_PARTITION_PREFIX}),
    "dynamodb:BatchWriteItem": frozenset({MARKER_PARTITION_PREFIX, EVENT_PREFIX}),
    "dynamodb:BatchGetItem": frozenset({EVENT_PREFIX}),
}
"""The partition keys each of the function's actions on the aggregation table touches, by prefix:
counters are updated, markers and event ids put, event ids read. The template's
`dynamodb:LeadingKeys` conditions allow these prefixes and no other (the replay ledger's
`REPLAY#`/`REPLAYRUN#` items are the operators')."""
