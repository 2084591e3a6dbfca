"""The fault tools do what they claim against moto's server: refused and dropped calls have no
effect, a lost response hides a call that did take effect."""

from __future__ import annotations

import time

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError
from mypy_boto3_dynamodb import DynamoDBClient
from mypy_boto3_s3 import S3Client
from mypy_boto3_sqs import SQSClient

from tests.conftest import REGION
from tests.faults.botocore_hooks import attach_request_faults
from tests.faults.clock import SteppingClock, charge_retry_pauses
from tests.faults.plan import FaultKind, FaultPlan, FaultRates
from tests.faults.proxy import lossy_proxy, service_of

TWO_ATTEMPTS = Config(retries={"mode": "standard", "max_attempts": 2})
ONE_ATTEMPT = Config(retries={"mode": "standard", "max_attempts": 1})


def counter_table(dynamodb: DynamoDBClient, name: str) -> None:
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


def add_one(dynamodb: DynamoDBClient, table: str) -> None:
    dynamodb.update_item(
        TableName=table,
        Key={"pk": {"S": "counter"}},
        UpdateExpression="ADD n :one",
        ExpressionAttributeValues={":one": {"N": "1"}},
    )


def count_of(dynamodb: DynamoDBClient, table: str) -> int:
    item = dynamodb.get_item(TableName=table, Key={"pk": {"S": "counter"}}).get("Item")
    return 0 if item is None else int(item["n"]["N"])


def test_a_refused_dynamodb_call_is_a_throttling_or_server_error_and_has_no_effect(
    endpoint_url: str, dynamodb_client: DynamoDBClient, unique_name: str
) -> None:
    counter_table(dynamodb_client, unique_name)
    faulty: DynamoDBClient = boto3.client(
        "dynamodb", endpoint_url=endpoint_url, region_name=REGION, config=TWO_ATTEMPTS
    )
    plan = FaultPlan(seed=3, rates=FaultRates(refused=1.0))
    attach_request_faults(faulty, plan)

    codes = set()
    for _ in range(6):
        with pytest.raises(ClientError) as raised:
            add_one(faulty, unique_name)
        codes.add(raised.value.response["Error"]["Code"])

    assert codes <= {"ProvisionedThroughputExceededException", "InternalServerError"}
    assert len(codes) == 2
    assert count_of(dynamodb_client, unique_name) == 0
    assert plan.total(FaultKind.THROTTLED, FaultKind.SERVER_ERROR) >= 12


