"""`event-processor`: the command line of the people who run the pipeline.

Every command that talks to AWS takes `--endpoint-url` (default: the standard AWS configuration)
and reads the same environment variables as the Lambda (entrypoints.settings.Settings).

Exit codes: 0 success; 1 the work ran and failures were reported (or a back end failed);
2 bad usage: unknown options, bad values, unreadable or invalid input files.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, redirect_stdout
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar
from urllib.parse import urlsplit

import typer
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError
from rich.console import Console
from typer.core import TyperGroup

from domain.errors import InfrastructureConfigurationError, PipelineError
from domain.metrics import Granularity
from infrastructure.aws.errors import translate
from operations.cli.progress import ProgressReporter
from operations.cli.report_output import OutputFormat, parse_moment
from operations.cli.stream import (
    DEFAULT_QUEUE,
    DEFAULT_STREAM,
    consumer_summary,
    environment,
    progress_line,
    put_entries,
)
from operations.event_source_emulator import lambda_context

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient

    from entrypoints.settings import Settings
    from operations.aws.provisioning import ResourceNames
    from operations.aws.reference_data import Changes
    from operations.container import OperationsContainer

PIPED_WIDTH = 160
EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
NO_REGION = "no AWS region configured: set AWS_DEFAULT_REGION or AWS_REGION"

T = TypeVar("T")


class _OneLineErrors(TyperGroup):
    """A usage error is one line on stderr (`error: ...`, with where to find help) and exit code
    2, instead of a boxed panel; everything else is as Typer does it."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.Abort:
            _stderr().print("aborted", markup=False)
            sys.exit(EXIT_FAILURES)
        except typer.TyperException as error:  # Typer's usage and parameter errors
            if type(error).__name__ == "NoArgsIsHelpError":
                getattr(error, "show")()  # noqa: B009 (the help, as Typer shows it)
                sys.exit(error.exit_code)
            context = getattr(error, "ctx", None)
            hint = f" (see '{context.command_path} -h')" if context is not None else ""
            format_message = getattr(error, "format_message", None)
            message = format_message() if callable(format_message) else str(error)
            _stderr().print(f"error: {message}{hint}", markup=False)
            sys.exit(error.exit_code)
        sys.exit(code if isinstance(code, int) else EXIT_OK)


app = typer.Typer(
    cls=_OneLineErrors,
    name="event-processor",
    help="Run, feed, replay and report on the Experimently event processor.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _stdout() -> Console:
    # rich colours only a terminal and honours NO_COLOR; results go to stdout, messages to stderr.
    # Piped into a file or a pager, tables get room instead of rich's default 80 columns.
    console = Console(highlight=False, soft_wrap=True)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPED_WIDTH
    return console


def _stderr() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, code: int = EXIT_FAILURES) -> NoReturn:
    _stderr().print(f"[bold red]error:[/bold red] {message}", markup=True)
    raise typer.Exit(code)


def _endpoint_url(value: str | None) -> str | None:
    """An endpoint is an http(s) URL with a host: `localhost:5123` alone is not one."""
    if value is None:
        return None
    parsed = urlsplit(value)
    try:
        parsed.port  # noqa: B018 (a port that is not a number raises here)
    except ValueError:
        raise typer.BadParameter(f"{value!r} has a port that is not a number") from None
    if parsed.scheme not in {"http", "https"} or not parsed.hostname:
        raise typer.BadParameter(f"{value!r} is not an http(s) URL, e.g. http://127.0.0.1:5000")
    return value


def _table_or_json(value: OutputFormat) -> OutputFormat:
    """The commands whose output is a summary have no CSV form: refuse it, never ignore it."""
    if value is OutputFormat.CSV:
        raise typer.BadParameter("csv is only for `report`; this command prints table or json")
    return value


EndpointUrl = Annotated[
    str | None,
    typer.Option(
        "--endpoint-url",
        callback=_endpoint_url,
        help="AWS endpoint (e.g. http://127.0.0.1:5000 for an emulator). "
        "Default: the standard AWS configuration (AWS_ENDPOINT_URL if set).",
        show_default=False,
    ),
]


