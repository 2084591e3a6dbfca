"""A cost and capacity model of the event processor on AWS, from measured request counts.

Pure: no AWS, no clock. The figures it starts from (`WorkloadProfile`, one per workload and
unique-user mode: exact first-seen markers or sketches) are measured by bench/aws_budget.py,
which runs real batches through the real handler against moto's server and counts every request
with botocore hooks. From them and stated deployment parameters (`Deployment`) it predicts, for
an event rate: shards, batches, DynamoDB write and read units, the write units a second of the
hottest partition key of each kind (against DynamoDB's per-partition limits), Lambda duration
and concurrency per shard, and the monthly cost at on-demand list prices; and the same traffic's
cost for a design without real-time counters (Firehose to S3, dashboards queried with Athena) as
the anchor.

The request arithmetic (`requests_for`) is what tests/e2e/test_capacity_model.py checks against
the requests the real handler makes at small scale.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from infrastructure.dynamodb_layout import COUNTER_WRITE_SHARDS

# --- DynamoDB's billing rules ----------------------------------------------------------------

WRITE_UNIT_BYTES = 1024
"""A standard write request unit covers an item of up to 1 KB; larger items take one per KB."""
READ_UNIT_BYTES = 4096
"""A strongly consistent read unit covers 4 KB; an eventually consistent read takes half."""
PARTITION_WRITE_UNITS_PER_SECOND = 1_000
PARTITION_READ_UNITS_PER_SECOND = 3_000
"""What one DynamoDB partition serves a second; a single partition key never gets more, however
the table splits (adaptive capacity splits a key's items across partitions only by sort key
ranges, and for write-heavy keys not reliably)."""
STORAGE_OVERHEAD_BYTES_PER_ITEM = 100
"""DynamoDB bills 100 bytes of index overhead per item on top of its attributes."""
BATCH_WRITE_ITEMS = 25
BATCH_GET_KEYS = 100
SQS_BATCH_MESSAGES = 10


def attribute_value_bytes(value: Mapping[str, object]) -> int:
    """The size DynamoDB counts for one attribute value in boto3's low-level form
    (`{"S": "…"}`, `{"N": "12"}`, `{"M": {…}}`…), as documented in "Item sizes and formats"."""
    ((kind, content),) = value.items()
    if kind == "S":
        return len(str(content).encode())
    if kind == "N":
        return _number_bytes(str(content))
    if kind == "B":
        return len(content) if isinstance(content, bytes | bytearray) else len(str(content))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(str(s).encode()) for s in _sequence(content))
    if kind == "NS":
        return sum(_number_bytes(str(n)) for n in _sequence(content))
    if kind == "BS":
        return sum(len(b) if isinstance(b, bytes) else len(str(b)) for b in _sequence(content))
    if kind == "L":
        elements = [_mapping(element) for element in _sequence(content)]
        return 3 + sum(1 + attribute_value_bytes(element) for element in elements)
    if kind == "M":
        entries = _mapping(content)
        return 3 + sum(
            1 + len(name.encode()) + attribute_value_bytes(_mapping(element))
            for name, element in entries.items()
        )
    raise ValueError(f"unknown DynamoDB attribute type {kind!r}")


def item_bytes(item: Mapping[str, Mapping[str, object]]) -> int:
    """An item's size as DynamoDB bills it: attribute names plus values."""
    return sum(len(name.encode()) + attribute_value_bytes(value) for name, value in item.items())


def write_units(size: int) -> int:
    """Write request units of writing one item of `size` bytes (standard, not transactional)."""
    return max(1, math.ceil(size / WRITE_UNIT_BYTES))


def read_units(size: int, consistent: bool) -> float:
    """Read request units of reading `size` bytes in one item (GetItem, each BatchGetItem item)
    or one Query page (summed over its items before rounding)."""
    units = max(1, math.ceil(size / READ_UNIT_BYTES))
    return float(units) if consistent else units / 2


def _number_bytes(text: str) -> int:
    digits = text.lstrip("-").replace(".", "").lstrip("0")
    if "e" in digits.lower():  # rare in our items; a number in exponent form: its mantissa
        digits = digits.lower().split("e")[0]
    significant = len(digits.rstrip("0")) or 1
    return math.ceil(significant / 2) + 1