def test_refused_s3_and_sqs_calls_carry_their_protocols_error_codes(
    endpoint_url: str, s3_client: S3Client, sqs_client: SQSClient, unique_name: str
) -> None:
    s3_client.create_bucket(
        Bucket=unique_name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    queue_url = sqs_client.create_queue(QueueName=unique_name)["QueueUrl"]
    s3: S3Client = boto3.client(
        "s3", endpoint_url=endpoint_url, region_name=REGION, config=ONE_ATTEMPT
    )
    sqs: SQSClient = boto3.client(
        "sqs", endpoint_url=endpoint_url, region_name=REGION, config=ONE_ATTEMPT
    )
    plan = FaultPlan(seed=5, rates=FaultRates(refused=1.0))
    attach_request_faults(s3, plan)
    attach_request_faults(sqs, plan)

    s3_codes, sqs_codes = set(), set()
    for attempt in range(6):
        with pytest.raises(ClientError) as raised:
            s3.put_object(Bucket=unique_name, Key=f"k{attempt}", Body=b"x")
        s3_codes.add(raised.value.response["Error"]["Code"])
        with pytest.raises(ClientError) as raised:
            sqs.send_message(QueueUrl=queue_url, MessageBody="x")
        sqs_codes.add(raised.value.response["Error"]["Code"])

    assert s3_codes == {"SlowDown", "InternalError"}
    assert sqs_codes <= {"RequestThrottled", "InternalError"}
    assert s3_client.list_objects_v2(Bucket=unique_name).get("KeyCount", 0) == 0
    attributes = sqs_client.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "0"


def test_a_dropped_connection_is_a_transport_error_and_has_no_effect(
    endpoint_url: str, dynamodb_client: DynamoDBClient, unique_name: str
) -> None:
    counter_table(dynamodb_client, unique_name)
    faulty: DynamoDBClient = boto3.client(
        "dynamodb", endpoint_url=endpoint_url, region_name=REGION, config=TWO_ATTEMPTS
    )
    attach_request_faults(faulty, FaultPlan(seed=1, rates=FaultRates(dropped=1.0)))

    for _ in range(4):
        with pytest.raises((ConnectionClosedError, EndpointConnectionError)):
            add_one(faulty, unique_name)

    assert count_of(dynamodb_client, unique_name) == 0


def test_a_lost_response_hides_a_call_that_took_effect_and_botocore_repeats_it(
    endpoint_url: str, dynamodb_client: DynamoDBClient, unique_name: str
) -> None:
    counter_table(dynamodb_client, unique_name)
    plan = FaultPlan(seed=2, rates=FaultRates(lost=1.0))
    with lossy_proxy(endpoint_url, plan) as proxy:
        faulty: DynamoDBClient = boto3.client(
            "dynamodb", endpoint_url=proxy.endpoint_url, region_name=REGION, config=TWO_ATTEMPTS
        )
        with pytest.raises((ClientError, ConnectionClosedError)):
            add_one(faulty, unique_name)

    # Every attempt reached the table: a naive ADD counts once per attempt.
    lost = plan.total(FaultKind.LOST_RESPONSE_500, FaultKind.LOST_RESPONSE_CLOSED)
    assert lost >= 2
    assert count_of(dynamodb_client, unique_name) == lost


def test_the_proxy_relays_every_service_faithfully_when_no_fault_is_drawn(
    endpoint_url: str, s3_client: S3Client, unique_name: str
) -> None:
    plan = FaultPlan(seed=2, rates=FaultRates())
    with lossy_proxy(endpoint_url, plan) as proxy:
        s3: S3Client = boto3.client("s3", endpoint_url=proxy.endpoint_url, region_name=REGION)
        s3.create_bucket(
            Bucket=unique_name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        body = bytes(range(256)) * 4096
        s3.put_object(Bucket=unique_name, Key="blob", Body=body)
        assert s3.get_object(Bucket=unique_name, Key="blob")["Body"].read() == body
        assert s3.head_object(Bucket=unique_name, Key="blob")["ContentLength"] == len(body)
    assert s3_client.get_object(Bucket=unique_name, Key="blob")["Body"].read() == body


def test_the_service_of_a_request_is_read_from_its_signature_scope() -> None:
    authorization = (
        "AWS4-HMAC-SHA256 Credential=testing/20261126/eu-west-1/dynamodb/aws4_request, "
        "SignedHeaders=host, Signature=abc"
    )
    assert service_of(authorization) == "dynamodb"
    assert service_of(None) is None


def test_botocore_retry_pauses_pass_on_the_simulated_clock_and_not_in_real_time() -> None:
    clock = SteppingClock()
    dynamodb: DynamoDBClient = boto3.client(
        "dynamodb",
        endpoint_url="http://127.0.0.1:9",  # never reached: every attempt is throttled first
        region_name=REGION,
        config=Config(retries={"mode": "standard", "total_max_attempts": 4}),
    )
    attach_request_faults(
        dynamodb, FaultPlan(seed=1, rates=FaultRates(refused=1.0), services=frozenset({"dynamodb"}))
    )
    charge_retry_pauses(dynamodb, clock, seed=1)
    began = time.monotonic()

    with pytest.raises(ClientError):
        dynamodb.describe_table(TableName="any")

    # Three throttled retries pause up to 1, 2 and 4 s each, with seeded jitter.
    assert 0 < clock() <= 7
    assert time.monotonic() - began < 1.0, "botocore slept its pauses"


def test_the_stepping_clock_stands_still_until_charged() -> None:
    clock = SteppingClock()
    service_clock = clock.as_clock()
    before = clock()

    time.sleep(0.01)
    unmoved = clock()
    clock.jump(2.5)

    assert unmoved == before
    assert clock() == service_clock.monotonic() == before + 2.5
