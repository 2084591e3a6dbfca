"""Where the aggregation table keeps what: the key layout of counters, unique-user markers and
sketches (docs/storage.md), shared by the DynamoDB adapter and the in-memory one that must refuse the keys
DynamoDB refuses. No boto3 here."""

from __future__ import annotations

import hashlib

from domain.limits import (
    DYNAMODB_ITEM_BYTES,
    DYNAMODB_PARTITION_KEY_BYTES,
    DYNAMODB_SORT_KEY_BYTES,
    utf8_length,
)
from domain.metrics import EXPERIMENT_WINDOW_LABEL, Granularity, MetricKey
from domain.time import DAY_LABEL_FORMAT

WATERMARK_PREFIX = "wm#"
COUNTER_PARTITION_PREFIX = "EXP#"
MARKER_PARTITION_PREFIX = "USERS#"
"""Partition key prefixes of counters and markers: the function's IAM conditions
(`dynamodb:LeadingKeys`, permissions.LAMBDA_PARTITION_KEY_PREFIXES) name them."""


COUNTER_WRITE_SHARDS = 16
"""Counters of one experiment are spread over this many partition keys, by Kinesis shard
(`write_shard`). A Kinesis shard's watermark lives in its write shard's items, so the number is
part of the table's layout: changing it is a migration, not a setting."""

MARKER_WRITE_SHARDS = 64
"""Unique-user markers of one (experiment, variant, metric, day), and the experiment-to-date
items of one (experiment, variant), are spread over this many partition keys, by user
(`write_shard`): at 100,000 reference events a second the hottest takes a few hundred write
units a second (docs/performance.md). Part of the layout: writers, readers and erasure derive
marker keys from it, so changing it is a migration (docs/storage.md, "Marker buckets")."""

PREVIOUS_MARKER_WRITE_SHARDS = 16
"""The marker buckets before `MARKER_WRITE_SHARDS`. The new number is a multiple of it, so a
user's previous bucket is their bucket modulo it, and `B<bb>` names the same partition in both
layouts: a user whose bucket is below it kept their marker keys, every previous partition is one
of the current ones (user sets read both), and erasure deletes the previous keys too
(`previous_marker_key`)."""


def write_shard(identifier: str, shards: int) -> int:
    """The write shard of a Kinesis shard id or a user id: a stable hash (not Python's `hash`,
    which changes between processes), so every writer and reader agrees on it."""
    digest = hashlib.sha256(identifier.encode("utf-8", "surrogatepass")).hexdigest()
    return int(digest[:8], 16) % shards


def counter_write_shard(shard_id: str) -> int:
    """The write shard of a Kinesis shard's counters. Kinesis numbers its shards
    (`shardId-000000000007`) in creation order, so the number modulo the write shards spreads
    any run of shards evenly; an id of another shape is hashed."""
    prefix, _, number = shard_id.rpartition("-")
    if prefix and number.isascii() and number.isdigit():
        return int(number) % COUNTER_WRITE_SHARDS
    return write_shard(shard_id, COUNTER_WRITE_SHARDS)


def key_part(identifier: str) -> str:
    """An identifier as one segment of a composite key: '%' and '#' are percent-escaped, so a '#'
    inside an id can never shift the segments of two different keys onto the same string."""
    return identifier.replace("%", "%25").replace("#", "%23")


def counter_partition_key(experiment_id: str, write_shard: int) -> str:
    """The partition of an experiment's counters written by the Kinesis shards of one write
    shard (`counter_write_shard`): `EXP#<experiment>#W<nn>`. The experiment id is escaped, so
    its '#' can never make the key of one experiment's write shard that of another's."""
    if not 0 <= write_shard < COUNTER_WRITE_SHARDS:
        raise ValueError(f"write shard {write_shard} outside 0..{COUNTER_WRITE_SHARDS - 1}")
    return f"{COUNTER_PARTITION_PREFIX}{key_part(experiment_id)}#W{write_shard:02d}"


def counter_partition_keys(experiment_id: str) -> tuple[str, ...]:
    """Every partition that may hold counters of the experiment: its write shards' and the
    legacy one, which a report reads and sums."""
    return (
        *(counter_partition_key(experiment_id, shard) for shard in range(COUNTER_WRITE_SHARDS)),
        legacy_counter_partition_key(experiment_id),
    )


def legacy_counter_partition_key(experiment_id: str) -> str:
    """The partition of an experiment's counters written before counters were write-sharded
    (`EXP#<experiment>`, unescaped, every Kinesis shard's watermark in one item): still read."""
    return f"{COUNTER_PARTITION_PREFIX}{experiment_id}"


def granularity_prefix(granularity: Granularity) -> str:
    return f"{granularity.value.upper()}#"


def counter_sort_key(key: MetricKey) -> str:
    return (
        f"{granularity_prefix(key.granularity)}{key.window_label}#"
        f"{key_part(key.variant_id)}#{key.metric}"
    )


MarkerItemKey = tuple[str, str]
"""(partition_key, sort_key) of one first-seen marker item."""