def _sequence(content: object) -> Sequence[object]:
    if isinstance(content, list | tuple | set | frozenset):
        return list(content)
    raise ValueError("a DynamoDB set or list holds a sequence")


def _mapping(content: object) -> Mapping[str, Mapping[str, object]]:
    if isinstance(content, Mapping):
        return content
    raise ValueError("a DynamoDB map or list element holds a mapping")


# --- prices ----------------------------------------------------------------------------------

PRICES_REGION = "eu-west-1"
PRICES_AS_OF = "2026"
HOURS_PER_MONTH = 730
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3_600
GB = 1024**3
TB = 1024**4


@dataclass(frozen=True, slots=True)
class Prices:
    """On-demand list prices in US dollars for eu-west-1 (Ireland) as published for 2026, without
    free tiers, savings plans or reserved capacity. List prices as remembered here, to be checked
    against the AWS price list (https://aws.amazon.com/pricing/) before any decision: the model
    takes them as parameters so that a checked set replaces them in one place."""

    dynamodb_per_million_write_units: float = 0.7063
    dynamodb_per_million_read_units: float = 0.1413
    dynamodb_storage_per_gb_month: float = 0.283
    s3_per_thousand_puts: float = 0.005
    s3_storage_per_gb_month: float = 0.023
    lambda_arm64_per_gb_second: float = 0.0000133334
    lambda_per_million_requests: float = 0.20
    kinesis_per_shard_hour: float = 0.017
    kinesis_per_million_put_payload_units: float = 0.0161
    sqs_per_million_requests: float = 0.40
    firehose_per_gb_ingested: float = 0.031
    athena_per_tb_scanned: float = 5.00


EU_WEST_1_2026 = Prices()

KINESIS_RECORDS_PER_SHARD_SECOND = 1_000
KINESIS_BYTES_PER_SHARD_SECOND = 1_000_000
KINESIS_PUT_PAYLOAD_UNIT_BYTES = 25 * 1024
FIREHOSE_RECORD_ROUNDING_BYTES = 5 * 1024
FIREHOSE_BUFFER_SECONDS = 300
FIREHOSE_BUFFER_BYTES = 128 * 1024 * 1024
ATHENA_MINIMUM_BYTES_PER_QUERY = 10 * 1024 * 1024
LAMBDA_FULL_VCPU_MB = 1_769
"""Lambda gives a function one full vCPU at 1,769 MB and CPU in proportion to memory below."""


# --- what was measured -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BatchCurve:
    """A count per batch measured at several batch sizes (distinct counter keys, archive objects):
    interpolated, and extrapolated, linearly in log-log between the points."""

    points: tuple[tuple[int, float], ...]

    def at(self, batch_records: float) -> float:
        points = sorted((n, v) for n, v in self.points if n > 0 and v > 0)
        if not points:
            return 0.0
        if len(points) == 1:
            n, value = points[0]
            return value * batch_records / n
        if batch_records <= points[0][0]:
            lower, upper = points[0], points[1]
        elif batch_records >= points[-1][0]:
            lower, upper = points[-2], points[-1]
        else:
            lower, upper = next(
                (a, b) for a, b in itertools.pairwise(points) if a[0] <= batch_records <= b[0]
            )
        slope = math.log(upper[1] / lower[1]) / math.log(upper[0] / lower[0])
        return float(lower[1] * math.pow(batch_records / lower[0], slope))


Mode = Literal["exact", "sketch"]
EXACT: Mode = "exact"
SKETCH: Mode = "sketch"
MODES: tuple[Mode, ...] = (EXACT, SKETCH)
"""The unique-user modes (`UNIQUE_USERS`): first-seen markers, or a sketch per counter item."""

MARKERS_PER_WORKER_TASK = 8
"""A worker writes this many markers in a row (dynamodb_unique_user_markers._MARKERS_PER_TASK):
a batch with few new markers writes them on fewer workers than it has."""

NO_CURVE = BatchCurve(())