@contextmanager
def aws_environment(endpoint_url: str | None) -> Iterator[None]:
    """Point every boto3 client built inside at `endpoint_url` (boto3 reads AWS_ENDPOINT_URL),
    the Lambda handler's own container included; the environment is restored afterwards."""
    if endpoint_url is None:
        yield
        return
    with environment({"AWS_ENDPOINT_URL": endpoint_url}):
        yield


def build_container() -> OperationsContainer:
    """The composition root, configured from the environment (built per command)."""
    from pydantic import ValidationError

    from operations.container import OperationsContainer

    container = OperationsContainer()
    try:
        container.settings()
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in error.errors()
        )
        fail(f"bad configuration in the environment: {problems}", EXIT_USAGE)
    if not container.session().region_name:
        fail(NO_REGION, EXIT_USAGE)  # before any client is built: boto3 would raise there
    return container


NO_CREDENTIALS = (
    "no AWS credentials found: configure a profile (AWS_PROFILE) or "
    "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (an emulator takes any)"
)


def run_against_aws(work: Callable[[], T]) -> T:
    """Run `work`, turning a back-end failure into a clear message and exit code 1, and a
    missing region or missing credentials (configuration) into exit code 2."""
    try:
        try:
            return work()
        except (BotoCoreError, ClientError) as error:
            raise translate(error, "AWS") from error
    except PipelineError as error:
        cause = error.__cause__
        if isinstance(cause, NoRegionError):
            fail(NO_REGION, EXIT_USAGE)
        if isinstance(cause, NoCredentialsError):
            fail(NO_CREDENTIALS, EXIT_USAGE)
        if isinstance(error, InfrastructureConfigurationError):
            fail(f"{error} (is the endpoint right, and the resources provisioned?)")
        fail(str(error))


