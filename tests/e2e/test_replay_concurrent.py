"""Replay against moto's server while the Lambda writes the same table: replay twice, counted once.

moto's `TransactWriteItems` copies the whole table per transaction and, on a cancellation,
restores a stale copy that erases concurrent writes; the replay uses none (docs/replay.md). The
proof: a table of thousands of items, a writer process invoking the handler on one half of a
workload while a file of the other half is replayed twice, compared with a second deployment
that did the same one thing after the other, once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import boto3
import pytest

from operations.synthetic.workload import Workload, WorkloadSpec, generate
from tests.conftest import REGION
from tests.e2e.cli_support import (
    counters,
    environment_named,
    kinesis_event,
    provision,
    run,
    same_counts,
    seed_workload,
)

STREAM_CHUNK = 200
WRITER = """
import sys
from pathlib import Path
from operations.cli.app import app
# The stream's batches, then each delivered again until the replays are over (redeliveries
# count nothing, and keep writing the same counters as the replays).
stop = Path(sys.argv[1])
rounds = 0
while rounds == 0 or not stop.exists():
    rounds += 1
    for path in sys.argv[2:]:
        try:
            app(["invoke", path], standalone_mode=False)
        except SystemExit as exit:
            if exit.code:
                raise
print(rounds)
"""


def _item_count(env: dict[str, str], endpoint_url: str) -> int:
    client = boto3.client("dynamodb", endpoint_url=endpoint_url, region_name=REGION)
    pages = client.get_paginator("scan").paginate(TableName=env["DYNAMODB_TABLE"], Select="COUNT")
    return sum(page["Count"] for page in pages)


def _stream_events(workload: Workload, directory: Path) -> list[Path]:
    """The stream half as Kinesis event files of one shard, in sequence order."""
    records = workload.records()
    paths = []
    for start in range(0, len(records), STREAM_CHUNK):
        path = directory / f"stream-{start:05d}.json"
        path.write_text(json.dumps(kinesis_event(workload, records[start : start + STREAM_CHUNK])))
        paths.append(path)
    return paths


def _replay(file: Path, env: dict[str, str], endpoint_url: str) -> dict[str, int]:
    result = run(["replay", "--from-file", str(file), "--format", "json"], env, endpoint_url)
    assert result.exit_code == 0, result.output
    outcomes: dict[str, int] = json.loads(result.stdout)["outcomes"]
    return outcomes


def _deployment(name: str, endpoint_url: str, workload: Workload, tmp_path: Path) -> dict[str, str]:
    env = provision(environment_named(name), endpoint_url, f"{name}-dlq")
    directory = tmp_path / name
    directory.mkdir()
    seed_workload(env, endpoint_url, workload, directory)
    return env


@pytest.mark.timeout(600)
def test_a_file_replayed_twice_beside_a_busy_stream_is_counted_once(
    endpoint_url: str, unique_name: str, tmp_path: Path
) -> None:
    workload = generate(WorkloadSpec(events=600, experiments=2, users=150, seed=17))
    half = len(workload.entries) // 2
    streamed = replace(workload, entries=workload.entries[:half])
    replayed = [entry.data for entry in workload.entries[half:]]
    events_file = tmp_path / "events.jsonl"
    events_file.write_bytes(b"\n".join(replayed) + b"\n")
    stream_files = _stream_events(streamed, tmp_path)

    # The reference: the same two things, one after the other, once.
    reference = _deployment(f"{unique_name}r", endpoint_url, workload, tmp_path)
    for path in stream_files:
        assert run(["invoke", str(path)], reference, endpoint_url).exit_code == 0
    once = _replay(events_file, reference, endpoint_url)

    busy = _deployment(f"{unique_name}b", endpoint_url, workload, tmp_path)
    stop = tmp_path / "replays-done"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(stop), *map(str, stream_files)],
        env={**os.environ, **busy, "AWS_ENDPOINT_URL": endpoint_url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        first = _replay(events_file, busy, endpoint_url)
        second = _replay(events_file, busy, endpoint_url)
        still_writing = writer.poll() is None
    finally:
        stop.touch()
        output, errors = writer.communicate(timeout=300)
    assert writer.returncode == 0, errors.decode()

    assert still_writing, "the writer was over before the replays: no concurrency"
    assert int(output.decode().split()[-1]) >= 1
    assert first == once
    assert first["applied"] > 0.9 * len(replayed)  # all but the invalid and duplicated
    assert second == {
        "already_applied": first["applied"],
        **{k: v for k, v in first.items() if k not in {"applied", "already_applied"}},
    }
    assert same_counts(counters(busy, endpoint_url)) == same_counts(
        counters(reference, endpoint_url)
    )
    assert _item_count(busy, endpoint_url) > 2_000
