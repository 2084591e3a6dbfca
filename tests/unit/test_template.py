"""The deployment template holds what the code and the exactly-once design assume.

The IAM tests tie template.yaml to infrastructure/aws/permissions.LAMBDA_PERMISSIONS (which the
adapter tests tie to the calls the adapters make): an adapter that starts calling a new action
fails here until the template grants it, on its resource and nowhere else.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any, get_args

import pytest

from domain.decoding import decode_record
from domain.events import AcceptedEvent, EventLimits, ExperimentEvent
from domain.metrics import Granularity, MetricKey
from entrypoints.settings import Settings
from infrastructure.aws.dynamodb_recent_events import event_partition_key
from infrastructure.aws.dynamodb_replay_ledger import ledger_partition_key, run_partition_key
from infrastructure.aws.permissions import (
    LAMBDA_PARTITION_KEY_PREFIXES,
    LAMBDA_PERMISSIONS,
    OPERATOR_PERMISSIONS,
    Resource,
)
from infrastructure.dynamodb_layout import (
    COUNTER_WRITE_SHARDS,
    counter_partition_key,
    counter_partition_keys,
    marker_key,
    sketch_partition_key,
)
from scripts.package import HANDLER_MODULE
from tests.cloudformation import TEMPLATE_PATH, get_att, load_template, ref, sub
from tests.enriched_events import Attribution, EnrichedEvent, archive_line, hour_partition
from tests.factories import NOW, event_payload, record_of

TEMPLATE = load_template()
RESOURCES: dict[str, dict[str, Any]] = TEMPLATE["Resources"]
NO_VALUE = ref("AWS::NoValue")

STREAM_ARN = {"Fn::If": ["CreateStream", get_att("EventStream", "Arn"), ref("StreamArn")]}
ADAPTER_RESOURCE_ARNS: dict[Resource, list[object]] = {
    Resource.AGGREGATION_TABLE: [get_att("AggregationTable", "Arn")],
    Resource.ASSIGNMENTS_TABLE: [
        sub(
            "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}"
            ":table/${AssignmentsTableName}"
        )
    ],
    Resource.EXPERIMENTS_TABLE: [
        sub(
            "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}"
            ":table/${ExperimentsTableName}"
        )
    ],
    # Objects only, and only under the two prefixes the adapters write to.
    Resource.ARCHIVE_BUCKET: [
        get_att("ArchiveBucket", "Arn"),
        sub("${ArchiveBucket.Arn}/${ArchivePrefix}*"),
        sub("${ArchiveBucket.Arn}/${DeadLetterPrefix}*"),
    ],
    Resource.DEAD_LETTER_QUEUE: [get_att("DeadLetterQueue", "Arn")],
    Resource.STREAM: [STREAM_ARN],
}
"""Where each resource the adapters call lives in the template. The function's role reaches the
archive's objects only; the operators also list the bucket (ARN first here)."""

ARCHIVE_BUCKET_ARN = get_att("ArchiveBucket", "Arn")
NON_ADAPTER_GRANTS: dict[str, tuple[frozenset[str], object]] = {
    # Lambda's event source mapping polls the stream with the function's role.
    "ReadStream": (
        frozenset(
            {
                "kinesis:DescribeStream",
                "kinesis:DescribeStreamSummary",
                "kinesis:GetRecords",
                "kinesis:GetShardIterator",
                "kinesis:ListShards",
            }
        ),
        STREAM_ARN,
    ),
    "ListStreamsHasNoResourceLevelPermission": (frozenset({"kinesis:ListStreams"}), "*"),
    # ... decrypting its records when the stream is one of yours with a customer managed key.
    "StreamKmsKey": (frozenset({"kms:Decrypt"}), ref("StreamKmsKeyArn")),
    # ... and reports batches that exhausted their retries to the on-failure destination.
    "OnFailureDestination": (
        frozenset({"sqs:SendMessage"}),
        get_att("FailureDestinationQueue", "Arn"),
    ),
    "WriteLogs": (
        frozenset({"logs:CreateLogStream", "logs:PutLogEvents"}),
        get_att("EventProcessorLogGroup", "Arn"),
    ),
    "XRayHasNoResourceLevelPermission": (
        frozenset({"xray:PutTraceSegments", "xray:PutTelemetryRecords"}),
        "*",
    ),
    # Only with a customer managed key on the bucket: S3 asks KMS for a data key per PutObject.
    "ArchiveKmsKey": (frozenset({"kms:GenerateDataKey"}), ref("ArchiveKmsKeyArn")),
}
"""Everything the role grants besides the adapters' calls, each for a reason given here."""

WILDCARD_RESOURCE_EXCEPTIONS = {
    "ListStreamsHasNoResourceLevelPermission": "kinesis:ListStreams has no resource type in IAM",
    "XRayHasNoResourceLevelPermission": "X-Ray's Put* actions have no resource type in IAM",
}


def resource_of_type(resource_type: str) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource
        for logical_id, resource in RESOURCES.items()
        if resource["Type"] == resource_type
    }


def properties(logical_id: str) -> dict[str, Any]:
    properties_: dict[str, Any] = RESOURCES[logical_id]["Properties"]
    return properties_


def parameter_default(name: str) -> Any:
    return TEMPLATE["Parameters"][name]["Default"]


