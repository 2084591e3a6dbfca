"""The event-source-mapping emulator honours a handler's answers the way Lambda does."""

from __future__ import annotations

import base64
import itertools
from collections.abc import Callable
from typing import Any

import pytest
from mypy_boto3_kinesis import KinesisClient

from operations.event_source_emulator import (
    DiscardedBatch,
    EmulatorStats,
    EventSourceMappingEmulator,
    EventSourceMappingSettings,
    Invocation,
    LambdaContextLike,
    Outcome,
)
from tests.faults.clock import SteppingClock

Response = Callable[[dict[str, Any], LambdaContextLike, int], object]


class RecordingHandler:
    """Remembers every invocation; `respond(event, context, call_number)` decides the answer."""

    def __init__(self, respond: Response | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.contexts: list[LambdaContextLike] = []
        self._respond = respond

    def __call__(self, event: dict[str, Any], context: LambdaContextLike) -> object:
        self.events.append(event)
        self.contexts.append(context)
        if self._respond is None:
            return {"batchItemFailures": []}
        return self._respond(event, context, len(self.events))

    def sequences(self, call: int) -> list[str]:
        return [r["kinesis"]["sequenceNumber"] for r in self.events[call]["Records"]]

    def payloads(self, call: int) -> list[bytes]:
        return [base64.b64decode(r["kinesis"]["data"]) for r in self.events[call]["Records"]]


def make_stream(kinesis: KinesisClient, name: str, shards: int = 1) -> None:
    kinesis.create_stream(StreamName=name, ShardCount=shards)


def put(kinesis: KinesisClient, name: str, payloads: list[bytes], key: str = "pk") -> list[str]:
    response = kinesis.put_records(
        StreamName=name, Records=[{"Data": p, "PartitionKey": key} for p in payloads]
    )
    return [r["SequenceNumber"] for r in response["Records"]]


def emulator(
    kinesis: KinesisClient, name: str, handler: RecordingHandler, **settings: Any
) -> EventSourceMappingEmulator:
    return EventSourceMappingEmulator(
        kinesis, handler, EventSourceMappingSettings(stream_name=name, **settings)
    )


def first_failure_at(sequence: str) -> Response:
    def respond(event: dict[str, Any], context: LambdaContextLike, call: int) -> object:
        if call == 1:
            return {"batchItemFailures": [{"itemIdentifier": sequence}]}
        return None

    return respond


def test_delivers_every_record_once_in_order_in_batches_of_the_configured_size(
    kinesis_client: KinesisClient, unique_name: str
) -> None:
    make_stream(kinesis_client, unique_name)
    payloads = [f"record-{i}".encode() for i in range(25)]
    put(kinesis_client, unique_name, payloads)
    handler = RecordingHandler()

    stats = emulator(kinesis_client, unique_name, handler, batch_size=10).run(until_drained=True)

    assert [len(e["Records"]) for e in handler.events] == [10, 10, 5]
    assert [p for call in range(3) for p in handler.payloads(call)] == payloads
    assert stats.records_checkpointed == 25
    assert stats.invocations == 3
    assert stats.retries == 0


def test_builds_the_kinesis_event_and_context_lambda_delivers(
    kinesis_client: KinesisClient, unique_name: str
) -> None:
    make_stream(kinesis_client, unique_name)
    [sequence] = put(kinesis_client, unique_name, [b'{"a": 1}'], key="user-7")
    arn = kinesis_client.describe_stream_summary(StreamName=unique_name)[
        "StreamDescriptionSummary"
    ]["StreamARN"]
    handler = RecordingHandler()

    emulator(kinesis_client, unique_name, handler, function_name="fn", region="eu-west-1").run()

    [record] = handler.events[0]["Records"]
    shard_id = kinesis_client.list_shards(StreamName=unique_name)["Shards"][0]["ShardId"]
    assert set(record) == {
        "kinesis",
        "eventSource",
        "eventVersion",
        "eventID",
        "eventName",
        "invokeIdentityArn",
        "awsRegion",
        "eventSourceARN",
    }
    assert record["kinesis"]["kinesisSchemaVersion"] == "1.0"
    assert record["kinesis"]["partitionKey"] == "user-7"
    assert record["kinesis"]["sequenceNumber"] == sequence
    assert base64.b64decode(record["kinesis"]["data"]) == b'{"a": 1}'
    assert isinstance(record["kinesis"]["approximateArrivalTimestamp"], float)
    assert record["eventSource"] == "aws:kinesis"
    assert record["eventName"] == "aws:kinesis:record"
    assert record["eventID"] == f"{shard_id}:{sequence}"
    assert record["eventSourceARN"] == arn
    assert record["awsRegion"] == "eu-west-1"
    context = handler.contexts[0]
    assert context.function_name == "fn"
    assert context.invoked_function_arn.endswith(":function:fn")
    assert context.aws_request_id
    assert 0 < context.get_remaining_time_in_millis() <= 60_000


def test_after_a_partial_failure_redelivers_from_the_lowest_reported_record(
    kinesis_client: KinesisClient, unique_name: str
) -> None:
    make_stream(kinesis_client, unique_name)
    sequences = put(kinesis_client, unique_name, [b"%d" % i for i in range(6)])
    handler = RecordingHandler(
        lambda event, context, call: (
            {
                "batchItemFailures": [
                    {"itemIdentifier": sequences[4]},
                    {"itemIdentifier": sequences[2]},
                ]
            }
            if call == 1
            else None
        )
    )

    stats = emulator(kinesis_client, unique_name, handler).run()

    assert handler.sequences(0) == sequences
    assert handler.sequences(1) == sequences[2:]
    assert stats.count(Outcome.PARTIAL_FAILURE) == 1
    assert stats.retries == 1
    assert stats.records_checkpointed == 6


@pytest.mark.parametrize(
    "failures",
    [
        [{"itemIdentifier": "999999999"}],
        [{"itemIdentifier": ""}],
        [{"itemIdentifier": None}],
        [{"sequenceNumber": "1"}],
    ],
)
def test_a_malformed_failure_report_fails_the_whole_batch(
    kinesis_client: KinesisClient, unique_name: str, failures: list[dict[str, Any]]
) -> None:
    make_stream(kinesis_client, unique_name)
    sequences = put(kinesis_client, unique_name, [b"a", b"b", b"c"])
    handler = RecordingHandler(
        lambda event, context, call: {"batchItemFailures": failures} if call == 1 else None
    )

    stats = emulator(kinesis_client, unique_name, handler).run()

    assert handler.sequences(1) == sequences
    assert stats.count(Outcome.INVALID_RESPONSE) == 1


def test_a_function_error_retries_the_whole_batch(
    kinesis_client: KinesisClient, unique_name: str
) -> None:
    make_stream(kinesis_client, unique_name)
    sequences = put(kinesis_client, unique_name, [b"a", b"b", b"c", b"d"])

    def respond(event: dict[str, Any], context: LambdaContextLike, call: int) -> object:
        if call <= 2:
            raise RuntimeError("boom")
        return None

    handler = RecordingHandler(respond)
    stats = emulator(kinesis_client, unique_name, handler).run()

    assert [handler.sequences(c) for c in range(3)] == [sequences] * 3
    assert stats.count(Outcome.FUNCTION_ERROR) == 2
    assert stats.retries == 2


def test_bisects_a_failing_batch_until_the_poison_record_is_alone(
    kinesis_client: KinesisClient, unique_name: str
) -> None:
    make_stream(kinesis_client, unique_name)
    sequences = put(kinesis_client, unique_name, [b"ok"] * 3 + [b"poison"] + [b"ok"] * 4)
    discarded: list[tuple[DiscardedBatch, list[str]]] = []

    def respond(event: dict[str, Any], context: LambdaContextLike, call: int) -> object:
        if any(base64.b64decode(r["kinesis"]["data"]) == b"poison" for r in event["Records"]):
            raise ValueError("cannot process")
        return None

    handler = RecordingHandler(respond)
    stats = EventSourceMappingEmulator(
        kinesis_client,
        handler,
        EventSourceMappingSettings(
            stream_name=unique_name,
            bisect_batch_on_function_error=True,
            maximum_retry_attempts=2,
        ),
        on_failure=lambda batch, records: discarded.append(
            (batch, [r.sequence_number for r in records])
        ),
    ).run()

    assert [d[1] for d in discarded] == [[sequences[3]]]
    assert discarded[0][0].attempts == 3
    assert stats.bisections == 3
    assert stats.records_discarded == 1
    assert stats.records_checkpointed == 8
    delivered_ok = {
        s for c in range(len(handler.events)) for s in handler.sequences(c) if s != sequences[3]
    }
    assert delivered_ok == set(sequences) - {sequences[3]}


def test_gives_up_after_the_maximum_retries_and_moves_on(
    kinesis_client: KinesisClient, unique_name: str
) -> None:
    make_stream(kinesis_client, unique_name)
    put(kinesis_client, unique_name, [b"a", b"b"])

    def respond(event: dict[str, Any], context: LambdaContextLike, call: int) -> object:
        raise RuntimeError("always")

    handler = RecordingHandler(respond)
    stats = emulator(kinesis_client, unique_name, handler, maximum_retry_attempts=3).run()

    assert stats.invocations == 4
    assert len(stats.discarded_batches) == 1
    assert stats.discarded_batches[0].last_outcome is Outcome.FUNCTION_ERROR
    assert stats.records_checkpointed == 2


def test_an_invocation_past_its_timeout_is_retried_and_its_response_ignored(
    kinesis_client: KinesisClient, unique_name: str
) -> None:
    make_stream(kinesis_client, unique_name)
    sequences = put(kinesis_client, unique_name, [b"a", b"b"])
    clock = SteppingClock()
    remaining: list[int] = []

    def respond(event: dict[str, Any], context: LambdaContextLike, call: int) -> object:
        if call == 1:
            clock.jump(31)
            remaining.append(context.get_remaining_time_in_millis())
        return None

    handler = RecordingHandler(respond)
    stats = EventSourceMappingEmulator(
        kinesis_client,
        handler,
        EventSourceMappingSettings(stream_name=unique_name, function_timeout_seconds=30),
        clock=clock,
    ).run()

    assert remaining == [0]
    assert handler.sequences(1) == sequences
    assert stats.count(Outcome.TIMEOUT) == 1
    assert stats.count(Outcome.SUCCESS) == 1


def test_each_invocation_records_how_long_the_handler_ran_on_the_emulators_clock(
    kinesis_client: KinesisClient, unique_name: str
) -> None:
    make_stream(kinesis_client, unique_name)
    put(kinesis_client, unique_name, [b"a", b"b", b"c"])
    clock = SteppingClock()

    def respond(event: dict[str, Any], context: LambdaContextLike, call: int) -> object:
        clock.jump({1: 7.25, 2: 31.0}.get(call, 0.0))
        if call == 1:
            raise RuntimeError("the function failed")
        return None

    invocations: list[Invocation] = []
    EventSourceMappingEmulator(
        kinesis_client,
        RecordingHandler(respond),
        EventSourceMappingSettings(stream_name=unique_name, function_timeout_seconds=30),
        on_invocation=invocations.append,
        clock=clock,
    ).run()

    assert [(i.outcome, i.seconds) for i in invocations] == [
        (Outcome.FUNCTION_ERROR, 7.25),
        (Outcome.TIMEOUT, 31.0),
        (Outcome.SUCCESS, 0.0),
    ]


def test_serves_the_shards_in_turn_and_reports_progress(
    kinesis_client: KinesisClient, unique_name: str
) -> None:
    make_stream(kinesis_client, unique_name, shards=2)
    for key in ("a", "b", "c", "d", "e", "f", "g", "h"):
        put(kinesis_client, unique_name, [key.encode()] * 4, key=key)
    handler = RecordingHandler()
    progress: list[int] = []

    def on_progress(stats: EmulatorStats) -> None:
        progress.append(stats.records_checkpointed)

    emulator_ = EventSourceMappingEmulator(
        kinesis_client,
        handler,
        EventSourceMappingSettings(stream_name=unique_name, batch_size=2),
        on_progress=on_progress,
    )
    stats = emulator_.run()

    shards = [e["Records"][0]["eventID"].split(":")[0] for e in handler.events]
    assert len(set(shards)) == 2
    assert any(a != b for a, b in itertools.pairwise(shards))
    assert progress == sorted(progress)
    assert progress[-1] == stats.records_checkpointed == 32
    assert set(stats.millis_behind_latest) == set(shards)
    assert set(emulator_.checkpoints()) == set(shards)


def test_an_emulator_given_shard_ids_polls_those_shards_alone(
    kinesis_client: KinesisClient, unique_name: str
) -> None:
    make_stream(kinesis_client, unique_name, shards=2)
    for key in ("a", "b", "c", "d", "e", "f", "g", "h"):
        put(kinesis_client, unique_name, [key.encode()] * 2, key=key)
    shard_ids = [s["ShardId"] for s in kinesis_client.list_shards(StreamName=unique_name)["Shards"]]
    handlers = {shard_id: RecordingHandler() for shard_id in shard_ids}

    for shard_id, handler in handlers.items():
        EventSourceMappingEmulator(
            kinesis_client,
            handler,
            EventSourceMappingSettings(stream_name=unique_name, shard_ids=frozenset({shard_id})),
        ).run()

    for shard_id, handler in handlers.items():
        assert handler.events, f"{shard_id} was never polled"
        assert {r["eventID"].split(":")[0] for e in handler.events for r in e["Records"]} == {
            shard_id
        }
    assert sum(len(e["Records"]) for h in handlers.values() for e in h.events) == 16


def test_an_empty_shard_selection_is_refused() -> None:
    with pytest.raises(ValueError, match="shard_ids"):
        EventSourceMappingSettings(stream_name="s", shard_ids=frozenset())


def test_a_resumed_consumer_starts_after_its_checkpoints(
    kinesis_client: KinesisClient, unique_name: str
) -> None:
    make_stream(kinesis_client, unique_name)
    sequences = put(kinesis_client, unique_name, [b"a", b"b", b"c"])
    shard_id = kinesis_client.list_shards(StreamName=unique_name)["Shards"][0]["ShardId"]
    handler = RecordingHandler()

    EventSourceMappingEmulator(
        kinesis_client,
        handler,
        EventSourceMappingSettings(stream_name=unique_name),
        start_after={shard_id: sequences[0]},
    ).run()

    assert handler.sequences(0) == sequences[1:]