def _moment_option(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_moment(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO 8601 date or date-time (e.g. 2026-11-20 or 2026-11-20T10:00Z)"
        ) from None


class Window(StrEnum):
    HOUR = "hour"
    DAY = "day"


class Measure(StrEnum):
    RATE = "rate"
    EVENTS = "events"
    USERS = "users"


@app.command()
def report(
    experiment: Annotated[str, typer.Option("--experiment", "-e", help="Experiment id.")],
    window: Annotated[Window, typer.Option(help="Counter windows to read.")] = Window.DAY,
    start: Annotated[
        str | None,
        typer.Option(help="First window start to include (ISO 8601; UTC unless a zone is given)."),
    ] = None,
    end: Annotated[
        str | None, typer.Option(help="Windows starting at or after this are left out.")
    ] = None,
    control: Annotated[
        str, typer.Option(help="The variant the others are compared with.")
    ] = "control",
    output: Annotated[
        OutputFormat,
        typer.Option("--format", "-f", help="table for people; json or csv for scripts."),
    ] = OutputFormat.TABLE,
    chart: Annotated[
        Path | None,
        typer.Option(help="Also draw --chart-metric over the windows to this .png, .svg or .pdf."),
    ] = None,
    chart_metric: Annotated[str, typer.Option(help="Metric (event type) to chart.")] = "exposure",
    chart_measure: Annotated[
        Measure,
        typer.Option(
            help="rate: the cumulative rate (for exposure: the share against the weights) "
            "with its 95% band; events or users: the counts per window."
        ),
    ] = Measure.RATE,
    fail_on_srm: Annotated[
        bool,
        typer.Option("--fail-on-srm", help="Exit 1 when the sample ratio check flags a mismatch."),
    ] = False,
    endpoint_url: EndpointUrl = None,
) -> None:
    """Per variant and metric over the range: events, distinct users, value sum and mean, the
    rate per exposed user with a 95% confidence interval, the lift against the control, and,
    first, a sample-ratio check."""
    from application.reporting import UnknownControlVariantError
    from infrastructure.clock import SystemClock
    from operations.charts import ChartMeasure, ChartPathError, chart_format, write_report_chart
    from operations.cli.report_output import read_report, render_table, report_csv, report_json

    first, last = _moment_option(start), _moment_option(end)
    if first is not None and last is not None and last <= first:
        raise typer.BadParameter("--end must be after --start", param_hint="--end")
    if chart is not None:
        try:
            chart_format(chart)
        except ChartPathError as error:
            raise typer.BadParameter(str(error), param_hint="--chart") from None
    granularity = Granularity(window.value)
    with aws_environment(endpoint_url):
        container = build_container()
        try:
            result = run_against_aws(
                lambda: read_report(
                    container.metric_store(),
                    container.experiment_repository(),
                    experiment,
                    granularity,
                    first,
                    last,
                    control,
                )
            )
        except UnknownControlVariantError as error:
            raise typer.BadParameter(str(error), param_hint="--control") from None
    if result.experiment is None and not result.windows:
        fail(f"no experiment {experiment!r} and no counters for it")
    if chart is not None and chart_metric not in {*result.metrics, "exposure"}:
        raise typer.BadParameter(
            f"no counters of {chart_metric!r} for {experiment} in this range "
            f"(metrics: {', '.join(result.metrics) or 'none'})",
            param_hint="--chart-metric",
        )
    if output is OutputFormat.JSON:
        sys.stdout.write(report_json(result) + "\n")
    elif output is OutputFormat.CSV:
        sys.stdout.write(report_csv(result))
    else:
        render_table(result, _stdout())
    if chart is not None:
        lines = write_report_chart(
            result, chart_metric, ChartMeasure(chart_measure.value), chart, SystemClock().now()
        )
        _stderr().print(f"chart: {chart} ({lines} variants of {chart_metric})", markup=False)
    if fail_on_srm and result.sample_ratio is not None and result.sample_ratio.mismatch:
        raise typer.Exit(EXIT_FAILURES)


StreamName = Annotated[
    str,
    typer.Option("--stream", help="Kinesis stream name.", envvar="KINESIS_STREAM"),
]


def _kinesis_client(container: OperationsContainer) -> KinesisClient:
    client: KinesisClient = container.kinesis_client()
    return client


def resource_names(settings: Settings, queue: str, stream: str, shards: int = 1) -> ResourceNames:
    """The resources the configuration names, plus the queue and stream it leaves to the caller."""
    from operations.aws.provisioning import ResourceNames

    return ResourceNames(
        aggregation_table=settings.dynamodb_table,
        archive_bucket=settings.s3_bucket,
        dead_letter_queue=queue,
        stream=stream,
        assignments_table=settings.assignments_table,
        experiments_table=settings.experiments_table,
        stream_shards=shards,
    )


def _region(container: OperationsContainer) -> str:
    region = container.session().region_name
    if not region:
        fail(NO_REGION, EXIT_USAGE)
    return str(region)


@app.command()
def provision(
    stream: StreamName = DEFAULT_STREAM,
    shards: Annotated[int, typer.Option(min=1, max=64, help="Shards of a new stream.")] = 1,
    queue: Annotated[
        str, typer.Option(help="Dead-letter queue name (its URL is printed; export it as DLQ_URL).")
    ] = DEFAULT_QUEUE,
    output: Annotated[
        OutputFormat,
        typer.Option("--format", "-f", help="table or json.", callback=_table_or_json),
    ] = OutputFormat.TABLE,
    endpoint_url: EndpointUrl = None,
) -> None:
    """Create the stream, the tables, the bucket and the queue in an emulator if missing
    (idempotent: run it again and nothing changes), and wait until they are usable. In an AWS
    account the stack is deployed from template.yaml instead (`make deploy`)."""
    from operations.aws.provisioning import provision_all

    if _real_account(endpoint_url):
        fail(
            "provision creates bare resources for an emulator (give --endpoint-url or "
            "AWS_ENDPOINT_URL); in an AWS account deploy the stack with `make deploy`, whose "
            "template adds encryption, backups, policies and alarms (docs/deployment.md)",
            EXIT_USAGE,
        )

    with aws_environment(endpoint_url):
        container = build_container()
        settings = container.settings()
        names = resource_names(settings, queue, stream, shards)
        region = _region(container)
        resources = run_against_aws(
            lambda: provision_all(
                names,
                container.dynamodb_client(),
                container.s3_client(),
                container.sqs_client(),
                _kinesis_client(container),
                region,
            )
        )
    described = {
        "stream": names.stream,
        "stream_arn": resources.stream_arn,
        "aggregation_table": names.aggregation_table,
        "assignments_table": names.assignments_table,
        "experiments_table": names.experiments_table,
        "archive_bucket": names.archive_bucket,
        "dead_letter_queue_url": resources.dead_letter_queue_url,
    }
    if output is OutputFormat.JSON:
        sys.stdout.write(json.dumps(described, indent=2) + "\n")
        return
    console = _stdout()
    for name, value in described.items():
        console.print(f"{name:<22} {value}")
    console.print(f"\nexport DLQ_URL={resources.dead_letter_queue_url}")


@app.command()
def seed(
    file: Annotated[
        Path,
        typer.Argument(help="Seed file: JSON with experiments and assignments (docs/cli.md)."),
    ],
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Validate the file and say what would change; write nothing."
        ),
    ] = False,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="Write each user's item whole: assignments of experiments not in the file go.",
        ),
    ] = False,
    yes: Annotated[
        bool,
        typer.Option("--yes", help="Write to a real AWS account (no --endpoint-url) anyway."),
    ] = False,
    endpoint_url: EndpointUrl = None,
) -> None:
    """Load experiments and assignments into their DynamoDB tables from a JSON seed file.

    A user's assignments are merged: each experiment of the file is set in the user's item, the
    user's other assignments stay (`--replace` writes the item whole). An experiment's name,
    status and variants are set; its other attributes stay. What is already as the file says is
    not written again. Without `--endpoint-url` (or AWS_ENDPOINT_URL) the tables are those of the
    account your credentials name, and `seed` writes there only with `--yes`."""
    from operations.aws.reference_data import DynamoDbReferenceDataWriter
    from operations.seed_file import SeedFileError, load_seed

    try:
        data = load_seed(file)
    except SeedFileError as error:
        console = _stderr()
        console.print(f"[bold red]error:[/bold red] invalid seed file {error.source}:")
        for problem in error.problems:
            console.print(f"  {problem}", markup=False)
        raise typer.Exit(EXIT_USAGE) from None
    if not dry_run and not yes and _real_account(endpoint_url):
        fail(
            "seed would write to the AWS account of your credentials (no --endpoint-url or "
            "AWS_ENDPOINT_URL): add --yes to do so, or --dry-run to see what would change",
            EXIT_USAGE,
        )
    users = len({a.user_id for a in data.assignments})
    with aws_environment(endpoint_url):
        container = build_container()
        settings = container.settings()
        writer = DynamoDbReferenceDataWriter(
            container.dynamodb_client(), settings.assignments_table, settings.experiments_table
        )
        if dry_run:
            experiments = run_against_aws(lambda: writer.plan_experiments(data.experiments))
            assignments = run_against_aws(
                lambda: writer.plan_assignments(data.assignments, replace=replace)
            )
        else:
            experiments = run_against_aws(lambda: writer.write_experiments(data.experiments))
            assignments = run_against_aws(
                lambda: writer.write_assignments(data.assignments, replace=replace)
            )
    console = _stdout()
    console.print(
        f"{'would write (dry run, nothing written)' if dry_run else 'seeded'}: "
        f"{len(data.experiments)} experiments ({_changes(experiments)}), "
        f"{len(data.assignments)} assignments of {users} users ({_changes(assignments)})",
        markup=False,
    )
    if assignments.kept:
        console.print(
            f"kept: {assignments.kept} assignments of these users to experiments not in the file",
            markup=False,
        )
    if assignments.removed:
        verb = "would remove" if dry_run else "removed"
        console.print(
            f"{verb} (--replace): {assignments.removed} assignments of these users to "
            "experiments not in the file",
            markup=False,
        )


