"""A synthetic aggregation table of one large experiment, written straight in the stored layout
(docs/storage.md), to measure what a report reads without pushing millions of events through
the pipeline.

The users' activity is drawn with numpy (`generate_activity`); every stored number is then
computed exactly from it, as `DynamoDbMetricStore` would have stored it after processing the
activity's events (`counter_items`): hour, day and experiment-to-date counters, one item per
Kinesis shard's counter write shard, with their measures, unique users, watermarks and, on the
experiment-to-date counters, the exposed users who did each metric (`joined#<metric>`).

How the activity maps to what the store writes:
- a user's events all go to one Kinesis shard, chosen as Kinesis does from the partition key
  (producers partition by user id): the MD5 of the user id, in the shard's share of the 128-bit
  hash key range. The user's first-seen markers are written by that shard's records, so the
  user is counted in that shard's counter items only;
- a user arrives on some day, and is active on that day and on each later day with some
  probability; an active day is one session within one UTC hour, holding the day's exposures,
  then clicks, then purchases (a user may click without an exposure that day, or at all: one
  who arrives without an exposure arrives with a click);
- the order of a user's first events in the experiment is: by day, and within a day exposure,
  click, purchase. The exposed users who did a metric are joined by the later of the two first
  events (`domain.statistics.joined_metrics`): the metric's counter when the exposure came first
  (the same day included), the exposure counter when the metric came on an earlier day.

Markers (`marker_items`) are the first-seen items of the hour, day and experiment windows, in
`marker_key`'s layout. A report whose range holds every event reads the stored counts and never
reads a marker, so a table built to measure that path needs none; a few of them make a stray
marker `Query` visible in a count of the items read. A table for the user-set path needs them
all (one per user and window, so only at a small scale).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from application.ports import NoDeadline
from domain.experiments import Experiment, ExperimentStatus, Variant
from domain.metrics import EXPERIMENT_WINDOW_START, Granularity, Measures, MetricKey
from domain.records import padded_sequence
from domain.statistics import EXPOSURE_METRIC
from infrastructure.aws.dynamodb_codec import (
    BATCH_WRITE_LIMIT,
    Backoff,
    Item,
    chunked,
    number,
    put_items,
    string,
)
from infrastructure.aws.dynamodb_unique_user_markers import WRITER_ATTRIBUTE
from infrastructure.dynamodb_layout import (
    EXPERIMENT_MARKER_COUNT_ATTRIBUTE,
    counter_partition_key,
    counter_sort_key,
    counter_write_shard,
    experiment_marker_attributes,
    joined_attribute,
    marker_key,
    watermark_attribute,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

METRICS: tuple[str, ...] = (EXPOSURE_METRIC, "click", "purchase")
"""In the order of a session: a day's exposures come before its clicks, its clicks before its
purchases."""
VARIANTS: tuple[str, ...] = ("control", "treatment")
FIRST_SEQUENCE = 49_650_000_000_000_000_000_000_000_000_000_000_000_000_000
"""Where every shard's sequence numbers start (Kinesis's are about 56 digits)."""
_NO_DAY = np.int16(np.iinfo(np.int16).max)
"""The first day of a metric a user never did: after every real day."""

UInt8Array = npt.NDArray[np.uint8]
Int32Array = npt.NDArray[np.int32]
Int64Array = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class ReportTableSpec:
    """The experiment's shape and its users' behaviour."""

    experiment_id: str = "exp-scale"
    users: int = 1_000_000
    days: int = 14
    first_day: datetime = datetime(2026, 3, 2, tzinfo=UTC)
    kinesis_shards: int = 4
    return_probability: float = 0.3
    """The chance that a user who arrived is active on a later day."""
    exposure_probability: float = 0.9
    """The chance that an active day has exposures (else the user only clicks or buys)."""
    click_probability: tuple[float, ...] = (0.10, 0.11)
    """Per variant (in `VARIANTS` order), the chance that an active day has clicks."""
    purchase_probability: tuple[float, ...] = (0.030, 0.033)
    seed: int = 14

    @property
    def shard_ids(self) -> tuple[str, ...]:
        return tuple(f"shardId-{index:012d}" for index in range(self.kinesis_shards))

    @property
    def end(self) -> datetime:
        return self.first_day + timedelta(days=self.days)

    def experiment(self) -> Experiment:
        return Experiment(
            experiment_id=self.experiment_id,
            name="Synthetic experiment at scale",
            status=ExperimentStatus.RUNNING,
            variants=tuple(Variant(variant_id=v, weight=1) for v in VARIANTS),
        )


@dataclass(frozen=True, slots=True)
class Activity:
    """What every user did, day by day: arrays indexed [user] or [user, day]."""

    spec: ReportTableSpec
    user_ids: tuple[str, ...]
    variant: UInt8Array
    """Index into `VARIANTS`."""
    shard: UInt8Array
    """Index into `spec.shard_ids`: the Kinesis shard of the user's events."""
    hour: UInt8Array
    """[user, day]: the UTC hour of the day's session (meaningless on an inactive day)."""
    events: dict[str, UInt8Array] = field(default_factory=dict)
    """Per metric, [user, day]: how many events of the metric the user sent that day."""
    purchase_cents: Int32Array = field(default_factory=lambda: np.zeros((0, 0), np.int32))
    """[user, day]: the value of the day's purchases, in cents (each purchase has a value)."""

    def first_day(self, metric: str) -> npt.NDArray[np.int16]:
        """[user]: the first day the user did the metric, `_NO_DAY` when never."""
        did = self.events[metric] > 0
        return np.where(did.any(axis=1), did.argmax(axis=1), _NO_DAY).astype(np.int16)


