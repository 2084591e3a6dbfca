"""The Lambda handler with EVENT_ID_INDEX=dynamodb: a producer's re-send that reaches a new
container is dropped, because the first container left the id in the aggregation table."""

from __future__ import annotations

import pytest
from mypy_boto3_dynamodb import DynamoDBClient
from mypy_boto3_kinesis import KinesisClient

from entrypoints import lambda_handler
from entrypoints.lambda_handler import handler
from infrastructure.aws.dynamodb_recent_events import event_partition_key
from tests.counter_items import summed_counters
from tests.e2e.conftest import Deployment
from tests.e2e.test_lambda_handler import EVENT_TIME, event, lambda_event_from_stream, seed
from tests.lambda_support import fresh_context


def exposure_counts(client: DynamoDBClient, deployment: Deployment) -> dict[str, int]:
    counters = summed_counters(
        client, deployment.names.aggregation_table, "checkout-button", f"DAY#{EVENT_TIME:%Y-%m-%d}"
    )
    return {sort_key: event_count for sort_key, (event_count, _) in counters.items()}


@pytest.mark.parametrize(("index", "counted"), [("dynamodb", 1), ("memory", 2)])
def test_a_re_send_reaching_a_new_container_is_counted_once_only_with_the_durable_index(
    index: str,
    counted: int,
    deployment: Deployment,
    dynamodb_client: DynamoDBClient,
    kinesis_client: KinesisClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EVENT_ID_INDEX", index)
    seed(dynamodb_client, deployment)
    stream = deployment.names.stream
    kinesis_client.put_records(
        StreamName=stream, Records=[{"Data": event("e1", "alice", "exposure"), "PartitionKey": "a"}]
    )
    assert handler(lambda_event_from_stream(kinesis_client, deployment), fresh_context()) == {
        "batchItemFailures": []
    }

    lambda_handler.container.cache_clear()  # a cold start: a new container, an empty memory
    kinesis_client.put_records(  # the producer retries a PutRecords whose response it lost
        StreamName=stream, Records=[{"Data": event("e1", "alice", "exposure"), "PartitionKey": "a"}]
    )
    both = lambda_event_from_stream(kinesis_client, deployment)
    re_send = {**both, "Records": both["Records"][1:]}
    assert handler(re_send, fresh_context()) == {"batchItemFailures": []}

    day = f"DAY#{EVENT_TIME:%Y-%m-%d}"
    assert exposure_counts(dynamodb_client, deployment) == {f"{day}#control#exposure": counted}
    remembered = dynamodb_client.get_item(
        TableName=deployment.names.aggregation_table,
        Key={"partition_key": {"S": event_partition_key("e1")}, "sort_key": {"S": "EVENT"}},
    ).get("Item")
    if index == "dynamodb":
        assert remembered is not None
        first = both["Records"][0]["kinesis"]["sequenceNumber"]
        assert remembered["sequence"] == {"S": first}
        assert int(remembered["expires_at"]["N"]) > 0
    else:
        assert remembered is None