def _changes(changes: Changes) -> str:
    return f"{changes.new} new, {changes.changed} changed, {changes.unchanged} unchanged"


_AWS_HOSTS = (".amazonaws.com", ".amazonaws.com.cn", ".api.aws")


def _real_account(endpoint_url: str | None) -> bool:
    """Whether the command would reach AWS itself: no emulator endpoint is configured."""
    endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint:
        return True
    host = urlsplit(endpoint).hostname or ""
    return host.endswith(_AWS_HOSTS)


@app.command()
def put(
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE.jsonl",
            help="Events, one JSON object a line (blank lines skipped); '-' reads stdin.",
        ),
    ],
    stream: StreamName = DEFAULT_STREAM,
    output: Annotated[
        OutputFormat,
        typer.Option("--format", "-f", help="table or json.", callback=_table_or_json),
    ] = OutputFormat.TABLE,
    endpoint_url: EndpointUrl = None,
) -> None:
    """Put events into the stream, one record per line, as a producer would: each line's bytes
    as they are, partitioned by its `user_id`, in order, with PutRecords (refused entries put
    again). The pipeline judges the content: an invalid line is dead-lettered with its reason."""
    from operations.aws.kinesis_producer import put_records
    from operations.cli.stream import EventFileError, records_of_lines

    try:
        raw = sys.stdin.buffer.read() if str(file) == "-" else file.read_bytes()
    except OSError as error:
        fail(f"cannot read {file}: {error.strerror or error}", EXIT_USAGE)
    try:
        records = records_of_lines(raw.splitlines(keepends=True))
    except EventFileError as error:
        fail(f"{file}: {error}", EXIT_USAGE)
    if not records:
        fail(f"{file} holds no events", EXIT_USAGE)
    with aws_environment(endpoint_url):
        container = build_container()
        kinesis = _kinesis_client(container)
        with ProgressReporter(f"put into {stream}", _stderr()) as reporter:
            outcome = run_against_aws(
                lambda: put_records(
                    kinesis,
                    stream,
                    records,
                    on_progress=lambda done: reporter.update(f"{done:,} of {len(records):,}"),
                )
            )
    shards = Counter(p.shard_id for p in outcome.placed)
    summary = {
        "stream": stream,
        "records": len(outcome.placed),
        "calls": outcome.calls,
        "shards": dict(sorted(shards.items())),
        "first_sequence": outcome.placed[0].sequence_number,
        "last_sequence": outcome.placed[-1].sequence_number,
    }
    _print_summary(summary, output)