def marker_key(key: MetricKey, user_id: str) -> MarkerItemKey:
    """The first-seen marker of `user_id` in the window of counter `key`.

    Hour and day markers of one (experiment, variant, metric, day) share a partition per user
    bucket, `USERS#<exp>#<variant>#<metric>#<YYYY-MM-DD>#B<bb>`, with sort keys `<HH>#<user>`
    (hour) and `D#<user>` (day). The experiment-to-date markers of one user and variant are one
    item for every metric, `USERS#<exp>#<variant>#ALL#B<bb>` / `<user>` (one attribute pair per
    metric, `EXPERIMENT_MARKER_ATTRIBUTES`), so that the write of one metric's marker sees the
    user's others: what counts exposed users who did a metric. The bucket `bb` is the user's
    write shard: no partition key takes more than 1/`MARKER_WRITE_SHARDS` of a counter's
    markers."""
    return _bucketed_marker_key(key, user_id, write_shard(user_id, MARKER_WRITE_SHARDS))


def previous_marker_key(key: MetricKey, user_id: str) -> MarkerItemKey:
    """Where `marker_key` was when markers had `PREVIOUS_MARKER_WRITE_SHARDS` buckets: the same
    key for a user whose bucket is below that number."""
    return _bucketed_marker_key(key, user_id, write_shard(user_id, PREVIOUS_MARKER_WRITE_SHARDS))


def _bucketed_marker_key(key: MetricKey, user_id: str, bucket: int) -> MarkerItemKey:
    if key.granularity is Granularity.EXPERIMENT:
        return _experiment_user_partition(key, bucket), user_id
    partition = f"{_marker_prefix(key)}#{key.window_start.strftime(DAY_LABEL_FORMAT)}#B{bucket:02d}"
    if key.granularity is Granularity.HOUR:
        return partition, f"{key.window_start:%H}#{user_id}"
    return partition, f"{DAY_MARKER_SORT_PREFIX}{user_id}"


DAY_MARKER_SORT_PREFIX = "D#"


def experiment_marker_attributes(metric: str) -> tuple[str, str]:
    """The attributes of a metric's marker in a user's experiment-to-date item: the record that
    wrote it (`m#<metric>`) and its place among the item's markers (`o#<metric>`, 1, 2, …)."""
    return f"m#{metric}", f"o#{metric}"


EXPERIMENT_MARKER_COUNT_ATTRIBUTE = "n"
"""An experiment-to-date item's number of markers: each new one takes the next place."""


def marker_writer(record: tuple[str, int]) -> str:
    """A marker's record as its item holds it: `<shard id>/<sequence number>`."""
    shard_id, sequence = record
    return f"{shard_id}/{sequence}"


def experiment_marker_bytes(metric: str, record: str, place: int) -> int:
    """What one metric's marker adds to a user's experiment-to-date item, as DynamoDB counts an
    item's size ("Item sizes and formats"): its two attributes' names and values."""
    marker, place_attribute = experiment_marker_attributes(metric)
    return (
        utf8_length(marker)
        + utf8_length(record)
        + utf8_length(place_attribute)
        + number_bytes(place)
    )


def experiment_marker_item_size_problem(
    partition_key: str, sort_key: str, markers: int, markers_bytes: int
) -> str | None:
    """DynamoDB's words for refusing the write that would make a user's experiment-to-date item
    hold `markers` markers of `markers_bytes` (the sum of their `experiment_marker_bytes`), or
    None when it fits: the keys, the count and the markers, each attribute's name and value.
    The optional TTL attribute is left out (a few bytes). moto refuses such an update from
    405,000 bytes (its own margin, counting a replaced attribute twice), AWS past 400 KB."""
    size = (
        utf8_length("partition_key")
        + utf8_length(partition_key)
        + utf8_length("sort_key")
        + utf8_length(sort_key)
        + utf8_length(EXPERIMENT_MARKER_COUNT_ATTRIBUTE)
        + number_bytes(markers)
        + markers_bytes
    )
    if size > DYNAMODB_ITEM_BYTES:
        return ITEM_TOO_LARGE_TO_UPDATE
    return None


ITEM_TOO_LARGE_TO_UPDATE = "Item size to update has exceeded the maximum allowed size"
"""DynamoDB's words for an `UpdateItem` that would take its item past `DYNAMODB_ITEM_BYTES`."""


def number_bytes(value: int) -> int:
    """The bytes DynamoDB counts for a whole number: one per two significant digits, and one
    more (trailing zeros are not significant)."""
    significant = len(str(abs(value)).rstrip("0")) or 1
    return (significant + 1) // 2 + 1


def marker_partitions(key: MetricKey) -> list[str]:
    """Every partition holding markers of counter `key`'s window, its legacy one included (the
    previous buckets' partitions are among the current ones, `PREVIOUS_MARKER_WRITE_SHARDS`)."""
    buckets = range(MARKER_WRITE_SHARDS)
    if key.granularity is Granularity.EXPERIMENT:
        return [_experiment_user_partition(key, bucket) for bucket in buckets]
    day = key.window_start.strftime(DAY_LABEL_FORMAT)
    return [f"{_marker_prefix(key)}#{day}#B{bucket:02d}" for bucket in buckets] + [
        legacy_marker_partition_key(key)
    ]


