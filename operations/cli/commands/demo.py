"""`demo`: the whole pipeline on an embedded AWS emulator, no account needed."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from domain.metrics import Granularity
from operations.cli.aws_access import (
    build_container,
    kinesis_client,
    provision_resources,
    region_of,
    resource_names,
    run_against_aws,
)
from operations.cli.console import stderr_console, stdout_console
from operations.cli.handler_output import lambda_output_to_stderr
from operations.cli.progress import ProgressReporter, elapsed_label
from operations.cli.stream import (
    DEFAULT_QUEUE,
    DEFAULT_STREAM,
    environment,
    progress_line,
    put_entries,
)

if TYPE_CHECKING:
    from operations.container import OperationsContainer


def demo(
    events: Annotated[
        int, typer.Option(min=100, max=1_000_000, help="Records to generate.")
    ] = 2_000,
    seed_value: Annotated[int, typer.Option("--seed", help="Seed of the generated workload.")] = 7,
    experiments: Annotated[int, typer.Option(min=1, max=100, help="Experiments to generate.")] = 3,
    users: Annotated[int, typer.Option(min=10, help="Users to generate.")] = 1_500,
    hours: Annotated[
        int, typer.Option(min=1, max=24 * 14, help="Hours of event time the stream spans.")
    ] = 6,
    batch_size: Annotated[
        int, typer.Option(min=1, max=10_000, help="Records per invocation.")
    ] = 500,
    experiment: Annotated[
        str | None,
        typer.Option("--experiment", "-e", help="Experiment to report (default: the first)."),
    ] = None,
    chart: Annotated[Path, typer.Option(help="Where to write the chart.")] = Path("demo-chart.png"),
    keep_running: Annotated[
        bool,
        typer.Option("--keep-running", help="Leave the server up for other commands until Ctrl-C."),
    ] = False,
) -> None:
    """The whole pipeline on an embedded AWS emulator, no account and no network needed.

    Starts moto's server on 127.0.0.1, provisions the stream, tables, bucket and queue, seeds
    generated experiments and assignments, puts a realistic stream (a few bad records
    included) into Kinesis, drains it through the real Lambda handler with the local
    event-source mapping, then prints the report and writes a chart."""
    from application.reporting import read_report
    from entrypoints import lambda_handler
    from operations.charts import ChartMeasure, write_report_chart
    from operations.cli.report_output import render_table
    from operations.event_source_emulator import (
        EmulatorStats,
        EventSourceMappingEmulator,
        EventSourceMappingSettings,
    )
    from operations.local_aws import LocalAws
    from operations.synthetic.workload import WorkloadSpec, generate

    stderr = stderr_console()
    console = stdout_console()
    started = time.monotonic()
    local_aws = LocalAws.start()
    try:
        endpoint = local_aws.endpoint_url
        console.print(f"{_since(started)} [bold]1.[/bold] AWS emulator (moto) on {endpoint}")
        with environment(DEMO_ENVIRONMENT | {"AWS_ENDPOINT_URL": endpoint}):
            container = build_container()
            settings = container.settings()
            names = resource_names(settings, DEFAULT_QUEUE, DEFAULT_STREAM)
            kinesis = kinesis_client(container)
            resources = provision_resources(container, names)
            console.print(
                f"{_since(started)} [bold]2.[/bold] provisioned stream {names.stream}, tables "
                f"{names.aggregation_table}, {names.assignments_table}, {names.experiments_table}, "
                f"bucket {names.archive_bucket}, queue {DEFAULT_QUEUE}"
            )
            workload = generate(
                WorkloadSpec(
                    events=events,
                    experiments=experiments,
                    users=users,
                    span=timedelta(hours=hours),
                    seed=seed_value,
                )
            )
            writer = container.reference_data_writer()
            run_against_aws(lambda: writer.write_experiments(workload.experiments))
            run_against_aws(lambda: writer.write_assignments(workload.assignments, replace=True))
            console.print(
                f"{_since(started)} [bold]3.[/bold] seeded {len(workload.experiments)} experiments and "
                f"{len(workload.assignments):,} assignments of {users:,} users"
            )
            put = run_against_aws(lambda: put_entries(kinesis, names.stream, workload.entries))
            invalid = sum(1 for entry in workload.entries if not entry.valid)
            console.print(
                f"{_since(started)} [bold]4.[/bold] put {len(put.placed):,} records into {names.stream} "
                f"({invalid} of them invalid) in {put.calls} PutRecords calls"
            )
            with (
                environment({"DLQ_URL": resources.dead_letter_queue_url}),
                lambda_output_to_stderr(),
            ):
                lambda_handler.container.cache_clear()
                previous_level = lambda_handler.logger.log_level
                lambda_handler.logger.setLevel("WARNING")
                reporter = ProgressReporter(
                    "draining through the Lambda handler", stderr, started=started
                )

                def show(stats: EmulatorStats) -> None:
                    reporter.update(progress_line(stats, time.monotonic()))

                emulator = EventSourceMappingEmulator(
                    kinesis,
                    lambda_handler.handler,
                    EventSourceMappingSettings(
                        stream_name=names.stream,
                        region=region_of(container),
                        batch_size=batch_size,
                        maximum_retry_attempts=3,
                    ),
                    on_progress=show,
                )
                try:
                    with reporter:
                        stats = run_against_aws(lambda: emulator.run(until_drained=True))
                finally:
                    lambda_handler.logger.setLevel(previous_level)
                    lambda_handler.container.cache_clear()
            dead_letters = _queue_depth(container, resources.dead_letter_queue_url)
            archived = _object_count(container, settings.s3_bucket, settings.archive_prefix)
            console.print(
                f"{_since(started)} [bold]5.[/bold] drained through the Lambda handler: "
                f"{progress_line(stats, time.monotonic())}; {stats.invocations} invocations "
                f"({', '.join(f'{o.value} {n}' for o, n in sorted(stats.outcomes.items()))}); "
                f"{archived} archive objects, {dead_letters} dead letters in the queue"
            )
            chosen = experiment or workload.experiments[0].experiment_id
            daily = read_report(
                container.metric_store(), container.experiment_repository(), chosen, Granularity.DAY
            )
            hourly = read_report(
                container.metric_store(),
                container.experiment_repository(),
                chosen,
                Granularity.HOUR,
                user_sets=True,  # the chart's cumulative rates
            )
            console.print(
                f"{_since(started)} [bold]6.[/bold] report of {chosen} (event-processor report -e {chosen})\n"
            )
            render_table(daily, console)
            write_report_chart(
                hourly, "conversion", ChartMeasure.RATE, chart, container.clock().now()
            )
            console.print(
                f"\nchart of the cumulative conversion rate per variant, with its 95% band: {chart}"
                f" (event-processor report -e {chosen} --window hour --chart {chart.name}"
                " --chart-metric conversion)"
            )
            console.print(f"done in {time.monotonic() - started:.1f} s")
            if keep_running:
                console.print(
                    "\nThe emulator stays up; in another shell try:\n"
                    f"  export AWS_ENDPOINT_URL={endpoint} AWS_ACCESS_KEY_ID=demo "
                    f"AWS_SECRET_ACCESS_KEY=demo AWS_DEFAULT_REGION={DEMO_REGION} "
                    f"DLQ_URL={resources.dead_letter_queue_url}\n"
                    f"  event-processor report -e {chosen} --window hour --format json\n"
                    "  event-processor replay --from-dlq --dry-run\n"
                    "Ctrl-C stops it.",
                    markup=False,
                )
                try:
                    while True:
                        time.sleep(3600)
                except KeyboardInterrupt:
                    console.print("stopped")
    finally:
        local_aws.stop()


DEMO_REGION = "eu-west-1"
DEMO_ENVIRONMENT = {
    # The embedded emulator takes any credentials; never hand it real ones.
    "AWS_ACCESS_KEY_ID": "demo",
    "AWS_SECRET_ACCESS_KEY": "demo",
    "AWS_SESSION_TOKEN": "demo",
    "AWS_DEFAULT_REGION": DEMO_REGION,
    "AWS_REGION": DEMO_REGION,
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_TRACE_DISABLED": "true",
    # moto answers one request at a time in this process: give it longer than AWS needs.
    "AWS_READ_TIMEOUT": "30",
}


def _since(started: float) -> str:
    return elapsed_label(time.monotonic() - started)


def _queue_depth(container: OperationsContainer, queue_url: str) -> int:
    attributes = container.sqs_client().get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes.get("ApproximateNumberOfMessages", "0"))


def _object_count(container: OperationsContainer, bucket: str, prefix: str) -> int:
    paginator = container.s3_client().get_paginator("list_objects_v2")
    return sum(page.get("KeyCount", 0) for page in paginator.paginate(Bucket=bucket, Prefix=prefix))
