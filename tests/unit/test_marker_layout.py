"""The partition keys of first-seen markers and their buckets (docs/storage.md "Marker
buckets")."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.metrics import EXPERIMENT_WINDOW_START, Granularity, MetricKey
from infrastructure.dynamodb_layout import (
    MARKER_WRITE_SHARDS,
    PREVIOUS_MARKER_WRITE_SHARDS,
    marker_key,
    marker_partitions,
    previous_marker_key,
    write_shard,
)

HOUR_10 = datetime(2026, 11, 20, 10, tzinfo=UTC)
KEYS = [
    MetricKey("exp-1", "control", "click", Granularity.HOUR, HOUR_10),
    MetricKey("exp-1", "control", "click", Granularity.DAY, HOUR_10.replace(hour=0)),
    MetricKey("exp-1", "control", "click", Granularity.EXPERIMENT, EXPERIMENT_WINDOW_START),
]


def test_the_buckets_refine_the_previous_ones() -> None:
    assert MARKER_WRITE_SHARDS % PREVIOUS_MARKER_WRITE_SHARDS == 0


@pytest.mark.parametrize("key", KEYS, ids=lambda key: key.granularity.value)
@given(user_id=st.text(min_size=1, max_size=30))
def test_a_users_marker_of_either_bucket_count_is_in_a_partition_that_user_sets_read(
    key: MetricKey, user_id: str
) -> None:
    partitions = marker_partitions(key)

    assert marker_key(key, user_id)[0] in partitions
    assert previous_marker_key(key, user_id)[0] in partitions


@pytest.mark.parametrize("key", KEYS, ids=lambda key: key.granularity.value)
@given(user_id=st.text(min_size=1, max_size=30))
def test_a_user_in_one_of_the_previous_buckets_keeps_the_marker_key(
    key: MetricKey, user_id: str
) -> None:
    kept = write_shard(user_id, MARKER_WRITE_SHARDS) < PREVIOUS_MARKER_WRITE_SHARDS

    assert (marker_key(key, user_id) == previous_marker_key(key, user_id)) is kept
    assert marker_key(key, user_id)[1] == previous_marker_key(key, user_id)[1]


def test_the_markers_of_a_day_are_spread_over_every_bucket_and_the_legacy_partition() -> None:
    partitions = marker_partitions(KEYS[1])

    assert len(partitions) == len(set(partitions)) == MARKER_WRITE_SHARDS + 1
    assert partitions[-1] == "USERS#exp-1#control#click#2026-11-20"
    users = {marker_key(KEYS[1], f"user-{n}")[0] for n in range(2_000)}
    assert users == set(partitions[:-1])


def test_the_experiment_to_date_items_of_a_variant_are_spread_over_every_bucket() -> None:
    partitions = marker_partitions(KEYS[2])

    assert len(set(partitions)) == MARKER_WRITE_SHARDS
    assert partitions[63] == "USERS#exp-1#control#ALL#B63"
