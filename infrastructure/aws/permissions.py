"""The IAM actions each AWS adapter calls, by the resource it calls them on: for the Lambda
function, and for the operators' command line run against a deployed stack.

The deployment template must grant exactly these (tests check both directions: that the
adapters call nothing undeclared, and that the template grants what is declared).
"""

from __future__ import annotations

from enum import StrEnum

from infrastructure.aws.dynamodb_recent_events import EVENT_PREFIX
from infrastructure.dynamodb_layout import (
    COUNTER_PARTITION_PREFIX,
    MARKER_PARTITION_PREFIX,
    SKETCH_PARTITION_PREFIX,
)


class Resource(StrEnum):
    AGGREGATION_TABLE = "aggregation_table"
    ASSIGNMENTS_TABLE = "assignments_table"
    EXPERIMENTS_TABLE = "experiments_table"
    ARCHIVE_BUCKET = "archive_bucket"
    DEAD_LETTER_QUEUE = "dead_letter_queue"
    STREAM = "stream"


LAMBDA_PERMISSIONS: dict[Resource, frozenset[str]] = {
    # BatchGetItem: the durable event-id index (EVENT_ID_INDEX=dynamodb) reads committed ids,
    # the unique users' sketches (sketch mode) the items they update.
    Resource.AGGREGATION_TABLE: frozenset(
        {"dynamodb:UpdateItem", "dynamodb:BatchWriteItem", "dynamodb:BatchGetItem"}
    ),
    Resource.ASSIGNMENTS_TABLE: frozenset({"dynamodb:BatchGetItem"}),
    Resource.EXPERIMENTS_TABLE: frozenset({"dynamodb:BatchGetItem"}),
    Resource.ARCHIVE_BUCKET: frozenset({"s3:PutObject", "s3:PutObjectTagging"}),
    Resource.DEAD_LETTER_QUEUE: frozenset({"sqs:SendMessage"}),
}
"""What the Lambda function's role needs (its event source mapping reads the stream for it)."""

LAMBDA_PARTITION_KEY_PREFIXES: dict[str, frozenset[str]] = {
    "dynamodb:UpdateItem": frozenset(
        {COUNTER_PARTITION_PREFIX, MARKER_PARTITION_PREFIX, SKETCH_PARTITION_PREFIX}
    ),
    "dynamodb:BatchWriteItem": frozenset({EVENT_PREFIX}),
    "dynamodb:BatchGetItem": frozenset({SKETCH_PARTITION_PREFIX, EVENT_PREFIX}),
}
"""The partition keys each of the function's actions on the aggregation table touches, by prefix:
counters, first-seen markers and unique users' sketches are updated (conditionally), event ids
put, sketches and event ids read. The template's
`dynamodb:LeadingKeys` conditions allow these prefixes and no other (the replay ledger's
`REPLAY#`/`REPLAYRUN#` items are the operators')."""

OPERATOR_PERMISSIONS: dict[Resource, frozenset[str]] = {
    # Query: reports (counters, markers). BatchGetItem: replays' watermarks and ledger claims,
    # event ids with EVENT_ID_INDEX=dynamodb. UpdateItem/PutItem: replay claims (REPLAY#) and
    # runs (REPLAYRUN#), counters through the stream's path. BatchWriteItem: markers, event ids.
    Resource.AGGREGATION_TABLE: frozenset(
        {
            "dynamodb:Query",
            "dynamodb:BatchGetItem",
            "dynamodb:UpdateItem",
            "dynamodb:PutItem",
            "dynamodb:BatchWriteItem",
        }
    ),
    # BatchGetItem: enrichment during replays, `report`'s experiment, `seed`'s current items;
    # `seed` writes with UpdateItem/PutItem, and BatchWriteItem with --replace.
    Resource.ASSIGNMENTS_TABLE: frozenset(
        {
            "dynamodb:BatchGetItem",
            "dynamodb:UpdateItem",
            "dynamodb:PutItem",
            "dynamodb:BatchWriteItem",
        }
    ),
    Resource.EXPERIMENTS_TABLE: frozenset(
        {
            "dynamodb:BatchGetItem",
            "dynamodb:UpdateItem",
            "dynamodb:PutItem",
            "dynamodb:BatchWriteItem",
        }
    ),
    # ListBucket/GetObject: archive replays and dead letters kept in S3. PutObject (tagged):
    # replayed dead letters and file events are archived; an archived record the pipeline now
    # refuses is dead-lettered (to S3 when too large). DeleteObject: dead letters kept in S3,
    # once replayed (DeleteObjects). `forget-user` rewrites archive objects keeping their tags
    # (GetObjectTagging) and deletes them and the user's dead letters.
    Resource.ARCHIVE_BUCKET: frozenset(
        {
            "s3:ListBucket",
            "s3:GetObject",
            "s3:GetObjectTagging",
            "s3:PutObject",
            "s3:PutObjectTagging",
            "s3:DeleteObject",
        }
    ),
    # Receive, delete once settled, make the rest visible again (the *Batch calls are authorised
    # by these actions); SendMessage: the archive replay dead-letters what it now refuses.
    Resource.DEAD_LETTER_QUEUE: frozenset(
        {
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:ChangeMessageVisibility",
            "sqs:SendMessage",
        }
    ),
    # `put`. Reading the stream is `consume`'s, an emulator of the event source mapping that
    # runs the handler locally: not an operation on a deployed stack, so not granted.
    Resource.STREAM: frozenset({"kinesis:PutRecords"}),
}
"""What the operators' command line (`report`, `replay`, `seed`, `put`) calls on a deployed
stack; the template's `OperatorPolicy` grants it. `provision` and `demo` are for emulators."""
