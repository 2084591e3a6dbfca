"""Process the reference workload through the use case, wired by the Lambda's container on the
memory back end, and summarise."""

from __future__ import annotations

import argparse
import time
from collections import Counter

from application.ports import MetricSnapshot
from application.results import BatchResult
from domain.metrics import Granularity
from domain.rejections import RejectionReason
from entrypoints.container import Container
from entrypoints.settings import Settings
from infrastructure.in_memory.metric_store import InMemoryMetricStore
from operations.synthetic.workload import WorkloadSpec, generate


def memory_container() -> Container:
    """The Lambda's composition root with the memory back end (BACK_END=memory)."""
    container = Container()
    container.settings.override(Settings(back_end="memory"))
    return container


def summarise(metrics: InMemoryMetricStore, results: list[BatchResult]) -> str:
    lines = []
    totals = Counter[str]()
    reasons = Counter[RejectionReason]()
    for result in results:
        totals.update(
            records=result.records,
            processed=result.processed,
            duplicates=result.duplicates,
            unattributed=result.unattributed,
            archived_objects=result.archived_objects,
            failures=len(result.failures),
        )
        reasons.update(result.dead_lettered)
    lines.append(
        "records {records}  processed {processed}  duplicates {duplicates}  "
        "unattributed {unattributed}  archive objects {archived_objects}  "
        "redelivery requested {failures}".format(
            **{
                k: totals[k]
                for k in (
                    "records",
                    "processed",
                    "duplicates",
                    "unattributed",
                    "archived_objects",
                    "failures",
                )
            }
        )
    )
    lines.append(
        "dead letters: "
        + (", ".join(f"{r.value} {n}" for r, n in sorted(reasons.items())) or "none")
    )
    lines.append("")
    lines.append(
        f"{'experiment':<10} {'variant':<12} {'metric':<11} {'events':>7} {'users':>6} {'value sum':>11}"
    )
    for experiment_id in metrics.experiment_ids():
        daily: dict[tuple[str, str], list[MetricSnapshot]] = {}
        for snapshot in metrics.snapshots(experiment_id, Granularity.DAY):
            daily.setdefault((snapshot.key.variant_id, snapshot.key.metric), []).append(snapshot)
        for (variant_id, metric), snapshots in sorted(daily.items()):
            events = sum(s.measures.event_count for s in snapshots)
            users = sum(s.unique_users for s in snapshots)
            value = sum(s.measures.value_sum for s in snapshots)
            lines.append(
                f"{experiment_id:<10} {variant_id:<12} {metric:<11} {events:>7} {users:>6} {value:>11}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    workload = generate(WorkloadSpec(events=args.events, seed=args.seed))
    container = memory_container()
    container.in_memory_experiment_repository().put_all(workload.experiments)
    container.in_memory_assignment_repository().put_all(workload.assignments)
    processor = container.batch_processor()
    records = workload.records()
    started = time.perf_counter()
    results = [
        processor.process(records[i : i + args.batch_size])
        for i in range(0, len(records), args.batch_size)
    ]
    elapsed = time.perf_counter() - started
    print(summarise(container.in_memory_metric_store(), results))
    print(f"\n{len(records)} records in {elapsed:.2f} s ({len(records) / elapsed:,.0f} records/s)")


if __name__ == "__main__":
    main()
