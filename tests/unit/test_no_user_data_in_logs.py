"""No user data in the logs at any level but DEBUG: the Lambda handler, on the in-memory back
end, over a hostile corpus (every kind of bad record, malformed assignments, valid events, a
duplicate) whose user ids and payload values are markers. Logged at INFO and at WARNING, no
marker (nor its base64) reaches a log record, the Powertools logger's output, a warning, stdout
or stderr; what is logged says what happened with counts and reasons instead."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ParamValidationError

from application.process_batch import ProcessingSettings
from domain.rejections import CONTRACT_REASONS
from entrypoints import lambda_handler
from infrastructure.aws.errors import translate
from tests.captured_output import captured_at
from tests.containers import MemoryBackEnd, memory_container
from tests.factories import assignment, experiment
from tests.hostile_records import (
    ASSIGNED_USER,
    EXPERIMENT,
    SECRET,
    hostile_records,
    kinesis_event,
    leaks,
    malformed_assignments,
)
from tests.lambda_support import fresh_context

NOW = datetime.now(UTC).replace(microsecond=0)
MOMENT = NOW - timedelta(hours=1)


def _world() -> MemoryBackEnd:
    """The memory back end, publishing through Powertools as the deployed handler does."""
    return MemoryBackEnd(
        memory_container(
            powertools_metrics=lambda_handler.metrics,
            powertools_logger=lambda_handler.logger,
            tracer=lambda_handler.tracer,
            processing_settings=ProcessingSettings(),
        )
    )


@pytest.mark.parametrize("level", ["INFO", "WARNING"])
def test_the_handler_logs_no_user_id_and_no_payload_value_over_a_hostile_batch(
    level: str, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    world = _world()
    world.experiments.put_all([experiment(EXPERIMENT)])
    records = hostile_records(MOMENT)
    event = kinesis_event(records, NOW.timestamp())
    with captured_at(level, lambda_handler.logger, caplog) as captured:
        world.assignments.put_all(
            [
                assignment(ASSIGNED_USER, EXPERIMENT, assigned_at=NOW - timedelta(days=30)),
                *malformed_assignments(MOMENT),
            ]
        )
        with lambda_handler.container.replaced_by(world.container):
            response = lambda_handler.handler(event, fresh_context())
    out, err = capfd.readouterr()
    logged = captured.text(caplog, out, err)

    assert response == {"batchItemFailures": []}
    assert {letter.reason for letter in world.dead_letters.letters()} == CONTRACT_REASONS
    assert world.assignments.malformed_items == len(malformed_assignments(MOMENT))
    assert world.archive.lines(), "no valid event of the corpus was counted"
    assert "skipped 1 malformed assignment" in logged  # a WARNING, with its reason
    if level == "INFO":
        [line] = [
            json.loads(text)
            for text in captured.powertools.getvalue().splitlines()
            if "batch processed" in text
        ]
        assert line["records"] == len(records)
        assert line["duplicates"] == 1
    assert leaks(logged) == []


def test_a_parameter_botocore_refuses_is_named_in_the_error_without_its_value() -> None:
    # botocore quotes the value it refuses; the domain error's detail is logged (a batch's
    # problems at WARNING, an invocation's traceback at ERROR).
    refused = ParamValidationError(
        report=(
            f"Invalid type for parameter Item.sort_key.S, value: {ASSIGNED_USER!r}, "
            "type: <class 'bytes'>, valid types: <class 'str'>\n"
            f"Invalid length for parameter Key.note.S, value: {SECRET!r}, valid max length: 4"
        )
    )

    error = translate(refused, "PutItem")

    assert str(error) == (
        "PutItem: ParamValidationError: Invalid type for parameter Item.sort_key.S; "
        "Invalid length for parameter Key.note.S"
    )
    assert leaks(str(error)) == []