@contextmanager
def lambda_output_to_stderr() -> Iterator[None]:
    """The handler's logs and EMF metrics go to stderr, leaving stdout to the command's result."""
    from entrypoints import lambda_handler

    handler = lambda_handler.logger.registered_handler
    if not isinstance(handler, logging.StreamHandler):
        with redirect_stdout(sys.stderr):
            yield
        return
    # Swapped without setStream(), which would flush a stream its owner may have closed.
    previous = handler.stream
    handler.stream = sys.stderr
    try:
        with redirect_stdout(sys.stderr):
            yield
    finally:
        handler.stream = previous


@app.command()
def invoke(
    event_file: Annotated[
        Path,
        typer.Argument(
            metavar="EVENT.json",
            help="A Kinesis event as Lambda delivers it ({'Records': [...]}); '-' reads stdin.",
        ),
    ],
    timeout: Annotated[
        float, typer.Option(min=1, help="The function timeout the context counts down from (s).")
    ] = 60.0,
    endpoint_url: EndpointUrl = None,
) -> None:
    """Run the Lambda handler once on a Kinesis event file (as `sam local invoke` would) and
    print its response. Exit code 1 when the response reports failed records."""
    from entrypoints import lambda_handler
    from entrypoints.kinesis_event import MalformedEventError, raw_records
    from operations.cli.stream import load_event

    try:
        text = sys.stdin.read() if str(event_file) == "-" else event_file.read_text()
        event = load_event(text)
    except (OSError, ValueError) as error:
        fail(f"cannot use {event_file} as a Kinesis event: {error}", EXIT_USAGE)
    try:
        raw_records(event)  # refused here, before the handler's logs and metrics begin
    except MalformedEventError as error:
        fail(f"{event_file}: {error}", EXIT_USAGE)
    with aws_environment(endpoint_url), lambda_output_to_stderr():
        lambda_handler.container.cache_clear()
        try:
            response = run_against_aws(
                lambda: lambda_handler.handler(event, lambda_context(timeout_seconds=timeout))
            )
        except MalformedEventError as error:
            fail(f"{event_file}: {error}", EXIT_USAGE)
        finally:
            lambda_handler.container.cache_clear()
    sys.stdout.write(json.dumps(response, indent=2) + "\n")
    if response.get("batchItemFailures"):
        raise typer.Exit(EXIT_FAILURES)


