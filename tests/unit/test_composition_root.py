"""The container is the one composition root: it chooses the back end and the telemetry, and the
Lambda handler runs on whichever container a test hands it."""

from __future__ import annotations

from application.results import BatchResult
from entrypoints import lambda_handler
from entrypoints.container import Container
from infrastructure.clock import ManualClock
from infrastructure.in_memory.telemetry import InMemoryTelemetry
from infrastructure.powertools_telemetry import PowertoolsTelemetry
from infrastructure.tracing import TracedAssignmentRepository, TracedMetricStore
from tests.containers import MemoryBackEnd, memory_container, memory_operations_container
from tests.factories import NOW, SHARD, assignment, event_payload, experiment, record_of
from tests.lambda_support import fresh_context


def _result(records: int) -> BatchResult:
    return BatchResult(
        records=records,
        processed=records,
        duplicates=0,
        dead_lettered={},
        unattributed=0,
        attributions=records,
        archived_objects=0,
        metric_keys_updated=0,
        failures=(),
    )


def test_with_the_memory_back_end_every_port_leads_to_the_containers_in_memory_adapter() -> None:
    container = memory_container()

    assert container.assignment_repository_adapter() is (
        container.in_memory_assignment_repository()
    )
    assert container.experiment_repository_adapter() is (
        container.in_memory_experiment_repository()
    )
    assert container.metric_store_adapter() is container.in_memory_metric_store()
    assert container.event_archive_adapter() is container.in_memory_event_archive()
    assert container.dead_letter_queue_adapter() is container.in_memory_dead_letter_queue()
    assert container.durable_event_ids_adapter() is container.in_memory_durable_event_ids()
    operations = memory_operations_container()
    assert operations.replay_ledger() is operations.in_memory_replay_ledger()
    assert operations.archive_editor() is operations.in_memory_event_archive()
    assert operations.dead_letter_backlogs() == [operations.in_memory_dead_letter_queue()]


def test_the_in_memory_adapters_are_wrapped_by_the_same_caches_and_tracing_as_the_aws_ones() -> (
    None
):
    container = memory_container()

    assert isinstance(container.assignment_repository(), TracedAssignmentRepository)
    assert isinstance(container.metric_store(), TracedMetricStore)
    container.in_memory_assignment_repository().put_all([assignment("user-1", "exp-1")])

    for _ in range(2):
        container.assignment_repository().assignments_for(["user-1"])

    assert container.in_memory_assignment_repository().lookups == 1, "the cache answered"


def test_without_powertools_the_telemetry_keeps_the_most_recent_results_only() -> None:
    container = memory_container()
    container.settings.override(
        container.settings().model_copy(update={"telemetry_results_kept": 2})
    )
    telemetry = container.telemetry()
    assert isinstance(telemetry, InMemoryTelemetry)

    for records in (1, 2, 3):
        telemetry.publish(_result(records))

    assert [result.records for result in telemetry.results()] == [2, 3]


def test_the_handlers_container_publishes_through_the_handlers_powertools_utilities() -> None:
    built = Container(
        powertools_metrics=lambda_handler.metrics,
        powertools_logger=lambda_handler.logger,
        tracer=lambda_handler.tracer,
    )

    assert isinstance(built.telemetry(), PowertoolsTelemetry)
    assert built.tracer() is lambda_handler.tracer


def test_the_handler_runs_on_the_container_it_is_handed_and_then_on_its_own_again() -> None:
    world = MemoryBackEnd(memory_container(clock=ManualClock(NOW)))
    world.experiments.put_all([experiment("exp-1")])
    world.assignments.put_all([assignment("user-1", "exp-1", "control")])
    record = record_of(event_payload(event_id="evt-1"), 1)
    event = {
        "Records": [
            {
                "kinesis": {
                    "partitionKey": "pk",
                    "sequenceNumber": "1",
                    "data": record.data,
                    "approximateArrivalTimestamp": NOW.timestamp(),
                },
                "eventSource": "aws:kinesis",
                "eventID": f"{SHARD}:1",
            }
        ]
    }
    lambda_handler.container.cache_clear()
    own = lambda_handler.container()

    with lambda_handler.container.replaced_by(world.container):
        response = lambda_handler.handler(event, fresh_context())

    assert response == {"batchItemFailures": []}
    assert [result.processed for result in world.telemetry.results()] == [1]
    assert lambda_handler.container() is own
    lambda_handler.container.cache_clear()
