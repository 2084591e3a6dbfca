"""The composition root: configuration, AWS clients, adapters and the use case, wired once."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from botocore.config import Config
from dependency_injector import containers, providers

from application.ports import (
    AssignmentRepository,
    Clock,
    DeadLetterQueue,
    EventArchive,
    ExperimentRepository,
    MetricStore,
    RecentEventIndex,
    Telemetry,
)
from application.process_batch import BatchProcessor, ProcessingSettings
from application.unique_users import UniqueUserMarkers, UserSketches
from domain.archiving import ArchiveLimits, ArchiveLineWriter
from domain.attribution import CandidateMemo
from domain.events import EventLimits
from entrypoints.settings import Settings
from infrastructure.aws.client_config import client_config
from infrastructure.aws.dynamodb_metric_store import DynamoDbMetricStore
from infrastructure.aws.dynamodb_recent_events import DynamoDbRecentEventIndex
from infrastructure.aws.dynamodb_repositories import (
    DynamoDbAssignmentRepository,
    DynamoDbExperimentRepository,
)
from infrastructure.aws.dynamodb_unique_user_markers import DynamoDbUniqueUserMarkers
from infrastructure.aws.dynamodb_user_sketches import DynamoDbUserSketches
from infrastructure.aws.s3_archive import S3Encryption, S3EventArchive
from infrastructure.aws.sqs_dead_letters import (
    S3DeadLetterQueue,
    S3DeadLetterStore,
    SqsDeadLetterQueue,
)
from infrastructure.caching import CachingAssignmentRepository, CachingExperimentRepository
from infrastructure.clock import SystemClock
from infrastructure.codecs import ArchiveCodec, codec_named
from infrastructure.in_memory.archive import InMemoryEventArchive
from infrastructure.in_memory.dead_letters import InMemoryDeadLetterQueue
from infrastructure.in_memory.metric_store import InMemoryMetricStore
from infrastructure.in_memory.recent_events import InMemoryRecentEventIndex
from infrastructure.in_memory.repositories import (
    InMemoryAssignmentRepository,
    InMemoryExperimentRepository,
)
from infrastructure.in_memory.telemetry import InMemoryTelemetry
from infrastructure.in_memory.unique_user_markers import InMemoryUniqueUserMarkers
from infrastructure.in_memory.user_sketches import InMemoryUserSketches
from infrastructure.layered_recent_events import LayeredRecentEventIndex
from infrastructure.powertools_telemetry import PowertoolsTelemetry
from infrastructure.sketched_unique_users import SketchedUniqueUsers
from infrastructure.tracing import (
    TracedAssignmentRepository,
    TracedDeadLetterQueue,
    TracedEventArchive,
    TracedExperimentRepository,
    TracedMetricStore,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient


def _botocore_config(settings: Settings) -> Config:
    return client_config(
        max_pool_connections=settings.write_concurrency * 2,
        max_attempts=settings.aws_max_attempts,
        connect_timeout=settings.aws_connect_timeout,
        read_timeout=settings.aws_read_timeout,
        retry_mode=settings.aws_retry_mode,
    )


def _processing_settings(settings: Settings) -> ProcessingSettings:
    return ProcessingSettings(
        event_limits=EventLimits(
            max_record_bytes=settings.max_record_bytes,
            max_nesting_depth=settings.max_nesting_depth,
            max_future_skew=timedelta(seconds=settings.max_future_skew_seconds),
            earliest_event_time=settings.earliest_event_time,
        ),
        archive_limits=ArchiveLimits(
            max_events_per_object=settings.archive_max_events,
            max_bytes_per_object=settings.archive_max_bytes,
        ),
    )


def _archive_codec(settings: Settings) -> ArchiveCodec:
    return codec_named(settings.archive_codec, settings.archive_compression_level)


def _dynamodb_client(session: boto3.session.Session, config: Config) -> DynamoDBClient:
    return session.client("dynamodb", config=config)


def _s3_client(session: boto3.session.Session, config: Config) -> S3Client:
    return session.client("s3", config=config)


def _sqs_client(session: boto3.session.Session, config: Config) -> SQSClient:
    return session.client("sqs", config=config)


def _encryption(settings: Settings) -> S3Encryption:
    if settings.kms_key_id:
        return S3Encryption("aws:kms", settings.kms_key_id)
    return S3Encryption()


def _dead_letter_queue(
    settings: Settings,
    sqs_client: SQSClient,
    overflow: S3DeadLetterStore,
    clock: Clock,
) -> DeadLetterQueue:
    """SQS when DLQ_URL is set (oversize letters overflow to S3); otherwise S3 alone."""
    if settings.dlq_url:
        return SqsDeadLetterQueue(
            sqs_client, settings.dlq_url, overflow, clock, max_workers=settings.write_concurrency
        )
    return S3DeadLetterQueue(overflow, clock, max_workers=settings.write_concurrency)


def _telemetry_kind(powertools_metrics: providers.Dependency[Metrics]) -> str:
    """`powertools` once the Lambda handler has handed in its Metrics, `memory` otherwise."""
    return "powertools" if powertools_metrics.is_defined else "memory"


class Container(containers.DeclarativeContainer):
    """What the Lambda handler's processing needs, and nothing else: the operators' tools extend
    it (operations.container.OperationsContainer). Nothing is created until a provider is first
    called; boto3 honours AWS_ENDPOINT_URL, which is how local runs and tests reach an emulator.

    BACK_END chooses each port's adapter (`<port>_adapter`: DynamoDB, S3 and SQS, or the
    in-memory adapters, `in_memory_*`, singletons of this container that a local run or a test
    seeds and reads); the warm-container caches and the tracing wrap either alike. A test
    replaces a provider with `provider.override(...)`, an adapter by a faulty one for instance,
    and keeps the rest of the wiring."""

    settings = providers.Singleton(Settings)

    # Powertools' module-level utilities, handed in by the Lambda handler when it builds its
    # container. Without them telemetry stays in memory and tracing is off.
    powertools_metrics = providers.Dependency(instance_of=Metrics)
    powertools_logger = providers.Dependency(instance_of=Logger)
    tracer = providers.Dependency(
        instance_of=Tracer, default=providers.Singleton(Tracer, disabled=True)
    )
    in_memory_telemetry = providers.Singleton(
        InMemoryTelemetry, capacity=settings.provided.telemetry_results_kept
    )
    telemetry: providers.Provider[Telemetry] = providers.Selector(
        providers.Callable(_telemetry_kind, powertools_metrics.provider),
        powertools=providers.Singleton(PowertoolsTelemetry, powertools_metrics, powertools_logger),
        memory=in_memory_telemetry,
    )

    botocore_config = providers.Singleton(_botocore_config, settings)
    session = providers.Singleton(boto3.session.Session)
    dynamodb_client = providers.Singleton(_dynamodb_client, session, botocore_config)
    s3_client = providers.Singleton(_s3_client, session, botocore_config)
    sqs_client = providers.Singleton(_sqs_client, session, botocore_config)

    clock: providers.Provider[Clock] = providers.Singleton(SystemClock)
    archive_codec = providers.Singleton(_archive_codec, settings)
    s3_encryption = providers.Singleton(_encryption, settings)

    # The memory back end: one instance of each adapter per container.
    in_memory_assignment_repository = providers.Singleton(InMemoryAssignmentRepository)
    in_memory_experiment_repository = providers.Singleton(InMemoryExperimentRepository)
    in_memory_unique_user_markers = providers.Singleton(InMemoryUniqueUserMarkers)
    in_memory_user_sketches = providers.Singleton(InMemoryUserSketches)
    in_memory_unique_users: providers.Provider[UniqueUserMarkers] = providers.Selector(
        settings.provided.unique_users,
        exact=in_memory_unique_user_markers,
        sketch=providers.Singleton(SketchedUniqueUsers, in_memory_user_sketches),
    )
    in_memory_metric_store = providers.Singleton(InMemoryMetricStore, in_memory_unique_users)
    in_memory_event_archive = providers.Singleton(InMemoryEventArchive, archive_codec)
    in_memory_dead_letter_queue = providers.Singleton(InMemoryDeadLetterQueue)
    in_memory_durable_event_ids = providers.Singleton(
        InMemoryRecentEventIndex, capacity=settings.provided.recent_event_ids
    )
    """What stands for the aggregation table's event ids (EVENT_ID_INDEX=dynamodb)."""

    dynamodb_unique_user_markers = providers.Singleton(
        DynamoDbUniqueUserMarkers,
        dynamodb_client,
        settings.provided.dynamodb_table,
        max_workers=settings.provided.write_concurrency,
        ttl_days=settings.provided.marker_ttl_days,
        cache_size=settings.provided.marker_cache_entries,
    )
    dynamodb_user_sketches = providers.Singleton(
        DynamoDbUserSketches,
        dynamodb_client,
        settings.provided.dynamodb_table,
        max_workers=settings.provided.write_concurrency,
    )
    dynamodb_unique_users: providers.Provider[UniqueUserMarkers] = providers.Selector(
        settings.provided.unique_users,
        exact=dynamodb_unique_user_markers,
        sketch=providers.Singleton(SketchedUniqueUsers, dynamodb_user_sketches),
    )
    dynamodb_metric_store = providers.Singleton(
        DynamoDbMetricStore,
        dynamodb_client,
        settings.provided.dynamodb_table,
        max_workers=settings.provided.write_concurrency,
        clock=clock,
        markers=dynamodb_unique_users,
    )

    assignment_repository_adapter: providers.Provider[AssignmentRepository] = providers.Selector(
        settings.provided.back_end,
        aws=providers.Singleton(
            DynamoDbAssignmentRepository, dynamodb_client, settings.provided.assignments_table
        ),
        memory=in_memory_assignment_repository,
    )
    experiment_repository_adapter: providers.Provider[ExperimentRepository] = providers.Selector(
        settings.provided.back_end,
        aws=providers.Singleton(
            DynamoDbExperimentRepository, dynamodb_client, settings.provided.experiments_table
        ),
        memory=in_memory_experiment_repository,
    )
    metric_store_adapter: providers.Provider[MetricStore] = providers.Selector(
        settings.provided.back_end, aws=dynamodb_metric_store, memory=in_memory_metric_store
    )
    user_sketches: providers.Provider[UserSketches] = providers.Selector(
        settings.provided.back_end, aws=dynamodb_user_sketches, memory=in_memory_user_sketches
    )
    """The sketches of `UNIQUE_USERS=sketch`, which reports read."""
    event_archive_adapter: providers.Provider[EventArchive] = providers.Selector(
        settings.provided.back_end,
        aws=providers.Singleton(
            S3EventArchive,
            s3_client,
            settings.provided.s3_bucket,
            prefix=settings.provided.archive_prefix,
            codec=archive_codec,
            max_workers=settings.provided.write_concurrency,
            encryption=s3_encryption,
        ),
        memory=in_memory_event_archive,
    )
    dead_letter_queue_adapter: providers.Provider[DeadLetterQueue] = providers.Selector(
        settings.provided.back_end,
        aws=providers.Singleton(
            _dead_letter_queue,
            settings,
            sqs_client,
            providers.Singleton(
                S3DeadLetterStore,
                s3_client,
                settings.provided.s3_bucket,
                settings.provided.dead_letter_prefix,
                s3_encryption,
            ),
            clock,
        ),
        memory=in_memory_dead_letter_queue,
    )
    durable_event_ids_adapter: providers.Provider[RecentEventIndex] = providers.Selector(
        settings.provided.back_end,
        aws=providers.Singleton(
            DynamoDbRecentEventIndex,
            dynamodb_client,
            settings.provided.dynamodb_table,
            clock,
            ttl_days=settings.provided.event_id_ttl_days,
            max_workers=settings.provided.write_concurrency,
        ),
        memory=in_memory_durable_event_ids,
    )

    # The ports as the use cases receive them, whichever the back end.
    assignment_repository = providers.Singleton(
        TracedAssignmentRepository,
        providers.Singleton(
            CachingAssignmentRepository,
            assignment_repository_adapter,
            max_size=settings.provided.cache_max_entries,
            ttl_seconds=settings.provided.cache_ttl_seconds,
        ),
        tracer,
    )
    experiment_repository = providers.Singleton(
        TracedExperimentRepository,
        providers.Singleton(
            CachingExperimentRepository,
            experiment_repository_adapter,
            max_size=settings.provided.cache_max_entries,
            ttl_seconds=settings.provided.cache_ttl_seconds,
        ),
        tracer,
    )
    metric_store = providers.Singleton(TracedMetricStore, metric_store_adapter, tracer)
    event_archive = providers.Singleton(TracedEventArchive, event_archive_adapter, tracer)
    dead_letter_queue = providers.Singleton(
        TracedDeadLetterQueue, dead_letter_queue_adapter, tracer
    )
    recent_events_in_memory = providers.Singleton(
        InMemoryRecentEventIndex, capacity=settings.provided.recent_event_ids
    )
    recent_events: providers.Provider[RecentEventIndex] = providers.Selector(
        settings.provided.event_id_index,
        memory=recent_events_in_memory,
        dynamodb=providers.Singleton(
            LayeredRecentEventIndex, recent_events_in_memory, durable_event_ids_adapter
        ),
    )
    """EVENT_ID_INDEX: the warm container's memory alone (default), or that memory in front of
    the aggregation table, which remembers ids across cold starts."""
    processing_settings = providers.Singleton(_processing_settings, settings)
    candidate_memo = providers.Singleton(CandidateMemo)
    """Each user's candidate assignments across the warm container's batches; see its docstring
    for what it requires of the repositories' caches above."""
    archive_line_writer = providers.Singleton(ArchiveLineWriter)
    """The archive lines' templates across the warm container's batches."""

    batch_processor = providers.Singleton(
        BatchProcessor,
        assignment_repository,
        experiment_repository,
        metric_store,
        event_archive,
        dead_letter_queue,
        recent_events,
        clock,
        telemetry,
        processing_settings,
        memo=candidate_memo,
        line_writer=archive_line_writer,
    )