def kinesis_shard(user_id: str, shards: int) -> int:
    """The shard Kinesis puts a record with this partition key in, when the shards split the
    128-bit hash key range evenly (as a stream created with that many shards does)."""
    hash_key = int.from_bytes(hashlib.md5(user_id.encode()).digest(), "big")
    return (hash_key * shards) >> 128


def generate_activity(spec: ReportTableSpec) -> Activity:
    """Every user's activity, drawn from `spec.seed` (the same spec gives the same activity)."""
    rng = np.random.default_rng(spec.seed)
    users, days = spec.users, spec.days
    user_ids = tuple(f"u{index:08d}" for index in range(users))
    variant = rng.integers(0, len(VARIANTS), users, dtype=np.uint8)
    shard = np.fromiter(
        (kinesis_shard(user_id, spec.kinesis_shards) for user_id in user_ids),
        dtype=np.uint8,
        count=users,
    )
    arrival = rng.integers(0, days, users)
    # Sessions lean towards the daytime: the weights of a plausible day in UTC.
    hour_weights = np.array(
        [1, 1, 1, 1, 1, 2, 3, 5, 7, 8, 8, 8, 8, 8, 8, 8, 8, 7, 6, 5, 4, 3, 2, 1]
    )
    hour = rng.choice(24, size=(users, days), p=hour_weights / hour_weights.sum()).astype(np.uint8)
    click_p = np.asarray(spec.click_probability)[variant]
    purchase_p = np.asarray(spec.purchase_probability)[variant]
    events = {metric: np.zeros((users, days), np.uint8) for metric in METRICS}
    purchase_cents = np.zeros((users, days), np.int32)
    for day in range(days):
        active = (arrival == day) | (
            (arrival < day) & (rng.random(users) < spec.return_probability)
        )
        exposed = active & (rng.random(users) < spec.exposure_probability)
        events[EXPOSURE_METRIC][:, day] = exposed * (1 + rng.poisson(0.5, users))
        # A user arrives with an exposure or, when not exposed that day, with a click (a link
        # straight to the page): every user of the experiment did something.
        arrived_unexposed = (arrival == day) & ~exposed
        clicked = (active & (rng.random(users) < click_p)) | arrived_unexposed
        events["click"][:, day] = clicked * (1 + rng.poisson(0.3, users))
        bought = active & (rng.random(users) < purchase_p)
        events["purchase"][:, day] = bought
        purchase_cents[:, day] = bought * rng.integers(500, 20_000, users)
    return Activity(spec, user_ids, variant, shard, hour, events, purchase_cents)


@dataclass(frozen=True, slots=True)
class _Group:
    """The users of one variant whose events go to one Kinesis shard."""

    variant_id: str
    shard_id: str
    members: BoolArray


def _groups(activity: Activity) -> Iterator[_Group]:
    for variant_index, variant_id in enumerate(VARIANTS):
        for shard_index, shard_id in enumerate(activity.spec.shard_ids):
            members = (activity.variant == variant_index) & (activity.shard == shard_index)
            yield _Group(variant_id, shard_id, members)


