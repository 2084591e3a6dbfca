"""`put`: events of a JSON Lines file into the stream, as a producer would."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from operations.cli.aws_access import (
    aws_environment,
    build_container,
    kinesis_client,
    run_against_aws,
)
from operations.cli.console import EXIT_USAGE, fail, print_summary, stderr_console
from operations.cli.options import EndpointUrl, StreamName, SummaryFormat
from operations.cli.progress import ProgressReporter
from operations.cli.report_output import OutputFormat
from operations.cli.stream import DEFAULT_STREAM


def put(
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE.jsonl",
            help="Events, one JSON object a line (blank lines skipped); '-' reads stdin.",
        ),
    ],
    stream: StreamName = DEFAULT_STREAM,
    output: SummaryFormat = OutputFormat.TABLE,
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
        kinesis = kinesis_client(container)
        with ProgressReporter(f"put into {stream}", stderr_console()) as reporter:
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
    print_summary(summary, output)
