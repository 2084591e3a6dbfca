"""`replay`: events back through the pipeline from the archive, the dead letters or a file."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from operations.cli.aws_access import aws_environment, build_container, run_against_aws
from operations.cli.console import EXIT_FAILURES, EXIT_USAGE, fail, print_summary, stderr_console
from operations.cli.options import EndpointUrl, SummaryFormat, moment_option
from operations.cli.progress import ProgressReporter
from operations.cli.report_output import OutputFormat


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
    output: SummaryFormat = OutputFormat.TABLE,
    endpoint_url: EndpointUrl = None,
) -> None:
    """Feed events back through the pipeline, from exactly one source; running it twice counts
    nothing twice.

    The archive goes back through the stream's path under the events' original coordinates
    (the counters' per-shard watermarks skip what was counted; the range is widened to whole UTC
    days; nothing is archived again), each event counted for the variants its line records, and
    so do lines of a file copied from the archive. Dead letters and other file events are
    claimed once per event id, counted under the run's own lane, and archived. A dead-letter
    message is deleted only after its event is settled; still-invalid ones stay in the queue.
    Exit code 1 when events failed (transiently) and need another run."""
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
    first, last = moment_option(start), moment_option(end)
    if source == "archive":
        if first is None or last is None:
            raise typer.BadParameter("--from-archive needs --start and --end", param_hint="--start")
        if last <= first:
            raise typer.BadParameter("--end must be after --start", param_hint="--end")
    elif first is not None or last is not None:
        raise typer.BadParameter("--start/--end only apply to --from-archive", param_hint="--start")
    summary = ReplaySummary(source, dry_run)
    reporter = ProgressReporter(f"replay from {source}", stderr_console())
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
                        container.archive_replay_processor,
                        container.replay_processor,
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
            # Without a queue the handler keeps dead letters in S3 (S3DeadLetterQueue).
            stderr_console().print(
                f"no DLQ_URL: replaying the dead letters kept in "
                f"s3://{settings.s3_bucket}/{settings.dead_letter_prefix}"
            )
            stored = container.stored_dead_letter_reader()
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
            assert first is not None
            assert last is not None
            day_start, day_end = whole_days(first, last)
            if (day_start, day_end) != (first, last):
                stderr_console().print(
                    f"range widened to whole UTC days: {day_start:%Y-%m-%d} to {day_end:%Y-%m-%d} (exclusive)"
                )
            archive = container.archive_reader()
            try:
                records = run_against_aws(lambda: archive_records(archive, day_start, day_end))
            except ArchiveLineError as error:
                fail(f"the archive holds a line this pipeline did not write: {error}")
            run_against_aws(
                lambda: replay_archive(
                    container.archive_replay_processor,
                    container.replay_processor,
                    records,
                    summary,
                    batch_size,
                    container.processing_settings(),
                    progress,
                )
            )
    print_summary(summary.as_dict(), output)
    if summary.failed:
        raise typer.Exit(EXIT_FAILURES)