def _shard_sequences(activity: Activity) -> dict[str, Int64Array]:
    """Per Kinesis shard, [day, hour]: the sequence number of the shard's last record up to the
    end of that hour (its records come in time order, numbered from `FIRST_SEQUENCE` on)."""
    spec = activity.spec
    total = np.zeros((spec.users, spec.days), np.int64)
    for counts in activity.events.values():
        total += counts
    sequences = {}
    for shard_index, shard_id in enumerate(spec.shard_ids):
        on_shard = activity.shard == shard_index
        per_hour = np.zeros((spec.days, 24), np.int64)
        for day in range(spec.days):
            per_hour[day] = np.bincount(
                activity.hour[on_shard, day], weights=total[on_shard, day], minlength=24
            ).astype(np.int64)
        sequences[shard_id] = np.cumsum(per_hour.ravel()).reshape(spec.days, 24)
    return sequences


def counter_items(
    activity: Activity, granularities: Collection[Granularity] = tuple(Granularity)
) -> list[Item]:
    """Every counter item of `granularities` the store would hold after the activity's events:
    hour, day and experiment-to-date counters of each variant and metric, one item per counter
    write shard that some event reached, as `DynamoDbMetricStore._update_counter` writes them.
    (A day report's sort-key range never reaches the hour counters: a table built to measure it
    may leave them out.)"""
    spec = activity.spec
    sequences = _shard_sequences(activity)
    first_days = {metric: activity.first_day(metric) for metric in METRICS}
    items: list[Item] = []
    for group in _groups(activity):
        watermarks = sequences[group.shard_id]
        for metric in METRICS:
            counts = activity.events[metric][group.members].astype(np.int64)
            cents = activity.purchase_cents[group.members].astype(np.int64)
            hours = activity.hour[group.members]
            valued = metric == "purchase"
            for day in range(spec.days):
                did = counts[:, day] > 0
                day_start = spec.first_day + timedelta(days=day)
                by_hour_events = np.bincount(hours[did, day], counts[did, day], 24).astype(np.int64)
                by_hour_users = np.bincount(hours[did, day], minlength=24)
                by_hour_cents = np.bincount(hours[did, day], cents[did, day], 24).astype(np.int64)
                counted_hours = (
                    np.flatnonzero(by_hour_events) if Granularity.HOUR in granularities else ()
                )
                for hour in counted_hours:
                    window = day_start + timedelta(hours=int(hour))
                    items.append(
                        _counter_item(
                            MetricKey(
                                spec.experiment_id,
                                group.variant_id,
                                metric,
                                Granularity.HOUR,
                                window,
                            ),
                            group.shard_id,
                            _measures(
                                int(by_hour_events[hour]),
                                int(by_hour_cents[hour]) if valued else None,
                                int(by_hour_users[hour]),
                            ),
                            int(watermarks[day, hour]),
                            window + timedelta(hours=1),
                        )
                    )
                if did.any() and Granularity.DAY in granularities:
                    items.append(
                        _counter_item(
                            MetricKey(
                                spec.experiment_id,
                                group.variant_id,
                                metric,
                                Granularity.DAY,
                                day_start,
                            ),
                            group.shard_id,
                            _measures(
                                int(counts[:, day].sum()),
                                int(cents[did, day].sum()) if valued else None,
                                int(did.sum()),
                            ),
                            int(watermarks[day, int(hours[did, day].max())]),
                            day_start + timedelta(days=1),
                        )
                    )
            did_ever = counts.sum(axis=1) > 0
            if not did_ever.any() or Granularity.EXPERIMENT not in granularities:
                continue
            last_day = int(np.flatnonzero(counts.sum(axis=0))[-1])
            items.append(
                _counter_item(
                    MetricKey(
                        spec.experiment_id,
                        group.variant_id,
                        metric,
                        Granularity.EXPERIMENT,
                        EXPERIMENT_WINDOW_START,
                    ),
                    group.shard_id,
                    _measures(
                        int(counts.sum()),
                        int(cents[counts > 0].sum()) if valued else None,
                        int(did_ever.sum()),
                    ),
                    int(watermarks[last_day, int(hours[counts[:, last_day] > 0, last_day].max())]),
                    spec.end,
                    _joined(metric, first_days, group.members),
                )
            )
    return items


def _joined(
    metric: str, first_days: dict[str, npt.NDArray[np.int16]], members: BoolArray
) -> dict[str, int]:
    """The exposed users who did each metric that this metric's records joined: the later of
    the user's first exposure and first event of the metric joins them (a tie is one session,
    exposure first, so the metric joins)."""
    exposure = first_days[EXPOSURE_METRIC][members]
    if metric != EXPOSURE_METRIC:
        mine = first_days[metric][members]
        return {metric: int(((exposure != _NO_DAY) & (mine != _NO_DAY) & (exposure <= mine)).sum())}
    joined = {}
    for other in METRICS:
        if other == EXPOSURE_METRIC:
            continue
        theirs = first_days[other][members]
        joined[other] = int(
            ((exposure != _NO_DAY) & (theirs != _NO_DAY) & (theirs < exposure)).sum()
        )
    return joined


