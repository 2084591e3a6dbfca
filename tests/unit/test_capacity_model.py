"""The cost and capacity model's arithmetic (bench/capacity_model.py): DynamoDB's billing rules,
the requests a batch needs, and what a rate asks of partitions, shards and Lambda."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from bench.capacity_model import (
    PARTITION_WRITE_UNITS_PER_SECOND,
    PRICES_AS_OF,
    PRICES_REGION,
    SKETCH,
    BatchCurve,
    Deployment,
    WorkloadProfile,
    anchor_monthly_cost,
    counter_item_bytes,
    first_break_rate,
    item_bytes,
    lambda_seconds,
    predict,
    read_units,
    requests_by_kind,
    requests_for,
    shards_for,
    with_full_sketches,
    write_units,
)

REFERENCE_LIKE = WorkloadProfile(
    name="reference",
    description="measured shape of the reference workload",
    event_bytes=303.0,
    archive_bytes_per_event=111.0,
    cpu_seconds_per_event=40e-6,
    markers_per_event=2.5,
    counter_updates=BatchCurve(((100, 205.0), (1_000, 276.0), (10_000, 276.0))),
    archive_objects=BatchCurve(((100, 2.0), (1_000, 2.0), (10_000, 11.0))),
    dead_letters_per_event=0.005,
    enrichment_requests_per_event=0.0105,
    enrichment_read_units_per_event=0.46,
    marker_item_bytes=77.0,
    counter_item_bytes=337.0,
    watermark_bytes_per_shard=87.0,
    hottest_marker_key_share=0.026,
    hottest_counter_key_share=0.13,
    marker_write_units_per_item=1.0,
)

WIDE = Deployment(write_concurrency=64)
"""A function that writes on 64 workers (WRITE_CONCURRENCY), as a shard of many new markers
needs: each marker is a request of its own."""

SKETCH_LIKE = replace(
    REFERENCE_LIKE,
    mode=SKETCH,
    markers_per_event=0.0,
    marker_item_bytes=0.0,
    hottest_marker_key_share=0.0,
    sketch_reads=BatchCurve(((100, 205.0), (1_000, 276.0), (10_000, 276.0))),
    sketch_writes=BatchCurve(((100, 200.0), (1_000, 250.0), (10_000, 270.0))),
    sketch_item_bytes=2_500.0,
    sketch_write_units_per_item=3.0,
    sketch_read_units_per_item=1.0,
    hottest_sketch_key_share=0.13,
)


def test_item_size_counts_attribute_names_and_values_as_dynamodb_documents() -> None:
    item: dict[str, dict[str, object]] = {
        "partition_key": {"S": "USERS#exp-01#control#click#2026-11-20"},
        "count": {"N": "12345"},  # 5 significant digits: 3 bytes + 1
        "flag": {"BOOL": True},
        "tags": {"L": [{"S": "ab"}, {"N": "7"}]},  # 3 + (1 + 2) + (1 + 2)
        "measures": {"M": {"n": {"N": "1"}}},  # 3 + 1 + len("n") + 2
    }
    expected = (
        len("partition_key") + len("USERS#exp-01#control#click#2026-11-20")
        + len("count") + 4
        + len("flag") + 1
        + len("tags") + 9
        + len("measures") + 7
    )  # fmt: skip
    assert item_bytes(item) == expected


def test_writes_are_billed_per_started_kilobyte_and_reads_per_started_four_kilobytes() -> None:
    assert [write_units(size) for size in (1, 1024, 1025, 11_000)] == [1, 1, 2, 11]
    assert read_units(4096, consistent=True) == 1.0
    assert read_units(4097, consistent=True) == 2.0
    assert read_units(100, consistent=False) == 0.5


def test_a_batch_curve_passes_through_its_measured_points_and_grows_between_them() -> None:
    curve = BatchCurve(((100, 200.0), (1_000, 280.0)))
    assert curve.at(100) == pytest.approx(200.0)
    assert curve.at(1_000) == pytest.approx(280.0)
    assert 200.0 < curve.at(300) < 280.0


def test_each_marker_is_an_update_of_its_own_and_counters_one_update_per_key_and_batch() -> None:
    by_kind = requests_by_kind(REFERENCE_LIKE, events=10_000, batch_records=1_000)
    assert by_kind["UpdateItem EXP#"] == pytest.approx(10 * 276)
    assert by_kind["UpdateItem USERS#"] == pytest.approx(25_000)
    requests = requests_for(REFERENCE_LIKE, events=10_000, batch_records=1_000)
    assert requests["dynamodb.UpdateItem"] == pytest.approx(10 * 276 + 25_000)
    assert "dynamodb.BatchWriteItem" not in requests
    assert requests["sqs.SendMessageBatch"] == 10 * 1


def test_sketch_mode_reads_its_items_a_hundred_to_a_request_and_writes_those_that_changed() -> None:
    by_kind = requests_by_kind(SKETCH_LIKE, events=10_000, batch_records=1_000)
    assert "UpdateItem USERS#" not in by_kind
    assert by_kind["UpdateItem SKETCH#"] == pytest.approx(10 * 250)
    assert by_kind["BatchGetItem SKETCH#"] == 10 * math.ceil(276 / 100)
    requests = requests_for(SKETCH_LIKE, events=10_000, batch_records=1_000)
    assert requests["dynamodb.UpdateItem"] == pytest.approx(10 * (276 + 250))
    assert requests["dynamodb.BatchGetItem"] == pytest.approx(10 * 3 + 10_000 * 0.0105)


def test_sketch_mode_writes_fewer_requests_but_bills_each_sketch_by_its_size() -> None:
    exact, sketch = predict(REFERENCE_LIKE, 10_000), predict(SKETCH_LIKE, 10_000)
    assert sketch.mode == SKETCH
    assert "markers USERS#" not in sketch.write_units_per_second
    updates = sketch.requests_by_kind_per_second["UpdateItem SKETCH#"]
    assert sketch.write_units_per_second["sketches SKETCH#"] == pytest.approx(3 * updates)
    assert (
        sketch.requests_per_second["dynamodb.UpdateItem"]
        < exact.requests_per_second["dynamodb.UpdateItem"]
    )
    assert sketch.read_units_per_second > exact.read_units_per_second


def test_the_hottest_sketch_key_takes_its_experiments_share_over_the_write_shards_in_use() -> None:
    prediction = predict(SKETCH_LIKE, 100_000)
    _counters, sketches = prediction.hot_keys
    assert sketches.kind == "sketch SKETCH#"
    written = prediction.requests_by_kind_per_second["UpdateItem SKETCH#"]
    assert sketches.item_writes_per_second == pytest.approx(written * 0.13 / 16)
    assert sketches.read_units_per_second > 0


def test_a_busy_batch_writes_its_markers_on_every_worker_and_a_quiet_one_on_few() -> None:
    few = replace(REFERENCE_LIKE, markers_per_event=0.004, cpu_seconds_per_event=0.0)
    many = replace(REFERENCE_LIKE, markers_per_event=2.5, cpu_seconds_per_event=0.0)
    quiet, busy = (
        lambda_seconds(few, 1_000, Deployment()),
        lambda_seconds(many, 1_000, Deployment()),
    )
    # 4 markers take 4 requests in a row on one worker; 2,500 take 157 rounds of 16.
    assert busy - quiet == pytest.approx((157 - 4) * Deployment().dynamodb_latency_seconds)


def test_shards_are_sized_to_carry_the_rate_at_eighty_percent_of_their_record_limit() -> None:
    assert shards_for(1_000, 303.0, Deployment()) == 2
    assert shards_for(100_000, 303.0, Deployment()) == 125


def test_a_counter_item_holds_the_watermarks_of_its_write_shards_kinesis_shards_only() -> None:
    assert counter_item_bytes(REFERENCE_LIKE, shards=16) == pytest.approx(337.0)
    grown = counter_item_bytes(REFERENCE_LIKE, shards=125)  # 8 of them in write shards 0 to 12
    assert grown == pytest.approx(337.0 + 87.0 * 7)
    assert write_units(round(grown)) == 1
    assert write_units(round(counter_item_bytes(REFERENCE_LIKE, shards=16 * 9))) == 2


def test_counter_writes_of_an_experiment_spread_over_one_key_per_write_shard_in_use() -> None:
    def hottest_counter_key(rate: float) -> tuple[int, float, float]:
        prediction = predict(REFERENCE_LIKE, rate)
        counters = prediction.hot_keys[0]
        return (
            prediction.shards,
            counters.item_writes_per_second,
            prediction.requests_by_kind_per_second["UpdateItem EXP#"],
        )

    shards, hottest, all_updates = hottest_counter_key(1_000)
    assert shards == 2
    assert hottest == pytest.approx(all_updates * 0.13 / 2)
    shards, hottest, all_updates = hottest_counter_key(100_000)
    assert shards == 125
    assert hottest == pytest.approx(all_updates * 0.13 / 16)


def test_at_a_thousand_events_a_second_no_partition_key_nears_its_limit() -> None:
    # 64 write workers: at 16, a shard's markers alone keep its invocation busy (next test).
    prediction = predict(REFERENCE_LIKE, 1_000, WIDE)
    assert prediction.first_to_break is None
    assert all(key.write_units_per_second < 100 for key in prediction.hot_keys)
    assert prediction.concurrency_per_shard < 1


def test_with_sixteen_write_workers_a_shard_of_new_markers_keeps_its_invocation_busy() -> None:
    found = first_break_rate(REFERENCE_LIKE)
    assert found is not None
    rate, what = found
    assert rate < 1_000
    assert what.startswith("one invocation per shard cannot keep up")
    assert predict(REFERENCE_LIKE, 1_000, WIDE).concurrency_per_shard < 0.5


def test_at_a_hundred_thousand_events_a_second_the_hottest_marker_partition_breaks_first() -> None:
    prediction = predict(REFERENCE_LIKE, 100_000)
    counters, markers = prediction.hot_keys
    assert counters.write_units_per_second < PARTITION_WRITE_UNITS_PER_SECOND
    assert markers.write_units_per_second > PARTITION_WRITE_UNITS_PER_SECOND
    assert prediction.first_to_break is not None
    assert prediction.first_to_break.startswith("marker USERS#")


def test_the_first_break_rate_is_where_the_prediction_starts_to_break() -> None:
    found = first_break_rate(REFERENCE_LIKE, WIDE)
    assert found is not None
    rate, what = found
    assert 1_000 < rate < 100_000
    assert "USERS#" in what
    assert predict(REFERENCE_LIKE, rate * 0.97, WIDE).first_to_break is None


def test_write_units_grow_with_the_rate_and_markers_dominate_at_low_rates() -> None:
    low, high = predict(REFERENCE_LIKE, 1_000), predict(REFERENCE_LIKE, 10_000)
    assert high.write_units_total > 9 * low.write_units_total
    assert low.write_units_per_second["markers USERS#"] > 0.8 * low.write_units_total


def test_batches_fill_to_the_batch_size_when_the_window_gathers_enough_records() -> None:
    assert predict(REFERENCE_LIKE, 10_000).batch_records == 1_000
    sparse = predict(REFERENCE_LIKE, 10, Deployment(batching_window_seconds=1.0))
    assert sparse.batch_records < 100


def test_a_shard_that_cannot_keep_up_is_reported() -> None:
    slow = replace(REFERENCE_LIKE, cpu_seconds_per_event=2e-3)
    prediction = predict(slow, 1_000)
    assert prediction.concurrency_per_shard > 1
    assert prediction.first_to_break is not None


def test_the_anchor_pays_athena_in_proportion_to_the_dashboard_refresh_rate() -> None:
    every_five = anchor_monthly_cost(REFERENCE_LIKE, 10_000)
    every_minute = anchor_monthly_cost(
        REFERENCE_LIKE, 10_000, Deployment(dashboard_refresh_seconds=60)
    )
    assert every_minute["Athena"] == pytest.approx(5 * every_five["Athena"])
    assert every_minute["Firehose ingestion"] == every_five["Firehose ingestion"]


def test_prices_name_the_region_and_year_they_are_for() -> None:
    assert (PRICES_REGION, PRICES_AS_OF) == ("eu-west-1", "2026")


def test_the_writes_take_their_client_cpu_time_when_it_is_longer_than_their_latency() -> None:
    costly = replace(REFERENCE_LIKE, client_cpu_seconds_per_request=1e-3, cpu_seconds_per_event=0.0)
    free = replace(costly, client_cpu_seconds_per_request=0.0)
    writes = sum(requests_for(costly, 1_000, 1_000).values()) - 1_000 * 0.0105
    cpu_share = Deployment().memory_mb / 1_769
    slower = lambda_seconds(costly, 1_000, Deployment()) - lambda_seconds(free, 1_000, Deployment())
    assert slower > 0
    assert lambda_seconds(costly, 1_000, Deployment()) == pytest.approx(
        1_000 * 0.0105 * (0.010 + 1e-3 / cpu_share) + writes * 1e-3 / cpu_share
    )


def test_full_sketches_bill_each_write_and_read_at_their_size() -> None:
    full = with_full_sketches(replace(SKETCH_LIKE, sketch_overhead_bytes=100.0), 5_016)
    assert full.sketch_item_bytes == pytest.approx(5_116.0)
    assert full.sketch_write_units_per_item == 5
    assert full.sketch_read_units_per_item == 2.0
    assert full.sketch_writes == SKETCH_LIKE.sketch_writes
    assert predict(full, 10_000).write_units_total > predict(SKETCH_LIKE, 10_000).write_units_total


def test_with_enough_invocations_per_shard_the_marker_partition_is_what_breaks_first() -> None:
    found = first_break_rate(REFERENCE_LIKE, partition_keys_only=True)
    assert found == first_break_rate(REFERENCE_LIKE, WIDE)