def _experiment_user_partition(key: MetricKey, bucket: int) -> str:
    return (
        f"{MARKER_PARTITION_PREFIX}{key_part(key.experiment_id)}#{key_part(key.variant_id)}"
        f"#{EXPERIMENT_WINDOW_LABEL}#B{bucket:02d}"
    )


def legacy_marker_partition_key(key: MetricKey) -> str:
    """The one partition of a day's hourly markers before markers were write-sharded (sort key
    `<HH>#<user>`, no day or experiment markers): still read, and erased."""
    return f"{_marker_prefix(key)}#{key.window_start.strftime(DAY_LABEL_FORMAT)}"


def legacy_marker_key(key: MetricKey, user_id: str) -> MarkerItemKey:
    return legacy_marker_partition_key(key), f"{key.window_start:%H}#{user_id}"


def _marker_prefix(key: MetricKey) -> str:
    return (
        f"{MARKER_PARTITION_PREFIX}{key_part(key.experiment_id)}#{key_part(key.variant_id)}"
        f"#{key.metric}"
    )


SKETCH_PARTITION_PREFIX = "SKETCH#"
"""Partition key prefix of the unique users' sketches (sketch mode): one item per counter and
counter write shard, under the counter's sort key."""


def sketch_partition_key(experiment_id: str, counter_write_shard_number: int) -> str:
    """The partition of an experiment's sketches written by the Kinesis shards of one counter
    write shard (`counter_write_shard`): `SKETCH#<experiment>#W<nn>`."""
    return f"{SKETCH_PARTITION_PREFIX}{key_part(experiment_id)}#W{counter_write_shard_number:02d}"


SKETCH_ATTRIBUTE = "sketch"
"""A sketch item's serialized sketch (binary)."""
SKETCH_VERSION_ATTRIBUTE = "version"
"""A sketch item's write count: each write is conditional on the version it read."""


def sketch_item_size_problem(
    partition_key: str, sort_key: str, sketch: bytes, version: int
) -> str | None:
    """DynamoDB's words for refusing a sketch item for its size, or None when it fits. Its size
    as DynamoDB counts it: each attribute's name and value (a number takes about one byte per
    two digits, and one more)."""
    size = (
        utf8_length("partition_key")
        + utf8_length(partition_key)
        + utf8_length("sort_key")
        + utf8_length(sort_key)
        + utf8_length(SKETCH_ATTRIBUTE)
        + len(sketch)
        + utf8_length(SKETCH_VERSION_ATTRIBUTE)
        + len(str(version)) // 2
        + 2
    )
    if size > DYNAMODB_ITEM_BYTES:
        return ITEM_TOO_LARGE_TO_UPDATE
    return None


TTL_ATTRIBUTE = "expires_at"
"""The aggregation table's time-to-live attribute (epoch seconds): DynamoDB deletes an item some
time after it passes. Provisioning and template.yaml enable TTL on it; the adapters set it."""

EVENT_PREFIX = "EVENT#"
EVENT_SORT_KEY = "EVENT"
LEDGER_SORT_KEY = "REPLAY"


def event_partition_key(event_id: str) -> str:
    """Counters are `EXP#…`, markers `USERS#…`, the replay ledger `REPLAY#…`: no overlap. The id
    is the key's whole remainder and the sort key is constant, so two ids never share an item."""
    return f"{EVENT_PREFIX}{event_id}"


def ledger_partition_key(event_id: str) -> str:
    """A replay claim's item (`LEDGER_SORT_KEY`), one per replayed event id."""
    return f"REPLAY#{event_id}"


JOINED_PREFIX = "joined#"


def joined_attribute(metric: str) -> str:
    """An experiment-to-date counter's count of the variant's exposed users who did `metric`
    that its records joined (`domain.statistics.joined_metrics`)."""
    return f"{JOINED_PREFIX}{metric}"


def watermark_attribute(shard_id: str) -> str:
    return f"{WATERMARK_PREFIX}{shard_id}"


def key_size_problem(partition_key: str, sort_key: str) -> str | None:
    """DynamoDB's words for a key it refuses for its size, or None when it fits."""
    if utf8_length(partition_key) > DYNAMODB_PARTITION_KEY_BYTES:
        return (
            "One or more parameter values were invalid: Size of hashkey has exceeded the "
            f"maximum size limit of {DYNAMODB_PARTITION_KEY_BYTES} bytes"
        )
    if utf8_length(sort_key) > DYNAMODB_SORT_KEY_BYTES:
        return (
            "One or more parameter values were invalid: Aggregated size of all range keys has "
            f"exceeded the size limit of {DYNAMODB_SORT_KEY_BYTES} bytes"
        )
    return None
