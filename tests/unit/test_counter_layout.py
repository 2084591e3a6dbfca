"""The partition keys of counters (docs/storage.md "Counter items")."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infrastructure.dynamodb_layout import (
    COUNTER_PARTITION_PREFIX,
    COUNTER_WRITE_SHARDS,
    counter_partition_key,
    counter_partition_keys,
    counter_write_shard,
    legacy_counter_partition_key,
)


def test_a_counter_partition_key_names_the_escaped_experiment_and_two_digits_of_write_shard() -> (
    None
):
    assert counter_partition_key("exp-1", 0) == "EXP#exp-1#W00"
    assert counter_partition_key("a#b%c", 15) == "EXP#a%23b%25c#W15"
    assert legacy_counter_partition_key("a#b") == "EXP#a#b"


@pytest.mark.parametrize("write_shard", [-1, COUNTER_WRITE_SHARDS])
def test_a_write_shard_outside_the_layout_is_refused(write_shard: int) -> None:
    with pytest.raises(ValueError, match="write shard"):
        counter_partition_key("exp-1", write_shard)


def test_kinesis_shards_in_creation_order_spread_evenly_over_the_write_shards() -> None:
    shards = [f"shardId-{n:012d}" for n in range(3 * COUNTER_WRITE_SHARDS)]
    spread = [counter_write_shard(shard) for shard in shards]
    assert spread == list(range(COUNTER_WRITE_SHARDS)) * 3


@given(st.text(min_size=1, max_size=40))
def test_a_report_reads_each_write_shard_and_the_legacy_partition_once(
    experiment_id: str,
) -> None:
    keys = counter_partition_keys(experiment_id)
    assert len(keys) == len(set(keys)) == COUNTER_WRITE_SHARDS + 1
    assert all(key.startswith(COUNTER_PARTITION_PREFIX) for key in keys)


@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
def test_two_experiments_never_share_a_write_shard_partition(first: str, second: str) -> None:
    if first != second:
        assert not set(counter_partition_keys(first)[:-1]) & set(
            counter_partition_keys(second)[:-1]
        )


@given(st.text(min_size=1, max_size=40))
def test_any_other_kinesis_shard_id_has_a_write_shard_of_the_layout(shard_id: str) -> None:
    assert 0 <= counter_write_shard(shard_id) < COUNTER_WRITE_SHARDS