@dataclass(frozen=True, slots=True)
class WorkloadProfile:
    """What one workload costs the handler in one unique-user mode, measured
    (bench/aws_budget.py).

    Per event, over the measured run (one container, cold at the first batch, warm after):
    new first-seen markers (one conditional UpdateItem each, exact mode), enrichment reads,
    dead letters. Per batch, as curves over the batch size: counter updates (one UpdateItem per
    distinct counter key and batch), archive objects, and in sketch mode the sketch items read
    (one per counter key and batch, in BatchGetItems of 100) and written (those whose sketch
    gained a user). Sizes and units as DynamoDB bills them; the share of the hottest partition
    key of each kind."""

    name: str
    description: str
    event_bytes: float
    archive_bytes_per_event: float
    cpu_seconds_per_event: float
    markers_per_event: float
    counter_updates: BatchCurve
    archive_objects: BatchCurve
    dead_letters_per_event: float
    enrichment_requests_per_event: float
    enrichment_read_units_per_event: float
    marker_item_bytes: float
    counter_item_bytes: float
    """A counter item with one shard's watermark."""
    watermark_bytes_per_shard: float
    """Each shard that writes a counter leaves its own watermark attribute on its write shard's
    item of the counter."""
    hottest_marker_key_share: float
    """Of the marker write units, the share of the partition key with the most. Marker keys do
    not depend on the Kinesis shard (they are spread by user over MARKER_WRITE_SHARDS buckets),
    so the share holds at any number of shards."""
    hottest_counter_key_share: float
    """Measured on one Kinesis shard, which writes one write shard's partition of each
    experiment: the share of the counter writes of the experiment with the most."""
    mode: Mode = EXACT
    marker_write_units_per_item: float = 1.0
    """Measured: an experiment-to-date marker item holds every metric's marker of its user, so
    it grows with the metrics its user did."""
    sketch_reads: BatchCurve = NO_CURVE
    sketch_writes: BatchCurve = NO_CURVE
    sketch_item_bytes: float = 0.0
    sketch_write_units_per_item: float = 0.0
    sketch_read_units_per_item: float = 0.0
    hottest_sketch_key_share: float = 0.0
    """As the counters': measured on one Kinesis shard, the share of the sketch write units of
    the experiment with the most (sketch items are keyed like counters, by experiment and
    counter write shard)."""
    sketch_overhead_bytes: float = 0.0
    """A sketch item's bytes beside its sketch: keys, attribute names, version."""
    client_cpu_seconds_per_request: float = 0.0
    """CPU time of the function's process per AWS request (botocore building, signing and
    parsing it, the adapter around it), at one full vCPU: the handler's CPU time against moto's
    server less the same batches' in memory, over its requests. Markers are one request each, so
    with many new markers this, not the pipeline, is most of a batch's CPU."""


FULL_SKETCH_BYTES = 5_016
"""The largest compact CPC lg_k 13 sketch bench/sketch_error.py measured (docs/performance.md,
"Unique users: sketch mode"): what a sketch item holds once it has seen thousands of users. A
short measurement's sketches are far smaller (sparse), so this is its long-run bound."""


def with_full_sketches(
    profile: WorkloadProfile, sketch_bytes: float = FULL_SKETCH_BYTES
) -> WorkloadProfile:
    """The sketch-mode profile with every sketch item at `sketch_bytes`: each write billed at
    that size, each (strongly consistent) read too; the requests stay the measured ones."""
    item = profile.sketch_overhead_bytes + sketch_bytes
    return replace(
        profile,
        name=f"{profile.name}, full sketches",
        sketch_item_bytes=item,
        sketch_write_units_per_item=write_units(math.ceil(item)),
        sketch_read_units_per_item=read_units(math.ceil(item), consistent=True),
    )


# --- the deployment --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Deployment:
    """Stated parameters; defaults are template.yaml's and entrypoints/settings.py's."""

    batch_size: int = 1_000
    batching_window_seconds: float = 5.0
    memory_mb: int = 1_024
    shard_utilisation: float = 0.8
    """Shards are sized to carry the traffic at this fraction of their write limits."""
    write_concurrency: int = 16
    dynamodb_latency_seconds: float = 0.010
    s3_latency_seconds: float = 0.060
    sqs_latency_seconds: float = 0.020
    retention_days: float = 30.0
    """Markers and archive objects kept (TTL, lifecycle); storage is billed on what is kept."""
    dashboard_refresh_seconds: float = 300.0
    """The anchor's dashboards re-run their Athena query this often."""
    dashboard_scanned_hours: float = 24.0
    """Hours of events each dashboard query scans (the day so far, partition-pruned)."""


# --- predictions -----------------------------------------------------------------------------