@app.command()
def replay(
    from_archive: Annotated[
        bool, typer.Option("--from-archive", help="Replay the S3 archive of --start..--end.")
    ] = False,
    from_dlq: Annotated[
        bool,
        typer.Option(
            "--from-dlq",
            help="Replay the dead letters: the queue (DLQ_URL), or without one those kept in S3.",
        ),
    ] = False,
    from_file: Annotated[
        Path | None,
        typer.Option(
            "--from-file", metavar="FILE.jsonl", help="Replay a JSON Lines file of events."
        ),
    ] = None,
    start: Annotated[
        str | None, typer.Option(help="--from-archive: first hour (ISO 8601, UTC by default).")
    ] = None,
    end: Annotated[str | None, typer.Option(help="--from-archive: end (exclusive).")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and report; write and delete nothing.")
    ] = False,
    batch_size: Annotated[int, typer.Option(min=1, max=10_000, help="Events per batch.")] = 500,
    output: Annotated[
        OutputFormat,
        typer.Option("--format", "-f", help="table or json.", callback=_table_or_json),
    ] = OutputFormat.TABLE,
    endpoint_url: EndpointUrl = None,
) -> None:
    """Feed events back through the pipeline, from exactly one source; running it twice counts
    nothing twice.

    The archive goes back through the stream's path under the events' original coordinates
    (the counters' per-shard watermarks skip what was counted; the range is widened to whole UTC
    days; nothing is archived again), and so do lines of a file copied from the archive. Dead
    letters and other file events are claimed once per event id, counted under the run's own
    lane, and archived. A dead-letter message is deleted
    only after its event is settled; still-invalid ones stay in the queue. Exit code 1 when
    events failed (transiently) and need another run."""
    from application.replay import new_lane
    from domain.archiving import ArchiveLineError
    from operations.cli.replay_sources import (
        ReplaySummary,
        archive_records,
        file_items,
        in_stream_order,
        replay_archive,
        replay_dead_letters,
        replay_items,
        replay_run,
        replay_stored_dead_letters,
        whole_days,
    )

    sources = [
        name
        for name, chosen in (
            ("archive", from_archive),
            ("dlq", from_dlq),
            ("file", from_file is not None),
        )
        if chosen
    ]
    if len(sources) != 1:
        raise typer.BadParameter(
            "choose exactly one of --from-archive, --from-dlq, --from-file",
            param_hint="source",
        )
    source = sources[0]
    first, last = _moment_option(start), _moment_option(end)
    if source == "archive":
        if first is None or last is None:
            raise typer.BadParameter("--from-archive needs --start and --end", param_hint="--start")
        if last <= first:
            raise typer.BadParameter("--end must be after --start", param_hint="--end")
    elif first is not None or last is not None:
        raise typer.BadParameter("--start/--end only apply to --from-archive", param_hint="--start")
    summary = ReplaySummary(source, dry_run)
    reporter = ProgressReporter(f"replay from {source}", _stderr())
    started = time.monotonic()

    def progress(done: int) -> None:
        rate = done / max(time.monotonic() - started, 1e-9)
        reporter.update(f"{done:,} records, {rate:,.0f}/s")

    with aws_environment(endpoint_url), reporter:
        container = build_container()
        settings = container.settings()
        lane = new_lane(container.clock().now())
        if source == "file":
            assert from_file is not None
            try:
                contents = file_items(from_file, container.clock().now().timestamp(), lane)
            except OSError as error:
                fail(f"cannot read {from_file}: {error.strerror or error}", EXIT_USAGE)
            if contents.archived:
                # Lines copied from the archive go back the way --from-archive sends them.
                run_against_aws(
                    lambda: replay_archive(
                        container.archive_replay_processor(),
                        container.replay_processor(),
                        in_stream_order(contents.archived),
                        summary,
                        batch_size,
                        container.processing_settings(),
                        progress,
                    )
                )
            if contents.events:
                with replay_run(container.replay_ledger(), lane, dry_run):
                    run_against_aws(
                        lambda: replay_items(
                            container.replay_processor(),
                            contents.events,
                            summary,
                            batch_size,
                            progress,
                        )
                    )
        elif source == "dlq" and not settings.dlq_url:
            from operations.aws.dead_letter_readers import S3DeadLetterReader

            # Without a queue the handler keeps dead letters in S3 (S3DeadLetterQueue).
            _stderr().print(
                f"no DLQ_URL: replaying the dead letters kept in "
                f"s3://{settings.s3_bucket}/{settings.dead_letter_prefix}"
            )
            stored = S3DeadLetterReader(
                container.s3_client(), settings.s3_bucket, settings.dead_letter_prefix
            )
            with replay_run(container.replay_ledger(), lane, dry_run):
                run_against_aws(
                    lambda: replay_stored_dead_letters(
                        container.replay_processor(), stored, summary, batch_size, lane, progress
                    )
                )
        elif source == "dlq":
            from operations.aws.dead_letter_readers import SqsDeadLetterReader

            queue_url = settings.dlq_url
            assert queue_url is not None
            reader = SqsDeadLetterReader(
                container.sqs_client(), queue_url, container.s3_client(), wait_seconds=1
            )
            with replay_run(container.replay_ledger(), lane, dry_run):
                run_against_aws(
                    lambda: replay_dead_letters(
                        container.replay_processor(),
                        reader,
                        container.sqs_client(),
                        queue_url,
                        summary,
                        lane,
                        progress,
                    )
                )
        else:
            from operations.aws.archive_reader import S3ArchiveReader

            assert first is not None
            assert last is not None
            day_start, day_end = whole_days(first, last)
            if (day_start, day_end) != (first, last):
                _stderr().print(
                    f"range widened to whole UTC days: {day_start:%Y-%m-%d} to {day_end:%Y-%m-%d} (exclusive)"
                )
            archive = S3ArchiveReader(
                container.s3_client(), settings.s3_bucket, settings.archive_prefix
            )
            try:
                records = run_against_aws(lambda: archive_records(archive, day_start, day_end))
            except ArchiveLineError as error:
                fail(f"the archive holds a line this pipeline did not write: {error}")
            run_against_aws(
                lambda: replay_archive(
                    container.archive_replay_processor(),
                    container.replay_processor(),
                    records,
                    summary,
                    batch_size,
                    container.processing_settings(),
                    progress,
                )
            )
    _print_summary(summary.as_dict(), output)
    if summary.failed:
        raise typer.Exit(EXIT_FAILURES)