def as_list(value: object) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def unconditional(statements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The statements of a policy document; one under `!If [c, s, NoValue]` counts."""
    found = []
    for statement in statements:
        if "Fn::If" in statement:
            _, when_true, when_false = statement["Fn::If"]
            found += [s for s in (when_true, when_false) if s != NO_VALUE]
        else:
            found.append(statement)
    return found


def role_statements() -> list[dict[str, Any]]:
    """Every statement of the function's role."""
    role = properties("EventProcessorRole")
    return [
        statement
        for policy in role["Policies"]
        for statement in unconditional(policy["PolicyDocument"]["Statement"])
    ]


def policy_statements_as_written(logical_id: str) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = properties(logical_id)["PolicyDocument"]["Statement"]
    return statements


def role_statement(sid: str) -> dict[str, Any]:
    """The statement `sid` of the role (inside the `!If` that may hold it)."""
    role = properties("EventProcessorRole")
    for policy in role["Policies"]:
        for statement in policy["PolicyDocument"]["Statement"]:
            written = statement["Fn::If"][1] if "Fn::If" in statement else statement
            if written["Sid"] == sid:
                return dict(written)
    raise KeyError(sid)


def role_statement_condition(sid: str) -> str | None:
    """The condition the role's statement `sid` is granted under (None: always)."""
    role = properties("EventProcessorRole")
    for policy in role["Policies"]:
        for statement in policy["PolicyDocument"]["Statement"]:
            if "Fn::If" in statement:
                condition, written, otherwise = statement["Fn::If"]
                if written["Sid"] == sid:
                    assert otherwise == NO_VALUE
                    return str(condition)
            elif statement["Sid"] == sid:
                return None
    raise KeyError(sid)


def leading_key_patterns(statement: dict[str, Any]) -> dict[str, list[str]]:
    """The `dynamodb:LeadingKeys` patterns of a statement, by the conditions they hold under
    ("always", or condition names and negations "not <name>" joined by " and ", outermost
    first, for nested `!If`s)."""

    def branches(value: Any, held: tuple[str, ...]) -> dict[str, list[str]]:
        if isinstance(value, dict):
            condition, when_true, when_false = value["Fn::If"]
            return branches(when_true, (*held, condition)) | branches(
                when_false, (*held, f"not {condition}")
            )
        return {" and ".join(held) or "always": value}

    return branches(statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"], ())


def allowed_actions_on(arn: object, statements: list[dict[str, Any]] | None = None) -> set[str]:
    return {
        action
        for statement in (role_statements() if statements is None else statements)
        if statement["Effect"] == "Allow" and arn in as_list(statement["Resource"])
        for action in as_list(statement["Action"])
    }


def operator_statements() -> list[dict[str, Any]]:
    policy = RESOURCES["OperatorPolicy"]
    assert policy["Type"] == "AWS::IAM::ManagedPolicy"
    return unconditional(policy["Properties"]["PolicyDocument"]["Statement"])


def operator_statement(sid: str) -> dict[str, Any]:
    [statement] = [s for s in operator_statements() if s["Sid"] == sid]
    return statement


OPERATOR_KMS_GRANTS: dict[str, tuple[str, frozenset[str], object]] = {
    # S3 decrypts what GetObject reads and asks for a data key per PutObject.
    "ArchiveKmsKey": (
        "HasArchiveKmsKey",
        frozenset({"kms:Decrypt", "kms:GenerateDataKey"}),
        ref("ArchiveKmsKeyArn"),
    ),
    # Kinesis asks for a data key per PutRecords into a stream under a customer managed key.
    "StreamKmsKey": ("HasStreamKmsKey", frozenset({"kms:GenerateDataKey"}), ref("StreamKmsKeyArn")),
}
"""The operators' grants besides OPERATOR_PERMISSIONS, each only when its key is given."""


# ------------------------------------------------------------------------------- permissions


@pytest.mark.parametrize("resource", list(LAMBDA_PERMISSIONS))
def test_the_role_grants_exactly_the_declared_actions_on_each_adapter_resource(
    resource: Resource,
) -> None:
    for arn in ADAPTER_RESOURCE_ARNS[resource]:
        # The function writes objects; it never lists the bucket.
        expected = set() if arn == ARCHIVE_BUCKET_ARN else set(LAMBDA_PERMISSIONS[resource])
        assert allowed_actions_on(arn) == expected, arn


def test_every_resource_the_adapters_call_has_a_place_in_the_template() -> None:
    assert set(LAMBDA_PERMISSIONS) <= set(ADAPTER_RESOURCE_ARNS)
    assert set(OPERATOR_PERMISSIONS) <= set(ADAPTER_RESOURCE_ARNS)


def test_the_role_grants_nothing_beyond_the_adapters_calls_and_the_documented_grants() -> None:
    adapter_arns = [
        arn for resource in LAMBDA_PERMISSIONS for arn in ADAPTER_RESOURCE_ARNS[resource]
    ]
    other_grants: dict[str, tuple[frozenset[str], object]] = {}
    for statement in role_statements():
        assert statement["Effect"] == "Allow"
        assert "NotAction" not in statement
        assert "NotResource" not in statement
        resources = as_list(statement["Resource"])
        if all(arn in adapter_arns for arn in resources):
            continue
        assert len(resources) == 1, statement
        other_grants[statement["Sid"]] = (frozenset(as_list(statement["Action"])), resources[0])
    assert other_grants == NON_ADAPTER_GRANTS


def test_no_statement_grants_every_action_or_every_resource_where_an_arn_exists() -> None:
    for statement in role_statements():
        for action in as_list(statement["Action"]):
            assert "*" not in action, statement
        if "*" in as_list(statement["Resource"]):
            assert statement["Sid"] in WILDCARD_RESOURCE_EXCEPTIONS, statement


def aggregation_table_statements() -> list[dict[str, Any]]:
    return [
        statement
        for statement in role_statements()
        if statement["Resource"] == get_att("AggregationTable", "Arn")
    ]


def test_each_write_to_the_aggregation_table_reaches_only_the_key_prefixes_its_action_owns() -> (
    None
):
    statements = aggregation_table_statements()
    for statement in statements:
        [action] = as_list(statement["Action"])
        owned = {f"{prefix}*" for prefix in LAMBDA_PARTITION_KEY_PREFIXES[action]}
        allowed = leading_key_patterns(statement)
        assert set().union(*allowed.values()) == owned, action
    assert {action for s in statements for action in as_list(s["Action"])} == set(
        LAMBDA_PARTITION_KEY_PREFIXES
    )


def test_event_ids_are_read_only_when_the_durable_event_id_index_is_on() -> None:
    assert TEMPLATE["Conditions"]["DurableEventIdIndex"] == {
        "Fn::Equals": [ref("EventIdIndex"), "dynamodb"]
    }
    reads = leading_key_patterns(role_statement("AggregationSketchAndEventIdReads"))
    assert reads == {
        "SketchedUniqueUsers and DurableEventIdIndex": ["SKETCH#*", "EVENT#*"],
        "SketchedUniqueUsers and not DurableEventIdIndex": ["SKETCH#*"],
        "not SketchedUniqueUsers": ["EVENT#*"],
    }
    writes = leading_key_patterns(role_statement("AggregationEventIds"))
    assert set().union(*writes.values()) == {"EVENT#*"}
    assert role_statement_condition("AggregationEventIds") == "DurableEventIdIndex"


def test_the_function_reads_the_aggregation_table_only_when_a_setting_needs_it() -> None:
    # Exact unique users with the in-memory event-id index read nothing there.
    assert role_statement_condition("AggregationSketchAndEventIdReads") == "ReadsAggregationItems"
    assert TEMPLATE["Conditions"]["ReadsAggregationItems"] == {
        "Fn::Or": [{"Condition": "DurableEventIdIndex"}, {"Condition": "SketchedUniqueUsers"}]
    }


def test_markers_or_sketches_are_writable_as_the_unique_users_mode_asks() -> None:
    assert TEMPLATE["Conditions"]["SketchedUniqueUsers"] == {
        "Fn::Equals": [ref("UniqueUsers"), "sketch"]
    }
    updates = leading_key_patterns(role_statement("AggregationCountersMarkersAndSketches"))
    assert updates == {
        "SketchedUniqueUsers": ["EXP#*", "SKETCH#*"],
        "not SketchedUniqueUsers": ["EXP#*", "USERS#*"],
    }


def test_the_unique_users_mode_is_a_parameter_with_the_service_default() -> None:
    variables = properties("EventProcessorFunction")["Environment"]["Variables"]
    assert variables["UNIQUE_USERS"] == ref("UniqueUsers")
    mode = Settings.model_fields["unique_users"]
    assert parameter_default("UniqueUsers") == mode.default == "exact"
    assert set(TEMPLATE["Parameters"]["UniqueUsers"]["AllowedValues"]) == set(
        get_args(mode.annotation)
    )


@pytest.mark.parametrize(
    ("action", "partition_key"),
    [
        ("dynamodb:UpdateItem", counter_partition_key("exp-1", COUNTER_WRITE_SHARDS - 1)),
        *(
            ("dynamodb:UpdateItem", marker_key(MetricKey("exp-1", "a", "click", g, NOW), "u")[0])
            for g in Granularity
        ),
        ("dynamodb:BatchWriteItem", event_partition_key("evt-1")),
        ("dynamodb:BatchGetItem", event_partition_key("evt-1")),
        ("dynamodb:UpdateItem", sketch_partition_key("exp-1", 7)),
        ("dynamodb:BatchGetItem", sketch_partition_key("exp-1", 7)),
    ],
)
def test_the_leading_keys_conditions_allow_the_keys_the_adapters_build(
    action: str, partition_key: str
) -> None:
    [statement] = [s for s in aggregation_table_statements() if s["Action"] == [action]]
    patterns = set().union(*leading_key_patterns(statement).values())
    assert any(fnmatchcase(partition_key, pattern) for pattern in patterns)


def actions_allowed_on_partition_key(partition_key: str) -> set[str]:
    return {
        action
        for statement in aggregation_table_statements()
        for action in as_list(statement["Action"])
        if any(
            fnmatchcase(partition_key, pattern)
            for patterns in leading_key_patterns(statement).values()
            for pattern in patterns
        )
    }


@pytest.mark.parametrize(
    "partition_key",
    [ledger_partition_key("evt-1"), run_partition_key("replay-20260101T000000-0a1b2c3d")],
)
def test_the_function_cannot_touch_the_replay_ledger(partition_key: str) -> None:
    assert actions_allowed_on_partition_key(partition_key) == set()


def test_a_counter_key_can_only_be_updated_whatever_its_experiment_id() -> None:
    # Experiment ids are not escaped in legacy counter keys: one may look like another kind of
    # key. Escaped or not, a counter key starts with the counters' prefix.
    for experiment_id in ("exp-1", "USERS#x", "EVENT#x"):
        for key in counter_partition_keys(experiment_id):
            assert actions_allowed_on_partition_key(key) == {"dynamodb:UpdateItem"}


def test_a_marker_key_can_only_be_updated() -> None:
    for granularity in Granularity:
        partition, _ = marker_key(MetricKey("EVENT#x", "v", "click", granularity, NOW), "u")
        assert actions_allowed_on_partition_key(partition) == {"dynamodb:UpdateItem"}


@pytest.mark.parametrize("resource", list(OPERATOR_PERMISSIONS))
def test_the_operator_policy_grants_exactly_the_declared_actions_on_each_resource(
    resource: Resource,
) -> None:
    statements = operator_statements()
    granted = set().union(
        *(allowed_actions_on(arn, statements) for arn in ADAPTER_RESOURCE_ARNS[resource])
    )
    assert granted == set(OPERATOR_PERMISSIONS[resource])


def test_the_operator_policy_grants_nothing_beyond_the_declared_actions_and_its_kms_keys() -> None:
    resource_arns = [arn for arns in ADAPTER_RESOURCE_ARNS.values() for arn in arns]
    kms: dict[str, tuple[str, frozenset[str], object]] = {}
    for statement in policy_statements_as_written("OperatorPolicy"):
        if "Fn::If" in statement:
            condition, granted, otherwise = statement["Fn::If"]
            assert otherwise == NO_VALUE
            kms[granted["Sid"]] = (
                condition,
                frozenset(as_list(granted["Action"])),
                granted["Resource"],
            )
            continue
        assert statement["Effect"] == "Allow"
        assert "NotAction" not in statement
        assert "NotResource" not in statement
        assert all(arn in resource_arns for arn in as_list(statement["Resource"])), statement
        for action in as_list(statement["Action"]):
            assert "*" not in action, statement
    assert kms == OPERATOR_KMS_GRANTS


def test_operators_list_and_delete_only_under_the_prefixes_the_pipeline_writes() -> None:
    listing = operator_statement("ListArchiveAndDeadLetters")
    assert listing["Resource"] == ARCHIVE_BUCKET_ARN
    assert listing["Condition"] == {
        "StringLike": {"s3:prefix": [sub("${ArchivePrefix}*"), sub("${DeadLetterPrefix}*")]}
    }
    deleting = [s for s in operator_statements() if "s3:DeleteObject" in as_list(s["Action"])]
    # Replayed dead letters kept in S3; forget-user rewrites or deletes archive objects.
    assert [s["Resource"] for s in deleting] == [
        [
            sub("${ArchiveBucket.Arn}/${ArchivePrefix}*"),
            sub("${ArchiveBucket.Arn}/${DeadLetterPrefix}*"),
        ]
    ]


def test_the_operator_policy_is_an_output() -> None:
    assert TEMPLATE["Outputs"]["OperatorPolicyArn"]["Value"] == ref("OperatorPolicy")
    assert "Roles" not in properties("OperatorPolicy"), "attaching it is the account's decision"


def test_the_function_uses_its_own_role_and_no_managed_or_sam_policies() -> None:
    function = properties("EventProcessorFunction")
    assert function["Role"] == get_att("EventProcessorRole", "Arn")
    assert "Policies" not in function
    assert "ManagedPolicyArns" not in properties("EventProcessorRole")
    assert "Events" not in function, "the mapping is explicit, so SAM adds no managed policy"


# ------------------------------------------------------------------------------- function


def test_the_function_runs_the_lambda_handler_on_arm64_with_active_tracing() -> None:
    function = properties("EventProcessorFunction")
    assert function["Handler"] == f"{HANDLER_MODULE}.handler"
    assert function["Runtime"] == "python3.12"
    assert function["Architectures"] == ["arm64"]
    assert function["Tracing"] == "Active"
    assert function["MemorySize"] == ref("FunctionMemorySize")
    assert function["Timeout"] == ref("FunctionTimeout")


def test_the_function_is_configured_with_the_stacks_resources() -> None:
    variables = properties("EventProcessorFunction")["Environment"]["Variables"]
    assert variables["S3_BUCKET"] == ref("ArchiveBucket")
    assert variables["DYNAMODB_TABLE"] == ref("AggregationTable")
    assert variables["DLQ_URL"] == ref("DeadLetterQueue")
    assert variables["ARCHIVE_PREFIX"] == ref("ArchivePrefix")
    assert variables["DEAD_LETTER_PREFIX"] == ref("DeadLetterPrefix")
    assert variables["ARCHIVE_CODEC"] == ref("ArchiveCodec")
    assert set(variables) >= {
        "ASSIGNMENTS_TABLE",
        "EXPERIMENTS_TABLE",
        "POWERTOOLS_SERVICE_NAME",
        "POWERTOOLS_METRICS_NAMESPACE",
        "POWERTOOLS_LOG_LEVEL",
        "WRITE_CONCURRENCY",
        "CACHE_TTL_SECONDS",
        "CACHE_MAX_ENTRIES",
    }
    assert parameter_default("AssignmentsTableName") == "experiment-assignments"
    assert parameter_default("ExperimentsTableName") == "experiments"


def test_every_variable_the_template_sets_is_one_the_service_reads() -> None:
    variables = properties("EventProcessorFunction")["Environment"]["Variables"]
    understood = {name.upper() for name in Settings.model_fields}
    ours = {name for name in variables if not name.startswith("POWERTOOLS_")}
    assert ours <= understood, ours - understood
    assert variables["KMS_KEY_ID"]["Fn::If"][0] == "HasArchiveKmsKey"


def test_the_durable_event_id_index_is_opt_in_and_configured_like_the_service_defaults() -> None:
    variables = properties("EventProcessorFunction")["Environment"]["Variables"]
    assert variables["EVENT_ID_INDEX"] == ref("EventIdIndex")
    assert variables["EVENT_ID_TTL_DAYS"] == ref("EventIdTtlDays")
    index = Settings.model_fields["event_id_index"]
    assert parameter_default("EventIdIndex") == index.default == "memory"
    assert set(TEMPLATE["Parameters"]["EventIdIndex"]["AllowedValues"]) == set(
        get_args(index.annotation)
    )
    assert parameter_default("EventIdTtlDays") == Settings.model_fields["event_id_ttl_days"].default


# ------------------------------------------------------------------------------- event source


def test_the_event_source_mapping_delivers_each_shard_in_order_one_batch_at_a_time() -> None:
    mapping = properties("EventSourceMapping")
    assert mapping["ParallelizationFactor"] == 1
    assert mapping["FunctionName"] == ref("EventProcessorFunction")
    assert mapping["EventSourceArn"] == STREAM_ARN


def test_the_event_source_mapping_honours_partial_failures_and_reports_exhausted_batches() -> None:
    mapping = properties("EventSourceMapping")
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BisectBatchOnFunctionError"] is True
    assert mapping["DestinationConfig"]["OnFailure"]["Destination"] == get_att(
        "FailureDestinationQueue", "Arn"
    )
    assert mapping["MaximumRetryAttempts"] == ref("MaximumRetryAttempts")
    assert mapping["BatchSize"] == ref("BatchSize")


def test_the_event_source_mapping_defaults_lose_no_record() -> None:
    mapping = properties("EventSourceMapping")
    assert mapping["StartingPosition"] == ref("StartingPosition")
    assert parameter_default("StartingPosition") == "TRIM_HORIZON"
    assert mapping["MaximumRecordAgeInSeconds"] == ref("MaximumRecordAgeInSeconds")
    assert parameter_default("MaximumRecordAgeInSeconds") == -1, "expiry would skip records"
    assert 1 <= parameter_default("BatchSize") <= 10_000


def test_a_created_stream_is_encrypted() -> None:
    stream = RESOURCES["EventStream"]
    assert stream["Condition"] == "CreateStream"
    assert stream["Properties"]["StreamEncryption"]["EncryptionType"] == "KMS"


# ------------------------------------------------------------------------------- storage


def test_the_aggregation_table_has_the_adapters_keys_on_demand_billing_pitr_and_marker_ttl() -> (
    None
):
    table = properties("AggregationTable")
    assert table["KeySchema"] == [
        {"AttributeName": "partition_key", "KeyType": "HASH"},
        {"AttributeName": "sort_key", "KeyType": "RANGE"},
    ]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert RESOURCES["AggregationTable"]["DeletionPolicy"] == "Retain"


BUCKETS = ["ArchiveBucket", "AthenaResultsBucket", "AccessLogBucket"]


def bucket_policy_statements(bucket: str) -> list[dict[str, Any]]:
    [policy] = [
        resource["Properties"]
        for resource in resource_of_type("AWS::S3::BucketPolicy").values()
        if resource["Properties"]["Bucket"] == ref(bucket)
    ]
    statements: list[dict[str, Any]] = policy["PolicyDocument"]["Statement"]
    return statements


def test_every_bucket_of_the_stack_is_checked_here() -> None:
    assert set(resource_of_type("AWS::S3::Bucket")) == set(BUCKETS)


@pytest.mark.parametrize("bucket", BUCKETS)
def test_buckets_are_encrypted_private_and_reachable_over_tls_only(bucket: str) -> None:
    bucket_properties = properties(bucket)
    rules = bucket_properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rules[0]["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in (
        "AES256",
        {"Fn::If": ["HasArchiveKmsKey", "aws:kms", "AES256"]},
    )
    assert bucket_properties["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    statement = bucket_policy_statements(bucket)[0]
    assert statement["Sid"] == "DenyInsecureTransport"
    assert statement["Effect"] == "Deny"
    assert statement["Principal"] == "*"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert statement["Resource"] == [get_att(bucket, "Arn"), sub(f"${{{bucket}.Arn}}/*")]


def lifecycle_rules(bucket: str) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = properties(bucket)["LifecycleConfiguration"]["Rules"]
    return rules


def archive_lifecycle_rule(prefix_parameter: str) -> dict[str, Any]:
    [rule] = [
        rule
        for rule in lifecycle_rules("ArchiveBucket")
        if rule.get("Prefix") == ref(prefix_parameter)
    ]
    return rule


def test_each_prefix_the_function_writes_has_one_enabled_lifecycle_rule_and_nothing_else_does() -> (
    None
):
    rules = lifecycle_rules("ArchiveBucket")
    assert [rule["Prefix"] for rule in rules] == [ref("ArchivePrefix"), ref("DeadLetterPrefix")]
    assert all(rule["Status"] == "Enabled" for rule in rules)
    assert all(rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] for rule in rules)


@pytest.mark.parametrize("bucket", BUCKETS)
def test_buckets_own_their_objects_and_expire_what_they_hold(bucket: str) -> None:
    bucket_properties = properties(bucket)
    assert bucket_properties["OwnershipControls"] == {
        "Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]
    }
    assert all("ExpirationInDays" in rule for rule in lifecycle_rules(bucket))


def test_archive_versions_are_kept_by_default_and_noncurrent_ones_expire() -> None:
    assert properties("ArchiveBucket")["VersioningConfiguration"] == {
        "Status": {"Fn::If": ["ArchiveVersioningEnabled", "Enabled", "Suspended"]}
    }
    assert TEMPLATE["Conditions"]["ArchiveVersioningEnabled"] == {
        "Fn::Equals": [ref("ArchiveVersioning"), "true"]
    }
    assert parameter_default("ArchiveVersioning") == "true"
    for rule in lifecycle_rules("ArchiveBucket"):
        assert rule["NoncurrentVersionExpiration"] == {
            "NoncurrentDays": ref("ArchiveNoncurrentVersionDays")
        }
    assert parameter_default("ArchiveNoncurrentVersionDays") == 30


@pytest.mark.parametrize(
    ("bucket", "prefix", "sid"),
    [
        ("ArchiveBucket", "archive/", "ArchiveBucketAccessLogs"),
        ("AthenaResultsBucket", "athena-results/", "AthenaResultsBucketAccessLogs"),
    ],
)
def test_server_access_logs_go_to_the_log_bucket_under_a_prefix_only_their_bucket_may_write(
    bucket: str, prefix: str, sid: str
) -> None:
    assert properties(bucket)["LoggingConfiguration"] == {
        "DestinationBucketName": ref("AccessLogBucket"),
        "LogFilePrefix": prefix,
    }
    [statement] = [s for s in bucket_policy_statements("AccessLogBucket") if s["Sid"] == sid]
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"Service": "logging.s3.amazonaws.com"}
    assert statement["Action"] == "s3:PutObject"
    assert statement["Resource"] == sub(f"${{AccessLogBucket.Arn}}/{prefix}*")
    assert statement["Condition"] == {
        "ArnLike": {"aws:SourceArn": get_att(bucket, "Arn")},
        "StringEquals": {"aws:SourceAccount": ref("AWS::AccountId")},
    }


def test_the_log_bucket_grants_nothing_else_and_expires_the_logs() -> None:
    sids = [statement["Sid"] for statement in bucket_policy_statements("AccessLogBucket")]
    assert sids == [
        "DenyInsecureTransport",
        "ArchiveBucketAccessLogs",
        "AthenaResultsBucketAccessLogs",
    ]
    [rule] = lifecycle_rules("AccessLogBucket")
    assert rule["ExpirationInDays"] == ref("AccessLogRetentionDays")
    assert "LoggingConfiguration" not in properties("AccessLogBucket")


def test_the_archive_moves_to_cheaper_storage_as_it_ages_then_expires() -> None:
    rule = archive_lifecycle_rule("ArchivePrefix")
    assert [t["StorageClass"] for t in rule["Transitions"]] == ["STANDARD_IA", "GLACIER_IR"]
    assert rule["ExpirationInDays"] == ref("ArchiveRetentionDays")
    parameters = TEMPLATE["Parameters"]
    # S3 refuses an expiry that is not later than a transition of the same rule.
    assert (
        parameter_default("ArchiveInfrequentAccessAfterDays")
        < parameter_default("ArchiveGlacierInstantRetrievalAfterDays")
        < parameter_default("ArchiveRetentionDays")
        == 400
    )
    assert (
        parameters["ArchiveRetentionDays"]["MinValue"]
        > parameters["ArchiveGlacierInstantRetrievalAfterDays"]["MinValue"]
    )


def test_stored_dead_letters_expire_but_outlive_the_queue_messages_that_point_at_them() -> None:
    rule = archive_lifecycle_rule("DeadLetterPrefix")
    assert rule["ExpirationInDays"] == ref("DeadLetterRetentionDays")
    assert "Transitions" not in rule, "replays read them again"
    assert parameter_default("DeadLetterRetentionDays") == 400
    shortest = TEMPLATE["Parameters"]["DeadLetterRetentionDays"]["MinValue"] * 24 * 3600
    assert shortest > properties("DeadLetterQueue")["MessageRetentionPeriod"]


def test_unique_user_markers_expire_by_default_after_any_reporting_window() -> None:
    variables = properties("EventProcessorFunction")["Environment"]["Variables"]
    assert variables["MARKER_TTL_DAYS"] == ref("MarkerTtlDays")
    assert parameter_default("MarkerTtlDays") == 400
    smallest = TEMPLATE["Parameters"]["MarkerTtlDays"]["MinValue"]
    assert Settings(marker_ttl_days=smallest).marker_ttl_days == smallest


@pytest.mark.parametrize("queue", ["DeadLetterQueue", "FailureDestinationQueue"])
def test_queues_are_encrypted_keep_messages_14_days_and_refuse_plain_http(queue: str) -> None:
    queue_properties = properties(queue)
    assert queue_properties["SqsManagedSseEnabled"] is True
    assert queue_properties["MessageRetentionPeriod"] == 14 * 24 * 3600
    policy = properties("QueuesPolicy")
    assert ref(queue) in policy["Queues"]
    [statement] = policy["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert get_att(queue, "Arn") in statement["Resource"]


# ------------------------------------------------------------------------------- alarms


def alarm_watching(namespace: str, metric: str, dimension: object) -> dict[str, Any]:
    alarms: list[dict[str, Any]] = [
        resource["Properties"]
        for resource in resource_of_type("AWS::CloudWatch::Alarm").values()
        if resource["Properties"].get("Namespace") == namespace
        and resource["Properties"].get("MetricName") == metric
        and dimension in [d["Value"] for d in resource["Properties"]["Dimensions"]]
    ]
    [alarm] = alarms
    return alarm


@pytest.mark.parametrize(
    ("namespace", "metric", "dimension"),
    [
        ("AWS/Lambda", "IteratorAge", ref("EventProcessorFunction")),
        ("AWS/Lambda", "Errors", ref("EventProcessorFunction")),
        ("AWS/Lambda", "Throttles", ref("EventProcessorFunction")),
        (
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            get_att("DeadLetterQueue", "QueueName"),
        ),
        (
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            get_att("FailureDestinationQueue", "QueueName"),
        ),
    ],
)
def test_an_alarm_watches_each_sign_of_lost_or_stuck_events(
    namespace: str, metric: str, dimension: object
) -> None:
    alarm = alarm_watching(namespace, metric, dimension)
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["AlarmActions"] == {"Fn::If": ["HasAlarmTopic", [ref("AlarmTopicArn")], NO_VALUE]}


def test_queue_alarms_fire_on_the_first_message() -> None:
    for queue in ("DeadLetterQueue", "FailureDestinationQueue"):
        alarm = alarm_watching(
            "AWS/SQS", "ApproximateNumberOfMessagesVisible", get_att(queue, "QueueName")
        )
        assert alarm["Threshold"] == 0


def published_metric_names() -> set[str]:
    """What the service's telemetry publishes for a batch that met every kind of trouble."""
    import contextlib
    import io

    from aws_lambda_powertools import Logger, Metrics

    from application.results import BatchResult
    from domain.records import KinesisCoordinates
    from domain.rejections import RejectionReason
    from infrastructure.powertools_telemetry import PowertoolsTelemetry

    metrics = Metrics(namespace="Experimently", service="event-processor")
    metrics.clear_metrics()
    result = BatchResult(
        records=3,
        processed=1,
        duplicates=0,
        dead_lettered={RejectionReason.INVALID_JSON: 1},
        unattributed=0,
        attributions=1,
        archived_objects=1,
        metric_keys_updated=2,
        failures=(KinesisCoordinates("shard-1", "9", "pk", 0.0),),
        stage_errors=dict.fromkeys(
            ("deduplicate", "enrich", "write_metrics", "archive", "dead_letter"), 1
        ),
    )
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        PowertoolsTelemetry(metrics, Logger(service="event-processor")).publish(result)
        metrics.flush_metrics()
    names: set[str] = set()
    for line in out.getvalue().splitlines():
        if '"_aws"' in line:
            for directive in json.loads(line)["_aws"]["CloudWatchMetrics"]:
                names.update(m["Name"] for m in directive["Metrics"])
    return names


def pipeline_alarms() -> dict[str, dict[str, Any]]:
    """The alarms on the pipeline's own EMF metrics: metric name -> the metric's definition."""
    watched: dict[str, dict[str, Any]] = {}
    for resource in resource_of_type("AWS::CloudWatch::Alarm").values():
        alarm = resource["Properties"]
        if alarm.get("Namespace") == "Experimently":
            watched[alarm["MetricName"]] = alarm
        for query in alarm.get("Metrics", []):
            metric = query.get("MetricStat", {}).get("Metric")
            if metric is not None and metric["Namespace"] == "Experimently":
                watched[metric["MetricName"]] = metric
    return watched


def dashboard_metric_names() -> set[str]:
    body, _ = properties("Dashboard")["DashboardBody"]["Fn::Sub"]
    widgets = json.loads(re.sub(r"\$\{[^}]+\}", "0", body))["widgets"]
    names: set[str] = set()
    for widget in widgets:
        namespace = None
        for row in widget["properties"]["metrics"]:
            if isinstance(row[0], str) and row[0] != "...":
                namespace = row[0] if row[0] != "." else namespace
                if namespace == "Experimently":
                    names.add(row[1])
    return names


def test_the_pipelines_alarms_watch_metrics_it_publishes_for_this_stack_only() -> None:
    published = published_metric_names()
    watched = pipeline_alarms()

    assert {
        "ReportedFailures",
        "DeduplicateErrors",
        "EnrichErrors",
        "WriteMetricsErrors",
        "ArchiveErrors",
        "DeadLetterErrors",
        "DeadLetters",
        "RecordsReceived",
        "ContractEscapes",
    } == set(watched)
    assert set(watched) <= published, set(watched) - published
    for definition in watched.values():
        assert {"Name": "stack", "Value": ref("AWS::StackName")} in definition["Dimensions"]
        assert {"Name": "service", "Value": "event-processor"} in definition["Dimensions"]


def test_the_dead_letter_rate_alarm_compares_a_percentage_with_its_parameter() -> None:
    alarm = properties("DeadLetterRateAlarm")
    [expression] = [q["Expression"] for q in alarm["Metrics"] if q.get("ReturnData")]
    assert expression.startswith("100 * FILL(deadletters, 0) / ")
    assert alarm["Threshold"] == ref("DeadLetterRateAlarmPercent")
    assert parameter_default("DeadLetterRateAlarmPercent") == 1


def test_the_dashboard_shows_what_the_pipeline_publishes_and_its_stacks_dead_letters() -> None:
    names = dashboard_metric_names()
    body, variables = properties("Dashboard")["DashboardBody"]["Fn::Sub"]

    assert names <= published_metric_names(), names - published_metric_names()
    assert {"RecordsReceived", "ReportedFailures", "WriteMetricsErrors"} <= names
    assert 'MetricName=\\"DeadLetters\\" stack=\\"${AWS::StackName}\\"' in body
    assert '"IteratorAge"' in body
    assert '"Duration"' in body
    assert variables["Function"] == ref("EventProcessorFunction")


# ------------------------------------------------------------------------------- Athena


def glue_table() -> dict[str, Any]:
    table_input: dict[str, Any] = properties("ArchiveEventsTable")["TableInput"]
    return table_input


def enriched_archive_event() -> EnrichedEvent:
    payload = event_payload(
        experiment_id="exp-1", variant_id="control", value=1.5, properties={"plan": "pro"}
    )
    accepted = decode_record(record_of(payload), EventLimits(), NOW)
    assert isinstance(accepted, AcceptedEvent)
    return EnrichedEvent(accepted, (Attribution("exp-1", "control", 3600.0),))


def struct_fields(hive_type: str) -> set[str]:
    """Field names declared at the top level of `struct<...>` (nested structs not descended)."""
    body = hive_type[len("struct<") : -1]
    depth, names, current = 0, set(), ""
    for character in body:
        if character == "<":
            depth += 1
        elif character == ">":
            depth -= 1
        if depth == 0 and character == ",":
            names.add(current.split(":", 1)[0])
            current = ""
        else:
            current += character
    names.add(current.split(":", 1)[0])
    return names


def test_the_athena_table_has_a_column_for_every_field_of_the_event_contract() -> None:
    columns = {column["Name"] for column in glue_table()["StorageDescriptor"]["Columns"]}
    assert columns == {*ExperimentEvent.model_fields, "_pipeline"}


def test_the_athena_pipeline_column_matches_what_the_archive_writes() -> None:
    line = json.loads(archive_line(enriched_archive_event()))
    [pipeline] = [
        column["Type"]
        for column in glue_table()["StorageDescriptor"]["Columns"]
        if column["Name"] == "_pipeline"
    ]
    assert struct_fields(pipeline) == set(line["_pipeline"])
    for nested in ("kinesis",):
        declared = re.search(rf"{nested}:(struct<[^>]*>)", pipeline)
        assert declared is not None
        assert struct_fields(declared.group(1)) == set(line["_pipeline"][nested])
    attribution = re.search(r"attributions:array<(struct<[^>]*>)>", pipeline)
    assert attribution is not None
    assert struct_fields(attribution.group(1)) == set(line["_pipeline"]["attributions"][0])


def test_the_athena_ddl_file_declares_the_same_columns_as_the_template() -> None:
    ddl = (TEMPLATE_PATH.parent / "athena" / "create_table.sql").read_text()
    columns = re.findall(r"^  `?(\w+)`? (\w+)", ddl, flags=re.MULTILINE)
    declared = glue_table()["StorageDescriptor"]["Columns"]

    assert [name for name, _ in columns] == [column["Name"] for column in declared]
    assert [kind for _, kind in columns] == [column["Type"].split("<")[0] for column in declared]


def test_the_athena_table_reads_json_lines_with_projected_hour_partitions() -> None:
    table = glue_table()
    assert table["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"] == (
        "org.openx.data.jsonserde.JsonSerDe"
    )
    parameters = table["Parameters"]
    assert parameters["projection.enabled"] == "true"
    assert [key["Name"] for key in table["PartitionKeys"]] == ["year", "month", "day", "hour"]
    for unit in ("month", "day", "hour"):
        assert parameters[f"projection.{unit}.digits"] == "2"


def test_the_projected_location_is_where_the_archive_puts_an_events_hour() -> None:
    template = glue_table()["Parameters"]["storage.location.template"]["Fn::Sub"]
    timestamp = datetime(2026, 3, 7, 9, 30, tzinfo=UTC)
    location = (
        template.replace("${!year}", f"{timestamp.year:04d}")
        .replace("${!month}", f"{timestamp.month:02d}")
        .replace("${!day}", f"{timestamp.day:02d}")
        .replace("${!hour}", f"{timestamp.hour:02d}")
    )
    event = enriched_archive_event()
    moved = event.accepted.event.model_copy(update={"timestamp": timestamp})
    accepted = AcceptedEvent(moved, event.accepted.payload, event.accepted.coordinates)
    expected = "s3://${ArchiveBucket}/${ArchivePrefix}" + hour_partition(
        EnrichedEvent(accepted, event.attributions)
    )
    assert location == expected


def test_every_event_time_the_contract_accepts_lies_in_the_athena_projections_years() -> None:
    first, last = (
        int(year) for year in glue_table()["Parameters"]["projection.year.range"].split(",")
    )
    limits = EventLimits()
    latest = datetime.now(UTC) + limits.max_future_skew

    assert first <= limits.earliest_event_time.year
    assert latest.year <= last
    assert Settings().earliest_event_time == limits.earliest_event_time