def requests_by_kind(
    profile: WorkloadProfile,
    events: float,
    batch_records: float,
) -> dict[str, float]:
    """The requests the handler makes for `events` events in batches of `batch_records`, by
    operation and key prefix (`UpdateItem USERS#`…), as the profile predicts them."""
    batches = events / batch_records
    dead_letters = events * profile.dead_letters_per_event
    predicted = {
        "UpdateItem EXP#": batches * profile.counter_updates.at(batch_records),
        "UpdateItem USERS#": events * profile.markers_per_event,
        "UpdateItem SKETCH#": batches * profile.sketch_writes.at(batch_records),
        "BatchGetItem SKETCH#": batches
        * math.ceil(profile.sketch_reads.at(batch_records) / BATCH_GET_KEYS - 1e-9),
        "BatchGetItem reference data": events * profile.enrichment_requests_per_event,
        "PutObject archive": batches * profile.archive_objects.at(batch_records),
        "SendMessageBatch dead letters": batches
        * math.ceil(dead_letters / batches / SQS_BATCH_MESSAGES - 1e-9),
    }
    return {name: count for name, count in predicted.items() if count > 0}


_OPERATIONS = {
    "UpdateItem": "dynamodb.UpdateItem",
    "BatchGetItem": "dynamodb.BatchGetItem",
    "PutObject": "s3.PutObject",
    "SendMessageBatch": "sqs.SendMessageBatch",
}


def requests_for(
    profile: WorkloadProfile,
    events: float,
    batch_records: float,
) -> dict[str, float]:
    """The same requests by operation (`service.Operation`), as boto3 counts them."""
    by_operation: dict[str, float] = {}
    for kind, count in requests_by_kind(profile, events, batch_records).items():
        operation = _OPERATIONS[kind.split(" ", 1)[0]]
        by_operation[operation] = by_operation.get(operation, 0.0) + count
    return by_operation


@dataclass(frozen=True, slots=True)
class HotKey:
    """The most written partition key of one kind: its item writes and write units a second,
    and the read units a second it serves (sketch items are read before each write)."""

    kind: str
    item_writes_per_second: float
    write_units_per_second: float
    read_units_per_second: float = 0.0

    @property
    def over_limit(self) -> bool:
        return (
            self.write_units_per_second > PARTITION_WRITE_UNITS_PER_SECOND
            or self.read_units_per_second > PARTITION_READ_UNITS_PER_SECOND
        )


@dataclass(frozen=True, slots=True)
class Prediction:
    workload: str
    mode: str
    events_per_second: float
    shards: int
    batch_records: float
    invocations_per_second: float
    lambda_seconds_per_batch: float
    concurrency_per_shard: float
    requests_per_second: dict[str, float]
    requests_by_kind_per_second: dict[str, float]
    write_units_per_second: dict[str, float]
    read_units_per_second: float
    counter_item_bytes: float
    hot_keys: tuple[HotKey, ...]
    monthly_cost: dict[str, float]
    anchor_monthly_cost: dict[str, float]

    @property
    def parallelization_needed(self) -> int:
        """The invocations a shard needs at once (Lambda's ParallelizationFactor, 1 to 10)."""
        return max(1, math.ceil(self.concurrency_per_shard - 1e-9))

    @property
    def write_units_total(self) -> float:
        return sum(self.write_units_per_second.values())

    @property
    def monthly_total(self) -> float:
        return sum(self.monthly_cost.values())

    @property
    def anchor_monthly_total(self) -> float:
        return sum(self.anchor_monthly_cost.values())

    @property
    def first_to_break(self) -> str | None:
        """What passes a hard limit first at this rate, or None."""
        over = [key for key in self.hot_keys if key.over_limit]
        if over:
            worst = max(
                over,
                key=lambda key: max(
                    key.write_units_per_second / PARTITION_WRITE_UNITS_PER_SECOND,
                    key.read_units_per_second / PARTITION_READ_UNITS_PER_SECOND,
                ),
            )
            if worst.write_units_per_second > PARTITION_WRITE_UNITS_PER_SECOND:
                return (
                    f"{worst.kind} partition key at {worst.write_units_per_second:,.0f} WCU/s "
                    f"(limit {PARTITION_WRITE_UNITS_PER_SECOND:,})"
                )
            return (
                f"{worst.kind} partition key at {worst.read_units_per_second:,.0f} RCU/s "
                f"(limit {PARTITION_READ_UNITS_PER_SECOND:,})"
            )
        if self.concurrency_per_shard > 1:
            return (
                f"one invocation per shard cannot keep up ({self.concurrency_per_shard:.2f} "
                "busy): ParallelizationFactor or more shards"
            )
        return None


