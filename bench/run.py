"""The benchmark: throughput per stage, codecs, memory and scaling of the batch pipeline.

`make bench` runs it. It prints a table and writes bench/results.json (and bench/scaling.png).
Timings are the best of several runs, in CPU time of this process (`time.process_time`) as well
as wall time, so that a busy machine disturbs them less; the reference workload is the seeded
generator in operations/synthetic/workload.py.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import pybase64

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from application.process_batch import BatchProcessor, ProcessingSettings  # noqa: E402
from application.results import BatchResult  # noqa: E402
from bench.aws_budget import (  # noqa: E402
    CapacityMeasurement,
    aws_figures,
    capacity_figures,
    lambda_event,
    profile_from_figures,
)
from bench.capacity_model import (  # noqa: E402
    EXACT,
    MODES,
    PARTITION_WRITE_UNITS_PER_SECOND,
    PRICES_AS_OF,
    PRICES_REGION,
    SKETCH,
    Deployment,
    Mode,
    first_break_rate,
    model_table,
    with_full_sketches,
)
from domain.records import RawRecord  # noqa: E402
from entrypoints.container import Container  # noqa: E402
from entrypoints.settings import Settings  # noqa: E402
from infrastructure.clock import SystemClock  # noqa: E402
from infrastructure.codecs import ArchiveCodec, codec_named  # noqa: E402
from infrastructure.garbage_collection import collector_paused, freeze_warm_heap  # noqa: E402
from operations.synthetic.workload import (  # noqa: E402
    USER_SESSIONS,
    Workload,
    WorkloadSpec,
    generate,
)

STAGES = ("decode", "deduplicate", "enrich", "aggregate", "write_metrics", "archive", "dead_letter")
TARGET_EVENTS_PER_SECOND = 50_000
MEMORY_TARGET_RATIO = 3.0


class CpuClock(SystemClock):
    """Stage timings in CPU seconds of this process: other load on the machine does not count."""

    def monotonic(self) -> float:
        return time.process_time()


@dataclass(slots=True)
class Pipeline:
    processor: BatchProcessor
    container: Container
    processor_settings: ProcessingSettings


def in_memory_pipeline(
    workload: Workload,
    codec: ArchiveCodec,
    cpu_clock: bool,
    settings: ProcessingSettings | None = None,
    unique_users: Mode = EXACT,
) -> Pipeline:
    """The use case as the Lambda's container wires it (warm-container caches and tracing in
    front of the ports), on the memory back end, in the unique-user mode `unique_users`."""
    processing_settings = settings or ProcessingSettings()
    container = Container()
    # Caches that outlive the whole run, as a warm container's would outlive a few invocations.
    container.settings.override(
        Settings(back_end="memory", cache_ttl_seconds=3_600, unique_users=unique_users)
    )
    container.archive_codec.override(codec)
    container.processing_settings.override(processing_settings)
    if cpu_clock:
        container.clock.override(CpuClock())
    container.in_memory_experiment_repository().put_all(workload.experiments)
    container.in_memory_assignment_repository().put_all(workload.assignments)
    return Pipeline(container.batch_processor(), container, processing_settings)


def batches_of(records: Sequence[RawRecord], size: int) -> list[Sequence[RawRecord]]:
    return [records[i : i + size] for i in range(0, len(records), size)]


@dataclass(slots=True)
class Timing:
    records: int
    cpu_seconds: float
    wall_seconds: float
    stage_cpu_seconds: dict[str, float]
    result: BatchResult

    @property
    def events_per_second(self) -> float:
        return self.records / self.cpu_seconds


def best_timing(
    pipeline: Pipeline, batch: Sequence[RawRecord], repeats: int, as_in_lambda: bool = True
) -> Timing:
    """Best of `repeats` runs of the same batch through warm caches.

    Re-running a batch is a redelivery: every stage does the same work again (the metric store
    skips the counts by its watermark, which costs the same lookups). `as_in_lambda`: each run
    with the cyclic garbage collector paused, as the Lambda handler runs a batch.
    """
    best: Timing | None = None
    stages: dict[str, float] = {}
    for _ in range(repeats):
        with collector_paused() if as_in_lambda else nullcontext():
            wall = time.perf_counter()
            cpu = time.process_time()
            result = pipeline.processor.process(batch)
            cpu = time.process_time() - cpu
            wall = time.perf_counter() - wall
        for stage, seconds in result.stage_seconds.items():
            stages[stage] = min(stages.get(stage, seconds), seconds)
        if best is None or cpu < best.cpu_seconds:
            best = Timing(len(batch), cpu, wall, {}, result)
    assert best is not None
    best.stage_cpu_seconds = stages
    return best


def throughput(
    workload: Workload,
    codec: ArchiveCodec,
    batch_size: int,
    repeats: int,
    as_in_lambda: bool = True,
    unique_users: Mode = EXACT,
) -> Timing:
    """The batch through warm caches. `as_in_lambda`: what the Lambda handler does around the
    use case (entrypoints/lambda_handler.py, infrastructure/garbage_collection.py): the warm
    heap (caches, reference data) frozen after the warm-up, each batch run with the cyclic
    collector paused. Without it, the collections triggered by a batch's allocations walk the
    batch's objects and, in full collections, the whole warm heap."""
    pipeline = in_memory_pipeline(workload, codec, cpu_clock=True, unique_users=unique_users)
    records = workload.records()
    for batch in batches_of(records[: 2 * batch_size], batch_size):
        pipeline.processor.process(batch)  # fills the caches, as earlier invocations would
    if as_in_lambda:
        freeze_warm_heap()
    try:
        return best_timing(pipeline, records[:batch_size], repeats, as_in_lambda)
    finally:
        if as_in_lambda:
            gc.unfreeze()


