"""`consume`: read the stream as Lambda's event-source mapping does, invoking the handler."""

from __future__ import annotations

import time
from collections.abc import Sequence
from enum import StrEnum
from typing import Annotated

import typer

from operations.cli.aws_access import (
    aws_environment,
    build_container,
    kinesis_client,
    region_of,
    run_against_aws,
)
from operations.cli.console import EXIT_FAILURES, EXIT_INTERRUPTED, print_summary, stderr_console
from operations.cli.handler_output import lambda_output_to_stderr
from operations.cli.options import EndpointUrl, StreamName, table_or_json
from operations.cli.progress import ProgressReporter
from operations.cli.report_output import OutputFormat
from operations.cli.stream import DEFAULT_STREAM, consumer_summary, progress_line


class StartingPosition(StrEnum):
    TRIM_HORIZON = "TRIM_HORIZON"
    LATEST = "LATEST"


def consume(
    stream: StreamName = DEFAULT_STREAM,
    batch_size: Annotated[
        int, typer.Option(min=1, max=10_000, help="Records per invocation.")
    ] = 100,
    batching_window: Annotated[
        float,
        typer.Option(
            min=0,
            max=300,
            help="Seconds to gather a fuller batch (MaximumBatchingWindowInSeconds).",
        ),
    ] = 0.0,
    starting_position: Annotated[
        StartingPosition, typer.Option(help="Where a shard is first read from.")
    ] = StartingPosition.TRIM_HORIZON,
    until_drained: Annotated[
        bool,
        typer.Option("--until-drained", help="Stop once every shard is read to its tip and done."),
    ] = False,
    max_retries: Annotated[
        int,
        typer.Option(
            min=0,
            help="Retries of a failing batch before the consumer stops (Lambda would move on).",
        ),
    ] = 3,
    bisect: Annotated[
        bool, typer.Option("--bisect", help="Split a failing batch in two before retrying it.")
    ] = False,
    function_timeout: Annotated[
        float,
        typer.Option(min=1, help="The function timeout each invocation counts down from (s)."),
    ] = 60.0,
    output: Annotated[
        OutputFormat,
        typer.Option(
            "--format", "-f", help="table or json (the final summary).", callback=table_or_json
        ),
    ] = OutputFormat.TABLE,
    endpoint_url: EndpointUrl = None,
) -> None:
    """Read a Kinesis stream as Lambda's event-source mapping does and invoke the real handler.

    One batch in flight per shard; partial batch responses are honoured (checkpoint before the
    first failure, redeliver from it); an error or a timeout retries the whole batch. A progress
    line shows records/s and the iterator lag. Stops at Ctrl-C, with --until-drained once the
    stream is drained, or with exit code 1 when a batch still fails after --max-retries."""
    from entrypoints import lambda_handler
    from operations.event_source_emulator import (
        DiscardedBatch,
        EmulatorStats,
        EventSourceMappingEmulator,
        EventSourceMappingSettings,
        StreamRecord,
    )
    from operations.event_source_emulator import StartingPosition as EmulatorPosition

    given_up: list[DiscardedBatch] = []

    def stop_on_failure(batch: DiscardedBatch, records: Sequence[StreamRecord]) -> None:
        given_up.append(batch)

    stderr = stderr_console()
    reporter = ProgressReporter(f"consume {stream}", stderr)

    def show(stats: EmulatorStats) -> None:
        reporter.update(progress_line(stats, time.monotonic()))

    with aws_environment(endpoint_url), lambda_output_to_stderr(), reporter:
        container = build_container()
        kinesis = kinesis_client(container)
        settings = EventSourceMappingSettings(
            stream_name=stream,
            region=region_of(container),
            batch_size=batch_size,
            maximum_batching_window_seconds=batching_window,
            starting_position=EmulatorPosition(starting_position.value),
            bisect_batch_on_function_error=bisect,
            maximum_retry_attempts=max_retries,
            function_timeout_seconds=function_timeout,
        )
        emulator = EventSourceMappingEmulator(
            kinesis, lambda_handler.handler, settings, on_progress=show, on_failure=stop_on_failure
        )
        lambda_handler.container.cache_clear()
        interrupted = False
        try:
            stats = run_against_aws(
                lambda: emulator.run(
                    until_drained=until_drained, should_stop=lambda: bool(given_up)
                )
            )
        except KeyboardInterrupt:
            interrupted, stats = True, emulator.stats
        finally:
            lambda_handler.container.cache_clear()
    summary = consumer_summary(stats, time.monotonic())
    print_summary(summary, output)
    for batch in given_up:
        stderr_console().print(
            f"[bold red]error:[/bold red] batch {batch.first_sequence_number}.."
            f"{batch.last_sequence_number} of {batch.shard_id} failed {batch.attempts} times "
            f"({batch.last_outcome.value}: {batch.last_error}); stopped"
        )
    if given_up:
        raise typer.Exit(EXIT_FAILURES)
    if interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