def shards_for(rate: float, event_bytes: float, deployment: Deployment) -> int:
    by_records = rate / (KINESIS_RECORDS_PER_SHARD_SECOND * deployment.shard_utilisation)
    by_bytes = rate * event_bytes / (KINESIS_BYTES_PER_SHARD_SECOND * deployment.shard_utilisation)
    return max(1, math.ceil(max(by_records, by_bytes) - 1e-9))


def counter_write_keys(shards: int) -> int:
    """The partition keys an experiment's counter writes spread over: one per write shard some
    Kinesis shard uses (docs/storage.md "Counter items")."""
    return min(shards, COUNTER_WRITE_SHARDS)


def watermarks_per_counter_item(shards: int) -> int:
    """Every shard writes every counter (records are spread by user), each into its write
    shard's item: an item carries the watermarks of the shards of its write shard, at most
    this many (all items, below 16 shards or at a multiple of 16)."""
    return math.ceil(shards / COUNTER_WRITE_SHARDS)


def counter_item_bytes(profile: WorkloadProfile, shards: int) -> float:
    """The largest counter item: one measured with one watermark, plus the others of its
    write shard's Kinesis shards."""
    return profile.counter_item_bytes + profile.watermark_bytes_per_shard * (
        watermarks_per_counter_item(shards) - 1
    )


def lambda_seconds(profile: WorkloadProfile, batch_records: float, deployment: Deployment) -> float:
    """CPU time of the pipeline (measured per event at one full vCPU, scaled to the memory's CPU
    share), the enrichment reads (one round each before aggregation), then the writes in the
    order the handler makes them, each on `write_concurrency` workers: the unique users
    (markers, or the sketches' reads then writes), the counters (which wait for the unique
    users: their updates carry the count), the archive objects, the dead letters. The writes
    take their requests' latency in rounds of `write_concurrency`, or their client CPU time if
    that is longer (the workers' Python shares one interpreter lock and the memory's CPU)."""
    cpu_share = min(1.0, deployment.memory_mb / LAMBDA_FULL_VCPU_MB)
    workers = deployment.write_concurrency
    requests = requests_by_kind(profile, batch_records, batch_records)
    dynamodb = deployment.dynamodb_latency_seconds
    markers = requests.get("UpdateItem USERS#", 0.0)
    marker_rounds = max(math.ceil(markers / workers), min(markers, MARKERS_PER_WORKER_TASK))
    sketch_rounds = math.ceil(requests.get("BatchGetItem SKETCH#", 0.0) / workers) + math.ceil(
        requests.get("UpdateItem SKETCH#", 0.0) / workers
    )
    counter_rounds = math.ceil(requests.get("UpdateItem EXP#", 0.0) / workers)
    s3_rounds = math.ceil(requests.get("PutObject archive", 0.0) / workers)
    enrichment = requests.get("BatchGetItem reference data", 0.0)
    waiting = (
        (marker_rounds + sketch_rounds + counter_rounds) * dynamodb
        + s3_rounds * deployment.s3_latency_seconds
        + (deployment.sqs_latency_seconds if requests.get("SendMessageBatch dead letters") else 0.0)
    )
    writes = sum(requests.values()) - enrichment
    client_cpu = writes * profile.client_cpu_seconds_per_request / cpu_share
    return (
        profile.cpu_seconds_per_event * batch_records / cpu_share
        + enrichment * (dynamodb + profile.client_cpu_seconds_per_request / cpu_share)
        + max(waiting, client_cpu)
    )


def batch_records_for(
    profile: WorkloadProfile, per_shard_rate: float, deployment: Deployment
) -> float:
    """Lambda's poller invokes when a batch is full or the batching window has passed, and not
    while the shard's previous invocation runs: records that arrive meanwhile join the next."""
    records = min(
        float(deployment.batch_size), max(1.0, per_shard_rate * deployment.batching_window_seconds)
    )
    for _ in range(50):  # a fixed point: longer batches take longer, and gather more
        duration = lambda_seconds(profile, records, deployment)
        gathered = per_shard_rate * max(deployment.batching_window_seconds, duration)
        following = min(float(deployment.batch_size), max(1.0, gathered))
        if abs(following - records) < 0.5:
            break
        records = following
    return records