@app.command("forget-user")
def forget_user(
    user_id: Annotated[
        str | None,
        typer.Argument(
            metavar="USER_ID", help="The user to erase (or --from-file).", show_default=False
        ),
    ] = None,
    from_file: Annotated[
        Path | None,
        typer.Option(
            "--from-file", metavar="IDS.txt", help="Erase every user id of a file, one a line."
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Find and count; write and delete nothing.")
    ] = False,
    output: Annotated[
        OutputFormat,
        typer.Option("--format", "-f", help="table or json.", callback=_table_or_json),
    ] = OutputFormat.TABLE,
    endpoint_url: EndpointUrl = None,
) -> None:
    """Erase users: their unique-user markers, event-id items, replay claims, dead letters (queue
    and S3) and archive lines. Counters (event counts, sums) stay as they are: they are
    aggregates, not personal data; unique-user counts lose the erased users.

    Reads the whole archive once per run (however many users): see docs/cli.md for the cost.
    Running it again touches nothing; an interrupted run is finished by running it again."""
    from operations.cli.erasure import IdFileError, read_user_ids, report_lines

    if (user_id is None) == (from_file is None):
        raise typer.BadParameter("give exactly one of USER_ID or --from-file", param_hint="USER_ID")
    if user_id is not None:
        if not user_id.strip():
            raise typer.BadParameter("a user id is not empty", param_hint="USER_ID")
        users = [user_id]
    else:
        assert from_file is not None
        try:
            users = read_user_ids(from_file)
        except IdFileError as error:
            fail(str(error), EXIT_USAGE)
    reporter = ProgressReporter("forget-user", _stderr())
    with aws_environment(endpoint_url), reporter:
        container = build_container()
        eraser = container.user_eraser(on_progress=reporter.update)
        report = run_against_aws(lambda: eraser.erase(users, dry_run=dry_run))
    if output is OutputFormat.JSON:
        sys.stdout.write(json.dumps(report.as_dict(), indent=2) + "\n")
        return
    console = _stdout()
    for line in report_lines(report):
        console.print(line, markup=False)


def _print_summary(summary: Mapping[str, object], output: OutputFormat) -> None:
    if output is OutputFormat.JSON:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
        return
    console = _stdout()
    for name, value in summary.items():
        if isinstance(value, Mapping):
            text = ", ".join(f"{k} {v}" for k, v in value.items()) or "none"
        elif isinstance(value, list):
            text = "; ".join(str(v) for v in value) or "none"
        else:
            text = str(value)
        console.print(f"{name.replace('_', ' '):<17} {text}", markup=False)


class StartingPosition(StrEnum):
    TRIM_HORIZON = "TRIM_HORIZON"
    LATEST = "LATEST"


@app.command()
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
            "--format", "-f", help="table or json (the final summary).", callback=_table_or_json
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

    stderr = _stderr()
    reporter = ProgressReporter(f"consume {stream}", stderr)

    def show(stats: EmulatorStats) -> None:
        reporter.update(progress_line(stats, time.monotonic()))

    with aws_environment(endpoint_url), lambda_output_to_stderr(), reporter:
        container = build_container()
        kinesis = _kinesis_client(container)
        settings = EventSourceMappingSettings(
            stream_name=stream,
            region=_region(container),
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
    _print_summary(summary, output)
    for batch in given_up:
        _stderr().print(
            f"[bold red]error:[/bold red] batch {batch.first_sequence_number}.."
            f"{batch.last_sequence_number} of {batch.shard_id} failed {batch.attempts} times "
            f"({batch.last_outcome.value}: {batch.last_error}); stopped"
        )
    if given_up:
        raise typer.Exit(EXIT_FAILURES)
    if interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)


@app.command()
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
    from moto.server import ThreadedMotoServer

    from entrypoints import lambda_handler
    from operations.aws.provisioning import provision_all
    from operations.aws.reference_data import DynamoDbReferenceDataWriter
    from operations.charts import ChartMeasure, write_report_chart
    from operations.cli.report_output import read_report, render_table
    from operations.event_source_emulator import (
        EmulatorStats,
        EventSourceMappingEmulator,
        EventSourceMappingSettings,
    )
    from operations.synthetic.workload import WorkloadSpec, generate

    stderr = _stderr()
    console = _stdout()
    started = time.monotonic()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        console.print(f"{_since(started)} [bold]1.[/bold] AWS emulator (moto) on {endpoint}")
        with environment(DEMO_ENVIRONMENT | {"AWS_ENDPOINT_URL": endpoint}):
            container = build_container()
            settings = container.settings()
            names = resource_names(settings, DEFAULT_QUEUE, DEFAULT_STREAM)
            kinesis = _kinesis_client(container)
            resources = run_against_aws(
                lambda: provision_all(
                    names,
                    container.dynamodb_client(),
                    container.s3_client(),
                    container.sqs_client(),
                    kinesis,
                    _region(container),
                )
            )
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
            writer = DynamoDbReferenceDataWriter(
                container.dynamodb_client(), settings.assignments_table, settings.experiments_table
            )
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
                reporter = ProgressReporter("draining through the Lambda handler", stderr)

                def show(stats: EmulatorStats) -> None:
                    reporter.update(progress_line(stats, time.monotonic()))

                emulator = EventSourceMappingEmulator(
                    kinesis,
                    lambda_handler.handler,
                    EventSourceMappingSettings(
                        stream_name=names.stream,
                        region=_region(container),
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
        server.stop()


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
    return f"[{time.monotonic() - started:5.1f} s]"


def _queue_depth(container: OperationsContainer, queue_url: str) -> int:
    attributes = container.sqs_client().get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes.get("ApproximateNumberOfMessages", "0"))


def _object_count(container: OperationsContainer, bucket: str, prefix: str) -> int:
    paginator = container.s3_client().get_paginator("list_objects_v2")
    return sum(page.get("KeyCount", 0) for page in paginator.paginate(Bucket=bucket, Prefix=prefix))


def main() -> None:
    app()