def physics_floor(workload: Workload, batch_size: int, repeats: int) -> dict[str, float]:
    """What no pipeline can avoid, measured now on this machine, with the pipeline's own
    tools: base64-decoding every record (pybase64, validating), validating every event with
    pydantic from bytes, and compressing the raw events with the default archive codec."""
    from domain.events import ExperimentEvent

    records = workload.records()[:batch_size]
    payloads = [entry.data for entry in workload.entries[:batch_size] if entry.valid]
    body = b"\n".join(payloads)
    codec = codec_named("gzip")

    def decode() -> None:
        for record in records:
            try:
                pybase64.b64decode(record.data, validate=True)
            except ValueError:
                continue

    def validate() -> None:
        for payload in payloads:
            ExperimentEvent.model_validate_json(payload)

    figures = {
        "base64": min(_cpu(decode) for _ in range(repeats)),
        "validate": min(_cpu(validate) for _ in range(repeats)),
        "gzip": min(_cpu(partial(codec.compress, body)) for _ in range(repeats)),
    }
    per_event = {
        f"{name}_microseconds_per_event": 1e6 * s / batch_size for name, s in figures.items()
    }
    per_event["microseconds_per_event"] = 1e6 * sum(figures.values()) / batch_size
    return per_event


def codec_figures(workload: Workload, batch_size: int, repeats: int) -> list[dict[str, Any]]:
    """Compression cost and ratio of each codec on the archive objects of one batch."""
    pipeline = in_memory_pipeline(workload, codec_named("gzip"), cpu_clock=True)
    batch = workload.records()[:batch_size]
    pipeline.processor.process(batch)
    gzip = codec_named("gzip")
    bodies = [
        gzip.decompress(stored.blob)
        for stored in pipeline.container.in_memory_event_archive().objects()
    ]
    events = sum(body.count(b"\n") for body in bodies)
    raw = sum(len(body) for body in bodies)
    figures = []
    # The default gzip (ISA-L), the zlib levels a user can set (3: the former default), zstd.
    candidates = [codec_named("gzip")]
    candidates += [codec_named("gzip", level) for level in (1, 3, 6)]
    candidates += [codec_named("zstd", level) for level in (1, 3)]
    for codec in candidates:
        seconds = min(_cpu(partial(_compress_all, codec, bodies)) for _ in range(repeats))
        compressed = sum(len(codec.compress(body)) for body in bodies)
        figures.append(
            {
                "codec": codec.name.value,
                "compressor": codec.compressor.value,
                "level": codec.level,
                "label": codec.label + (" (default)" if codec == codec_named(codec.name) else ""),
                "microseconds_per_event": 1e6 * seconds / events,
                "megabytes_per_second": raw / seconds / 1e6,
                "ratio": raw / compressed,
                "compressed_bytes_per_event": compressed / events,
            }
        )
    return figures


def _compress_all(codec: ArchiveCodec, bodies: list[bytes]) -> None:
    for body in bodies:
        codec.compress(body)


def _cpu(work: Callable[[], object]) -> float:
    started = time.process_time()
    work()
    return time.process_time() - started