def predict(
    profile: WorkloadProfile,
    events_per_second: float,
    deployment: Deployment = Deployment(),
    prices: Prices = EU_WEST_1_2026,
) -> Prediction:
    rate = events_per_second
    shards = shards_for(rate, profile.event_bytes, deployment)
    per_shard = rate / shards
    records = batch_records_for(profile, per_shard, deployment)
    duration = lambda_seconds(profile, records, deployment)
    invocations = rate / records
    requests = requests_for(profile, rate, records)
    by_kind = requests_by_kind(profile, rate, records)
    counter_bytes = counter_item_bytes(profile, shards)
    counter_units = write_units(round(counter_bytes))
    counters_per_second = by_kind.get("UpdateItem EXP#", 0.0)
    markers_per_second = by_kind.get("UpdateItem USERS#", 0.0)
    sketch_writes_per_second = by_kind.get("UpdateItem SKETCH#", 0.0)
    sketch_reads_per_second = rate / records * profile.sketch_reads.at(records)
    units = {"counters EXP#": counters_per_second * counter_units}
    if profile.mode == EXACT:
        units["markers USERS#"] = markers_per_second * profile.marker_write_units_per_item
    else:
        units["sketches SKETCH#"] = sketch_writes_per_second * profile.sketch_write_units_per_item
    sketch_read_units = sketch_reads_per_second * profile.sketch_read_units_per_item
    reads = rate * profile.enrichment_read_units_per_event + sketch_read_units
    keys = counter_write_keys(shards)
    counter_share = profile.hottest_counter_key_share / keys
    hot = [
        HotKey(
            "counter EXP#",
            counters_per_second * counter_share,
            units["counters EXP#"] * counter_share,
        )
    ]
    if profile.mode == EXACT:
        share = profile.hottest_marker_key_share
        hot.append(
            HotKey(
                "marker USERS#",
                markers_per_second * share,
                units["markers USERS#"] * share,
            )
        )
    else:
        share = profile.hottest_sketch_key_share / keys
        hot.append(
            HotKey(
                "sketch SKETCH#",
                sketch_writes_per_second * share,
                units["sketches SKETCH#"] * share,
                sketch_read_units * share,
            )
        )
    cost = _monthly_cost(
        profile,
        rate,
        shards,
        invocations,
        duration,
        requests,
        units,
        reads,
        deployment,
        prices,
    )
    return Prediction(
        workload=profile.name,
        mode=profile.mode,
        events_per_second=rate,
        shards=shards,
        batch_records=records,
        invocations_per_second=invocations,
        lambda_seconds_per_batch=duration,
        concurrency_per_shard=duration * invocations / shards,
        requests_per_second=requests,
        requests_by_kind_per_second=by_kind,
        write_units_per_second=units,
        read_units_per_second=reads,
        counter_item_bytes=counter_bytes,
        hot_keys=tuple(hot),
        monthly_cost=cost,
        anchor_monthly_cost=anchor_monthly_cost(profile, rate, deployment, prices),
    )