def _measures(events: int, cents: int | None, users: int) -> Measures:
    if cents is None:
        return Measures(event_count=events, unique_users=users)
    return Measures(events, Decimal(cents).scaleb(-2), events, users)


def _counter_item(
    key: MetricKey,
    shard_id: str,
    measures: Measures,
    watermark_offset: int,
    updated_at: datetime,
    joined: dict[str, int] | None = None,
) -> Item:
    item: Item = {
        "partition_key": string(
            counter_partition_key(key.experiment_id, counter_write_shard(shard_id))
        ),
        "sort_key": string(counter_sort_key(key)),
        **{name: number(amount) for name, amount in measures.as_numbers().items()},
        watermark_attribute(shard_id): string(padded_sequence(FIRST_SEQUENCE + watermark_offset)),
        "updated_at": string(updated_at.isoformat()),
        "experiment_id": string(key.experiment_id),
        "variant_id": string(key.variant_id),
        "metric": string(key.metric),
        "granularity": string(key.granularity.value),
        "window_start": string(key.window_start.astimezone(UTC).isoformat()),
    }
    for metric, users in (joined or {}).items():
        if users:
            item[joined_attribute(metric)] = number(users)
    return item


def marker_items(activity: Activity, users: int | None = None) -> list[Item]:
    """The first-seen markers of the first `users` users (all when None): one per hour and day
    the user did each metric, and the user's experiment-to-date item holding a marker per metric
    done, numbered in the order of the user's first events. Each names a record of the user's
    shard (`<shard id>/<sequence>`), not the true one: what a report reads of a marker is its
    user."""
    spec = activity.spec
    items: list[Item] = []
    count = spec.users if users is None else min(users, spec.users)
    for index in range(count):
        user_id = activity.user_ids[index]
        variant_id = VARIANTS[int(activity.variant[index])]
        shard_id = spec.shard_ids[int(activity.shard[index])]
        writer = f"{shard_id}/{padded_sequence(FIRST_SEQUENCE + index)}"
        firsts: list[tuple[int, int, str]] = []
        for order, metric in enumerate(METRICS):
            days = np.flatnonzero(activity.events[metric][index])
            if days.size:
                firsts.append((int(days[0]), order, metric))
            for day in days:
                day_start = spec.first_day + timedelta(days=int(day))
                hour_start = day_start + timedelta(hours=int(activity.hour[index, day]))
                for granularity, window in (
                    (Granularity.HOUR, hour_start),
                    (Granularity.DAY, day_start),
                ):
                    key = MetricKey(spec.experiment_id, variant_id, metric, granularity, window)
                    partition, sort = marker_key(key, user_id)
                    items.append(
                        {
                            "partition_key": string(partition),
                            "sort_key": string(sort),
                            WRITER_ATTRIBUTE: string(writer),
                        }
                    )
        if not firsts:
            continue
        to_date = MetricKey(
            spec.experiment_id,
            variant_id,
            METRICS[0],
            Granularity.EXPERIMENT,
            EXPERIMENT_WINDOW_START,
        )
        partition, sort = marker_key(to_date, user_id)
        item: Item = {"partition_key": string(partition), "sort_key": string(sort)}
        for place, (_, _, metric) in enumerate(sorted(firsts), start=1):
            marker, place_attribute = experiment_marker_attributes(metric)
            item[marker] = string(writer)
            item[place_attribute] = number(place)
        item[EXPERIMENT_MARKER_COUNT_ATTRIBUTE] = number(len(firsts))
        items.append(item)
    return items


def write_items(
    client: DynamoDBClient, table_name: str, items: Sequence[Item], max_workers: int = 8
) -> None:
    """Put the items, 25 to a BatchWriteItem, several at once; raises if any is left
    unwritten."""
    deadline = NoDeadline()
    backoff = Backoff()
    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="report-table") as pool:
        left = pool.map(
            lambda chunk: put_items(client, table_name, chunk, backoff, deadline),
            chunked(list(items), BATCH_WRITE_LIMIT),
        )
        unwritten = sum(len(chunk) for chunk in left)
    if unwritten:
        raise RuntimeError(f"{unwritten} items of {table_name} still unwritten after retries")