# --- memory, measured in a fresh interpreter -------------------------------------------------


def memory_probe(batch_size: int, chunk_records: int | None = None) -> dict[str, Any]:
    """Peak memory of one batch above a warm process's baseline (run in a subprocess).

    Two baselines. The headline one (`ratio_to_invocation_payload`) holds the imports, the
    reference data, warm caches and the invocation event as the Lambda runtime hands it over,
    already parsed: the peak covers reading it into records and processing the batch, i.e. the
    memory the function itself works with. The other
    (`ratio_to_invocation_payload_including_parse`) starts from the invocation payload as bytes
    and also covers the runtime's `json.loads` of it.
    """
    from entrypoints.kinesis_event import raw_records

    workload = generate(WorkloadSpec(events=2 * batch_size))
    settings = (
        ProcessingSettings()
        if chunk_records is None
        else ProcessingSettings(chunk_records=chunk_records)
    )
    pipeline = in_memory_pipeline(workload, codec_named("gzip"), cpu_clock=False, settings=settings)
    records = workload.records()
    pipeline.processor.process(records[batch_size:])  # warm caches, other records
    wire = json.dumps(lambda_event(records[:batch_size])).encode()
    payload_bytes = sum(len(entry.data) for entry in workload.entries[:batch_size])
    del records
    gc.collect()
    tracemalloc.start()
    before_parse, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    rss_before = _rss_bytes()
    event = json.loads(wire)
    parsed, parse_peak = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    with collector_paused():  # as the Lambda handler runs a batch
        result = pipeline.processor.process(raw_records(event))
    _, peak = tracemalloc.get_traced_memory()
    rss_after = _rss_bytes()
    tracemalloc.stop()
    with_parse = max(parse_peak, peak) - before_parse
    return {
        "records": batch_size,
        "processed": result.processed,
        "chunk_records": pipeline.processor_settings.chunk_records,
        "invocation_payload_bytes": len(wire),
        "event_payload_bytes": payload_bytes,
        "parsed_event_bytes": parsed - before_parse,
        "peak_above_parsed_event_bytes": peak - parsed,
        "ratio_to_invocation_payload": (peak - parsed) / len(wire),
        "peak_above_baseline_bytes": with_parse,
        "ratio_to_invocation_payload_including_parse": with_parse / len(wire),
        "rss_growth_bytes": rss_after - rss_before,
    }


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def memory_in_subprocess(batch_size: int, chunk_records: int | None = None) -> dict[str, Any]:
    chunk = [] if chunk_records is None else ["--chunk-records", str(chunk_records)]
    output = subprocess.run(
        [sys.executable, __file__, "--memory-probe", str(batch_size), *chunk],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout
    figures: dict[str, Any] = json.loads(output)
    return figures


# --- scaling ---------------------------------------------------------------------------------


def scaling_by_batch_size(workload: Workload, sizes: Sequence[int]) -> list[dict[str, Any]]:
    """As the Lambda handler runs batches (warm heap frozen, collector paused)."""
    pipeline = in_memory_pipeline(workload, codec_named("gzip"), cpu_clock=True)
    records = workload.records()
    pipeline.processor.process(records)  # warm caches
    series = []
    freeze_warm_heap()
    for size in sizes:
        repeats = max(2, min(7, 50_000 // size))
        timing = best_timing(pipeline, records[:size], repeats)
        series.append(
            {
                "records": size,
                "cpu_seconds": timing.cpu_seconds,
                "microseconds_per_event": 1e6 * timing.cpu_seconds / size,
                "events_per_second": timing.events_per_second,
            }
        )
    gc.unfreeze()
    return series


def scaling_by_keys(experiment_counts: Sequence[int], events: int) -> list[dict[str, Any]]:
    """As the Lambda handler runs batches (warm heap frozen, collector paused)."""
    series = []
    for experiments in experiment_counts:
        workload = generate(WorkloadSpec(events=events, experiments=experiments))
        pipeline = in_memory_pipeline(workload, codec_named("gzip"), cpu_clock=True)
        records = workload.records()
        pipeline.processor.process(records)
        freeze_warm_heap()
        timing = best_timing(pipeline, records, 2)
        gc.unfreeze()
        series.append(
            {
                "experiments": experiments,
                "metric_keys": timing.result.metric_keys_updated,
                "records": events,
                "microseconds_per_event": 1e6 * timing.cpu_seconds / events,
                "aggregate_microseconds_per_event": 1e6
                * timing.stage_cpu_seconds["aggregate"]
                / events,
                "events_per_second": timing.events_per_second,
            }
        )
    return series


def chart(results: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    by_size = results["scaling"]["batch_size"]
    left.plot(
        [p["records"] for p in by_size], [p["cpu_seconds"] * 1000 for p in by_size], marker="o"
    )
    left.set_xlabel("records per batch")
    left.set_ylabel("CPU ms per batch")
    left.set_title("Batch size (linear is good)")
    by_keys = results["scaling"]["aggregate_keys"]
    right.plot(
        [p["metric_keys"] for p in by_keys],
        [p["microseconds_per_event"] for p in by_keys],
        marker="o",
        label="whole pipeline",
    )
    right.plot(
        [p["metric_keys"] for p in by_keys],
        [p["aggregate_microseconds_per_event"] for p in by_keys],
        marker="o",
        label="aggregate stage",
    )
    right.set_xscale("log")
    right.set_xlabel(f"distinct metric keys per {by_keys[0]['records']:,}-record batch")
    right.set_ylabel("CPU µs per event")
    right.set_title("Distinct aggregate keys")
    right.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


# --- report ----------------------------------------------------------------------------------


def capacity_only(output: Path, quick: bool, events: int | None) -> None:
    """The capacity part alone, as `run` makes it (the same reference workload, repeats and
    measurement), into the `capacity` part of `output`: the rest of the file stays the last
    full run's."""
    started = time.perf_counter()
    results: dict[str, Any] = json.loads(output.read_text()) if output.exists() else {}
    workload = generate(WorkloadSpec(events=5 * REFERENCE_BATCH_RECORDS))
    results["capacity"] = capacity(workload, quick, 2 if quick else 5, events)
    results["capacity"]["seconds"] = time.perf_counter() - started
    output.write_text(json.dumps(results, indent=2) + "\n")
    print("\n".join(capacity_table(results["capacity"])))
    print(f"capacity part took {results['capacity']['seconds']:.0f} s")
    print(f"wrote the capacity part of {output}")


REFERENCE_BATCH_RECORDS = 10_000


def run(
    quick: bool, with_aws: bool, naive_records: int, capacity_events: int | None = None
) -> dict[str, Any]:
    batch_size = REFERENCE_BATCH_RECORDS
    repeats = 2 if quick else 5
    # The headline runs are short (~0.2 s each) and this kind of VM slows down for seconds at a
    # time: more of them give the best run a chance to fall in a quiet moment.
    headline_repeats = 3 if quick else 15
    started = time.perf_counter()
    workload = generate(WorkloadSpec(events=5 * batch_size))
    valid = [entry.data for entry in workload.entries if entry.valid]

    gzip_timing = throughput(workload, codec_named("gzip"), batch_size, headline_repeats)
    zstd_timing = throughput(workload, codec_named("zstd"), batch_size, headline_repeats)
    zlib_timing = throughput(workload, codec_named("gzip", 3), batch_size, repeats)
    collected_timing = throughput(
        workload, codec_named("gzip"), batch_size, repeats, as_in_lambda=False
    )
    results: dict[str, Any] = {
        "machine": {
            "nproc": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average": os.getloadavg(),
        },
        "workload": {
            "batch_records": batch_size,
            "mean_event_bytes": sum(map(len, valid)) / len(valid),
            "batch_event_bytes": sum(len(e.data) for e in workload.entries[:batch_size]),
        },
        "throughput": {
            "target_events_per_second": TARGET_EVENTS_PER_SECOND,
            "gzip": _throughput_figures(gzip_timing, _label(codec_named("gzip"))),
            "zstd": _throughput_figures(zstd_timing, _label(codec_named("zstd"))),
            "gzip_zlib": _throughput_figures(zlib_timing, _label(codec_named("gzip", 3))),
            "gzip_collector_not_managed": _throughput_figures(
                collected_timing, _label(codec_named("gzip"))
            ),
        },
        "physics_floor": physics_floor(workload, batch_size, repeats),
        "codecs": codec_figures(workload, batch_size, repeats),
        "memory": memory_in_subprocess(batch_size),
        "memory_whole_batch": memory_in_subprocess(batch_size, chunk_records=batch_size),
        "scaling": {
            "batch_size": scaling_by_batch_size(workload, (1_000, 10_000, 50_000)),
            "aggregate_keys": scaling_by_keys((1, 10, 100, 1_000), 5_000),
        },
    }
    results["memory"]["target_ratio"] = MEMORY_TARGET_RATIO
    if with_aws:
        results["aws"] = aws_figures(workload, batch_size, naive_records)
        results["capacity"] = capacity(workload, quick, repeats, capacity_events)
    results["seconds"] = time.perf_counter() - started
    return results


CAPACITY_BATCH_RECORDS = 1_000
"""The template's batch size, the model's."""


def capacity(
    reference: Workload, quick: bool, repeats: int, events: int | None = None
) -> dict[str, Any]:
    """The cost and capacity model (bench/capacity_model.py) fed with both workloads' requests
    in both unique-user modes, measured against moto's server in the template's default
    batches of 1,000 records (`events` of each workload: 10,000, 2,000 with `quick`), and with
    the pipeline's CPU time per event in each mode, in memory, in batches of the same size."""
    events = events or (2_000 if quick else 10_000)
    sessions = generate(replace(USER_SESSIONS, events=max(events, 10_000)))
    workloads = {
        "reference": (
            reference,
            "20,000 users, a random one per event (< 1 event per user and hour)",
        ),
        "sessions": (sessions, "user sessions, ~20 events per active user and hour"),
    }
    measurements = []
    for name, (workload, description) in workloads.items():
        cpu = {}
        for mode in MODES:
            timing = throughput(
                workload, codec_named("gzip"), CAPACITY_BATCH_RECORDS, repeats, unique_users=mode
            )
            cpu[mode] = timing.cpu_seconds / timing.records
        measurements.append(CapacityMeasurement(name, description, workload, cpu))
    measured = capacity_figures(
        measurements, batch_records=CAPACITY_BATCH_RECORDS, measured_events=events
    )
    profiles = []
    for by_mode in measured.values():
        for figures in by_mode.values():
            profile = profile_from_figures(figures)
            profiles.append(profile)
            if profile.mode == SKETCH:
                # The measured run's sketches are young (small, sparse); a long experiment's
                # hold thousands of users each.
                profiles.append(with_full_sketches(profile))
    deployment = Deployment()
    table = model_table(profiles, deployment=deployment)
    breaks = {f"{p.name} {p.mode}": first_break_rate(p, deployment) for p in profiles}
    partition_breaks = {
        f"{p.name} {p.mode}": first_break_rate(p, deployment, partition_keys_only=True)
        for p in profiles
    }
    return {
        "machine": {"nproc": os.cpu_count(), "load_average": os.getloadavg()},
        "measured": measured,
        "deployment": asdict(deployment),
        "prices": {"region": PRICES_REGION, "as_of": PRICES_AS_OF, **asdict(table.prices)},
        "predictions": [
            {
                **asdict(prediction),
                "write_units_total": prediction.write_units_total,
                "monthly_total": prediction.monthly_total,
                "anchor_monthly_total": prediction.anchor_monthly_total,
                "first_to_break": prediction.first_to_break,
                "parallelization_needed": prediction.parallelization_needed,
            }
            for prediction in table.predictions
        ],
        "first_break": {
            name: None if found is None else {"events_per_second": found[0], "what": found[1]}
            for name, found in breaks.items()
        },
        "first_partition_key_break": {
            name: None if found is None else {"events_per_second": found[0], "what": found[1]}
            for name, found in partition_breaks.items()
        },
    }


def capacity_table(capacity: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "Cost and capacity, measured per 1,000 events (real handler, moto, 1,000-record batches)",
    ]
    for name, by_mode in capacity["measured"].items():
        for mode, figures in by_mode.items():
            lines.append(f"  {name}, {mode} unique users: {figures['description']}")
            for prefix, count in figures["requests_by_key_prefix_per_1000_events"].items():
                lines.append(f"    {prefix:<30}{count:>10.1f} requests")
            for prefix, units in figures["write_units_by_key_prefix_per_1000_events"].items():
                lines.append(f"    {'write units ' + prefix:<30}{units:>10.1f}")
            lines.append(f"    {'write units':<30}{figures['write_units_per_1000_events']:>10.1f}")
            for prefix, units in figures["read_units_by_key_prefix_per_1000_events"].items():
                lines.append(f"    {'read units ' + prefix:<30}{units:>10.1f}")
            lines.append(
                f"    {'S3 PUT bytes':<30}{figures['s3_put_bytes_per_1000_events']:>10,.0f}"
                f"   SQS messages {figures['sqs_messages_per_1000_events']:.1f}"
            )
            profile = figures["profile"]
            lines.append(
                f"    client CPU per request {profile['client_cpu_seconds_per_request'] * 1e6:.0f}"
                f" µs, pipeline CPU per event {profile['cpu_seconds_per_event'] * 1e6:.1f} µs"
            )
            model = figures["model_requests_for_this_run"]
            lines.append(
                "    model vs measured requests for this run: "
                + ", ".join(
                    f"{op.split('.')[1]} {model.get(op, 0):.0f}/{n}"
                    for op, n in figures["measured_requests"].items()
                )
            )
    lines.append(
        f"Model (bench/capacity_model.py), on-demand list prices {capacity['prices']['region']} "
        f"{capacity['prices']['as_of']} (to be checked); batch "
        f"{capacity['deployment']['batch_size']:,}, window "
        f"{capacity['deployment']['batching_window_seconds']:g} s, "
        f"{capacity['deployment']['memory_mb']:,} MB arm64, "
        f"{capacity['deployment']['write_concurrency']} write workers"
    )
    lines.append(
        f"  {'workload':<27}{'mode':<7}{'ev/s':>8}{'shards':>7}{'WCU/1k ev':>10}{'WCU/s':>9}"
        f"{'RCU/s':>8}{'hot EXP#':>9}{'hot USERS#/SKETCH#':>19}{'s/batch':>8}"
        f"{'busy/shard':>11}{'$/month':>10}{'anchor $':>10}"
    )
    for p in capacity["predictions"]:
        counters, unique = p["hot_keys"]
        lines.append(
            f"  {p['workload']:<27}{p['mode']:<7}{p['events_per_second']:>8,.0f}{p['shards']:>7}"
            f"{1000 * p['write_units_total'] / p['events_per_second']:>10,.0f}"
            f"{p['write_units_total']:>9,.0f}{p['read_units_per_second']:>8,.0f}"
            f"{counters['write_units_per_second']:>9,.0f}"
            f"{unique['write_units_per_second']:>19,.0f}"
            f"{p['lambda_seconds_per_batch']:>8.2f}{p['concurrency_per_shard']:>11.2f}"
            f"{p['monthly_total']:>10,.0f}{p['anchor_monthly_total']:>10,.0f}"
        )
        if p["first_to_break"]:
            lines.append(f"  {'':<34}breaks: {p['first_to_break']}")
        if p["parallelization_needed"] > 1:
            lines.append(
                f"  {'':<34}ParallelizationFactor {p['parallelization_needed']} would carry "
                "each shard's batches"
            )
    for name, found in capacity["first_break"].items():
        what = (
            "nothing below 1,000,000 ev/s"
            if found is None
            else f"{found['what']} from ~{found['events_per_second']:,.0f} ev/s"
        )
        lines.append(
            f"  first past a limit ({PARTITION_WRITE_UNITS_PER_SECOND:,} WCU/s per partition "
            f"key, one invocation per shard), {name}: {what}"
        )
    for name, found in capacity["first_partition_key_break"].items():
        what = (
            "nothing below 1,000,000 ev/s"
            if found is None
            else f"{found['what']} from ~{found['events_per_second']:,.0f} ev/s"
        )
        lines.append(f"  first partition key past its limit, {name}: {what}")
    return lines


def _label(codec: ArchiveCodec) -> str:
    return codec.label


def _throughput_figures(timing: Timing, codec: str) -> dict[str, Any]:
    return {
        "codec": codec,
        "records": timing.records,
        "processed": timing.result.processed,
        "cpu_seconds": timing.cpu_seconds,
        "wall_seconds": timing.wall_seconds,
        "events_per_second": timing.events_per_second,
        "events_per_second_wall": timing.records / timing.wall_seconds,
        "stage_events_per_second": {
            stage: timing.records / seconds if seconds > 0 else None
            for stage, seconds in timing.stage_cpu_seconds.items()
        },
        "stage_microseconds_per_event": {
            stage: 1e6 * seconds / timing.records
            for stage, seconds in timing.stage_cpu_seconds.items()
        },
    }


def table(results: dict[str, Any]) -> str:
    lines = []
    machine = results["machine"]
    lines.append(
        f"machine: {machine['nproc']} cores, Python {machine['python']}, "
        f"load {', '.join(f'{x:.1f}' for x in machine['load_average'])}"
    )
    workload = results["workload"]
    lines.append(
        f"workload: {workload['batch_records']:,}-record batches, "
        f"{workload['mean_event_bytes']:.0f}-byte events"
    )
    lines.append("")
    lines.append(
        "Throughput, in-memory adapters, warm caches, one core, as the Lambda handler runs a "
        "batch (CPU time, best run)"
    )
    gzip_figures = results["throughput"]["gzip"]
    zstd_figures = results["throughput"]["zstd"]
    lines.append(
        f"  {'stage':<14}{gzip_figures['codec'] + ' ev/s':>14}{'µs/ev':>8}"
        f"{zstd_figures['codec'] + ' ev/s':>14}{'µs/ev':>8}"
    )
    for stage in STAGES:
        cells = []
        for figures in (gzip_figures, zstd_figures):
            rate = figures["stage_events_per_second"].get(stage)
            micros = figures["stage_microseconds_per_event"].get(stage, 0.0)
            cells.append(f"{rate:>14,.0f}{micros:>8.2f}" if rate else f"{'-':>14}{micros:>8.2f}")
        lines.append(f"  {stage:<14}{''.join(cells)}")
    lines.append(
        f"  {'total':<14}{gzip_figures['events_per_second']:>14,.0f}"
        f"{1e6 / gzip_figures['events_per_second']:>8.2f}"
        f"{zstd_figures['events_per_second']:>14,.0f}{1e6 / zstd_figures['events_per_second']:>8.2f}"
        f"   target {TARGET_EVENTS_PER_SECOND:,}: "
        f"{'met' if gzip_figures['events_per_second'] >= TARGET_EVENTS_PER_SECOND else 'NOT met'}"
    )
    for key, label in (
        ("gzip_zlib", "total, gzip by zlib level 3 (the former default)"),
        ("gzip_collector_not_managed", "total, collector neither paused nor warm heap frozen"),
    ):
        rate = results["throughput"][key]["events_per_second"]
        lines.append(f"  {label:<54}{rate:>10,.0f} ev/s {1e6 / rate:>7.2f} µs/ev")
    floor = results["physics_floor"]["microseconds_per_event"]
    lines.append(
        f"  floor (base64 + pydantic + default codec over the raw events, measured now): "
        f"{floor:.2f} µs/event; "
        f"pipeline = {1e6 / gzip_figures['events_per_second'] / floor:.1f}x floor"
    )
    lines.append(
        f"  {'total (wall)':<14}{gzip_figures['events_per_second_wall']:>14,.0f}{'':>8}"
        f"{zstd_figures['events_per_second_wall']:>14,.0f}"
    )
    lines.append("")
    lines.append("Archive codecs on one batch's archive objects")
    lines.append(f"  {'codec':<22}{'µs/event':>10}{'MB/s':>8}{'ratio':>7}{'bytes/event':>13}")
    for codec in results["codecs"]:
        lines.append(
            f"  {codec['label']:<22}"
            f"{codec['microseconds_per_event']:>10.2f}{codec['megabytes_per_second']:>8.0f}"
            f"{codec['ratio']:>7.2f}{codec['compressed_bytes_per_event']:>13.1f}"
        )
    memory = results["memory"]
    lines.append("")
    lines.append(
        f"Memory, one {memory['records']:,}-record batch in chunks of {memory['chunk_records']:,}: "
        f"invocation payload {memory['invocation_payload_bytes'] / 1e6:.1f} MB (event bytes "
        f"{memory['event_payload_bytes'] / 1e6:.1f} MB)"
    )
    lines.append(
        f"  above the parsed invocation event (the runtime's input): "
        f"{memory['peak_above_parsed_event_bytes'] / 1e6:.1f} MB = "
        f"{memory['ratio_to_invocation_payload']:.2f}x payload (target <= {MEMORY_TARGET_RATIO}x: "
        f"{'met' if memory['ratio_to_invocation_payload'] <= MEMORY_TARGET_RATIO else 'NOT met'})"
    )
    lines.append(
        f"  including the runtime's json.loads ({memory['parsed_event_bytes'] / 1e6:.1f} MB "
        f"parsed): {memory['peak_above_baseline_bytes'] / 1e6:.1f} MB = "
        f"{memory['ratio_to_invocation_payload_including_parse']:.2f}x; "
        f"RSS growth {memory['rss_growth_bytes'] / 1e6:.1f} MB"
    )
    whole = results.get("memory_whole_batch")
    if whole:
        lines.append(
            f"  the same batch unchunked: {whole['peak_above_parsed_event_bytes'] / 1e6:.1f} MB = "
            f"{whole['ratio_to_invocation_payload']:.2f}x"
        )
    lines.append("")
    lines.append("Scaling with batch size")
    for point in results["scaling"]["batch_size"]:
        lines.append(
            f"  {point['records']:>7,} records  {point['cpu_seconds'] * 1000:>8.1f} ms"
            f"  {point['microseconds_per_event']:>6.2f} µs/event"
        )
    lines.append("Scaling with distinct aggregate keys")
    for point in results["scaling"]["aggregate_keys"]:
        lines.append(
            f"  {point['experiments']:>5} experiments {point['metric_keys']:>7,} keys"
            f"  {point['microseconds_per_event']:>6.2f} µs/event"
            f"  (aggregate {point['aggregate_microseconds_per_event']:.2f})"
        )
    if "aws" in results:
        lines.extend(aws_table(results["aws"]))
    if "capacity" in results:
        lines.extend(capacity_table(results["capacity"]))
    lines.append("")
    lines.append(f"benchmark took {results['seconds']:.0f} s")
    return "\n".join(lines)


def aws_table(aws: dict[str, Any]) -> list[str]:
    naive = aws["naive"]
    ratios = aws["ratios"]
    lines = ["", f"AWS requests per 1,000 events, real handler, {aws['records']:,}-record batch"]
    for name, count in aws["requests_per_1000_events"].items():
        lines.append(f"  {name:<34}{count:>10.1f}")
    lines.append(
        f"  {'DynamoDB write units':<34}{aws['dynamodb_write_units_per_1000_events']:>10.1f}"
    )
    lines.append("Naive per-record handler, per 1,000 events")
    for name, count in naive["requests_per_1000_events"].items():
        lines.append(f"  {name:<34}{count:>10.1f}")
    lines.append(
        f"  {'DynamoDB write units':<34}{naive['dynamodb_write_units_per_1000_events']:>10.1f}"
    )
    scaled = (
        f" (measured {naive['records_measured']} records in "
        f"{naive['wall_seconds_measured']:.1f} s, scaled)"
        if naive["extrapolated"]
        else ""
    )
    lines.append(
        f"Wall time for the batch against moto's server: handler {aws['wall_seconds']:.1f} s, "
        f"naive {naive['wall_seconds_for_batch']:.0f} s{scaled}"
    )
    lines.append(
        f"Ratios naive/handler: DynamoDB requests {ratios['dynamodb_requests']:.0f}x (target 20x), "
        f"write units {ratios['dynamodb_write_units']:.1f}x (target 3x), "
        f"wall time {ratios['wall_time']:.0f}x (target 20x)"
    )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller series")
    parser.add_argument("--skip-aws", action="store_true", help="no moto end-to-end part")
    parser.add_argument(
        "--naive-records",
        type=int,
        default=100,
        help="records the naive per-record handler processes (its time is scaled to the batch)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="where to write the figures (default bench/results.json for a full run; "
        "bench/results-partial.json with --quick or --skip-aws, so that a partial run does not "
        "replace the full one)",
    )
    parser.add_argument(
        "--capacity-only",
        action="store_true",
        help="only the cost and capacity part (moto, both workloads, both unique-user modes); "
        "it replaces the `capacity` part of the output file and keeps the rest",
    )
    parser.add_argument(
        "--capacity-events",
        type=int,
        help="events of each workload the capacity part measures at moto's server "
        "(default 10,000; 2,000 with --quick)",
    )
    parser.add_argument("--memory-probe", type=int, metavar="RECORDS", help=argparse.SUPPRESS)
    parser.add_argument("--chunk-records", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_probe:
        print(json.dumps(memory_probe(args.memory_probe, args.chunk_records)))
        return
    partial = args.quick or args.skip_aws
    output: Path = args.output or ROOT / "bench" / (
        "results-partial.json" if partial else "results.json"
    )
    if args.capacity_only:
        capacity_only(output, args.quick, args.capacity_events)
        return
    results = run(args.quick, not args.skip_aws, args.naive_records, args.capacity_events)
    figure = output.with_name("scaling-partial.png" if partial else "scaling.png")
    if chart(results, figure):
        results["chart"] = str(figure.relative_to(ROOT))
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"wrote {output.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