def _monthly_cost(
    profile: WorkloadProfile,
    rate: float,
    shards: int,
    invocations: float,
    duration: float,
    requests: Mapping[str, float],
    units: Mapping[str, float],
    reads: float,
    deployment: Deployment,
    prices: Prices,
) -> dict[str, float]:
    """Counters, and in sketch mode their sketches (one item of at most ~5 KB per counter and
    write shard), are a few thousand items: their storage is left out."""
    month = SECONDS_PER_MONTH
    kept = min(1.0, deployment.retention_days * 86_400 / month)
    marker_bytes_kept = (
        rate
        * profile.markers_per_event
        * month
        * kept
        * (profile.marker_item_bytes + STORAGE_OVERHEAD_BYTES_PER_ITEM)
    )
    archive_bytes_kept = rate * profile.archive_bytes_per_event * month * kept
    put_units = math.ceil(profile.event_bytes / KINESIS_PUT_PAYLOAD_UNIT_BYTES)
    return {
        "Kinesis shards": shards * HOURS_PER_MONTH * prices.kinesis_per_shard_hour,
        "Kinesis PUT units": rate
        * put_units
        * month
        / 1e6
        * prices.kinesis_per_million_put_payload_units,
        "Lambda": invocations
        * month
        * (
            duration * deployment.memory_mb / 1024 * prices.lambda_arm64_per_gb_second
            + prices.lambda_per_million_requests / 1e6
        ),
        "DynamoDB writes": sum(units.values())
        * month
        / 1e6
        * prices.dynamodb_per_million_write_units,
        "DynamoDB reads": reads * month / 1e6 * prices.dynamodb_per_million_read_units,
        "DynamoDB storage": marker_bytes_kept / GB * prices.dynamodb_storage_per_gb_month,
        "S3 PUTs": requests.get("s3.PutObject", 0.0) * month / 1e3 * prices.s3_per_thousand_puts,
        "S3 storage": archive_bytes_kept / GB * prices.s3_storage_per_gb_month,
        "SQS": requests.get("sqs.SendMessageBatch", 0.0)
        * month
        / 1e6
        * prices.sqs_per_million_requests,
    }


def anchor_monthly_cost(
    profile: WorkloadProfile,
    rate: float,
    deployment: Deployment = Deployment(),
    prices: Prices = EU_WEST_1_2026,
) -> dict[str, float]:
    """Firehose (direct PUT, producers packing events into records of at least 5 KB so that
    Firehose's 5 KB rounding adds nothing) to S3 in compressed objects (the archive's measured
    compression), dashboards answered by an Athena query over the hours they show, re-run every
    `dashboard_refresh_seconds`. No real-time counters, no unique-user markers: a dashboard is as
    fresh as Firehose's buffer (up to 5 minutes) plus the query."""
    month = SECONDS_PER_MONTH
    ingested = rate * profile.event_bytes * month
    stored_per_second = rate * profile.archive_bytes_per_event
    objects_per_second = max(
        1 / FIREHOSE_BUFFER_SECONDS, stored_per_second * 1.0 / FIREHOSE_BUFFER_BYTES
    )
    kept = min(1.0, deployment.retention_days * 86_400 / month)
    scanned = max(
        ATHENA_MINIMUM_BYTES_PER_QUERY,
        stored_per_second * deployment.dashboard_scanned_hours * 3_600,
    )
    queries = month / deployment.dashboard_refresh_seconds
    return {
        "Firehose ingestion": ingested / GB * prices.firehose_per_gb_ingested,
        "S3 PUTs": objects_per_second * month / 1e3 * prices.s3_per_thousand_puts,
        "S3 storage": stored_per_second * month * kept / GB * prices.s3_storage_per_gb_month,
        "Athena": queries * scanned / TB * prices.athena_per_tb_scanned,
    }


# --- the table -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelTable:
    deployment: Deployment
    prices: Prices
    predictions: tuple[Prediction, ...]


def model_table(
    profiles: Sequence[WorkloadProfile],
    rates: Sequence[float] = (1_000, 10_000, 100_000),
    deployment: Deployment = Deployment(),
    prices: Prices = EU_WEST_1_2026,
) -> ModelTable:
    return ModelTable(
        deployment,
        prices,
        tuple(predict(profile, rate, deployment, prices) for profile in profiles for rate in rates),
    )


def first_break_rate(
    profile: WorkloadProfile,
    deployment: Deployment = Deployment(),
    highest: float = 1_000_000,
    partition_keys_only: bool = False,
) -> tuple[float, str] | None:
    """The lowest rate (to 1%) at which something passes a hard limit, and what, or None.
    `partition_keys_only`: the partition keys' limits alone, as when a ParallelizationFactor
    above 1 lets each shard's batches keep up."""

    def broken(rate: float) -> str | None:
        prediction = predict(profile, rate, deployment)
        if not partition_keys_only:
            return prediction.first_to_break
        over = [key for key in prediction.hot_keys if key.over_limit]
        return None if not over else replace(prediction, concurrency_per_shard=0.0).first_to_break

    if broken(highest) is None:
        return None
    low, high = 100.0, highest
    while high / low > 1.01:
        middle = math.sqrt(low * high)
        if broken(middle) is None:
            low = middle
        else:
            high = middle
    reason = broken(high)
    assert reason is not None
    return high, reason
