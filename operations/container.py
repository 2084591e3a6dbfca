"""The operators' composition root: the Lambda's container, extended with what only the tools use
(the stream's client, replays, erasure, the archive and dead-letter readers, the reference-data
writer). The batch wiring is inherited from `entrypoints.container.Container`, never copied."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from dependency_injector import providers

from application.erasure import UserEraser
from application.ports import ArchiveEditor, DeadLetterBacklog, PersonalItemStore, ReplayLedger
from application.process_batch import BatchProcessor, ProcessingSettings
from application.replay import ReplayProcessor
from entrypoints.container import Container
from entrypoints.settings import Settings
from infrastructure.aws.dynamodb_personal_items import DynamoDbPersonalItemStore
from infrastructure.aws.dynamodb_replay_ledger import DynamoDbReplayLedger
from infrastructure.aws.s3_archive_editor import S3ArchiveEditor
from infrastructure.in_memory.personal_items import InMemoryPersonalItemStore
from infrastructure.in_memory.replay_ledger import InMemoryReplayLedger
from operations.aws.archive_reader import S3ArchiveReader
from operations.aws.dead_letter_backlogs import S3DeadLetterBacklog, SqsDeadLetterBacklog
from operations.aws.dead_letter_readers import S3DeadLetterReader
from operations.aws.reference_data import DynamoDbReferenceDataWriter

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient


def _kinesis_client(session: boto3.session.Session, config: Config) -> KinesisClient:
    return session.client("kinesis", config=config)


def _without_archiving(settings: ProcessingSettings) -> ProcessingSettings:
    return replace(settings, archive_events=False)


def _dead_letter_backlogs(
    settings: Settings, sqs_client: SQSClient, s3_client: S3Client
) -> list[DeadLetterBacklog]:
    """Where dead letters are kept: the queue when DLQ_URL is set, and always the dead-letter
    prefix in S3 (letters kept without a queue, refused by it, or too large for it), in that
    order: a message is removed before the S3 body it points to."""
    stored = S3DeadLetterBacklog(s3_client, settings.s3_bucket, settings.dead_letter_prefix)
    if settings.dlq_url:
        return [SqsDeadLetterBacklog(sqs_client, settings.dlq_url, s3_client), stored]
    return [stored]


class OperationsContainer(Container):
    """Everything the command line, the demo and the other operators' tools need."""

    kinesis_client = providers.Singleton(
        _kinesis_client, Container.session, Container.botocore_config
    )
    """Only the operators' tools read the stream; the Lambda's event-source mapping does it for
    the function, which never builds this client."""

    reference_data_writer = providers.Singleton(
        DynamoDbReferenceDataWriter,
        Container.dynamodb_client,
        Container.settings.provided.assignments_table,
        Container.settings.provided.experiments_table,
    )
    """`seed` and the demo: experiments and assignments into their tables."""

    archive_reader = providers.Factory(
        S3ArchiveReader,
        Container.s3_client,
        Container.settings.provided.s3_bucket,
        Container.settings.provided.archive_prefix,
    )
    stored_dead_letter_reader = providers.Factory(
        S3DeadLetterReader,
        Container.s3_client,
        Container.settings.provided.s3_bucket,
        Container.settings.provided.dead_letter_prefix,
    )
    """The dead letters kept in S3 (without a queue, the handler keeps them there alone)."""

    in_memory_replay_ledger = providers.Singleton(InMemoryReplayLedger)
    replay_ledger: providers.Provider[ReplayLedger] = providers.Selector(
        Container.settings.provided.back_end,
        aws=providers.Singleton(
            DynamoDbReplayLedger,
            Container.dynamodb_client,
            Container.settings.provided.dynamodb_table,
            Container.clock,
            max_workers=Container.settings.provided.write_concurrency,
        ),
        memory=in_memory_replay_ledger,
    )
    replay_processor = providers.Factory(
        ReplayProcessor,
        Container.assignment_repository,
        Container.experiment_repository,
        Container.metric_store,
        replay_ledger,
        Container.event_archive,
        Container.clock,
        Container.processing_settings,
    )
    archive_replay_processor = providers.Factory(
        BatchProcessor,
        Container.assignment_repository,
        Container.experiment_repository,
        Container.metric_store,
        Container.event_archive,
        Container.dead_letter_queue,
        Container.recent_events,
        Container.clock,
        Container.telemetry,
        providers.Singleton(_without_archiving, Container.processing_settings),
    )
    """Replays the archive through the stream's own path (per-shard watermarks), archiving nothing."""

    personal_item_store: providers.Provider[PersonalItemStore] = providers.Selector(
        Container.settings.provided.back_end,
        aws=providers.Singleton(
            DynamoDbPersonalItemStore,
            Container.dynamodb_client,
            Container.settings.provided.dynamodb_table,
        ),
        # In one process, the event ids the memory back end remembers are the warm memory's.
        memory=providers.Singleton(
            InMemoryPersonalItemStore,
            Container.in_memory_unique_user_markers,
            Container.recent_events_in_memory,
            in_memory_replay_ledger,
        ),
    )
    archive_editor: providers.Provider[ArchiveEditor] = providers.Selector(
        Container.settings.provided.back_end,
        aws=providers.Singleton(
            S3ArchiveEditor,
            Container.s3_client,
            Container.settings.provided.s3_bucket,
            Container.settings.provided.archive_prefix,
            Container.s3_encryption,
        ),
        memory=Container.in_memory_event_archive,
    )
    dead_letter_backlogs: providers.Provider[list[DeadLetterBacklog]] = providers.Selector(
        Container.settings.provided.back_end,
        aws=providers.Singleton(
            _dead_letter_backlogs, Container.settings, Container.sqs_client, Container.s3_client
        ),
        memory=providers.List(Container.in_memory_dead_letter_queue),
    )
    user_eraser = providers.Factory(
        UserEraser, personal_item_store, archive_editor, dead_letter_backlogs
    )
    """`forget-user`: erases users' markers, event ids, claims, dead letters and archive lines."""
