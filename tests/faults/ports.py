"""Faults at the ports, for runs on the in-memory back end: refused writes, lost acknowledgements,
crashes part-way through a write, and the invocation's time running out after a write.

They mirror what the botocore hooks and the lossy proxy do to the AWS adapters: a refused item
has no effect and is reported unfinished; a lost item took effect but is reported unfinished
(the adapter could not know it succeeded); a crash applies a prefix of the call and raises.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import TypeVar

from application.ports import (
    NO_EARLIER_RECORDS,
    DeadLetterQueue,
    Deadline,
    EarlierRecords,
    EventArchive,
    MetricSnapshot,
    MetricStore,
    WriteReport,
)
from application.shard_cut import NO_CUT
from domain.archiving import ArchiveObject
from domain.metrics import Granularity, MetricDelta, MetricKey
from domain.rejections import DeadLetter
from tests.faults.clock import SteppingClock
from tests.faults.invocation import SimulatedCrash

Item = TypeVar("Item", MetricDelta, ArchiveObject, DeadLetter)


def _coordinates(item: MetricDelta | ArchiveObject | DeadLetter) -> tuple[str, int]:
    if isinstance(item, MetricDelta):
        return item.shard_id, item.first_sequence
    if isinstance(item, ArchiveObject):
        return item.shard_id, item.first_sequence
    return item.coordinates.shard_id, item.sequence


class PortFaults:
    def __init__(
        self,
        seed: int,
        refused: float,
        lost: float,
        crash_per_call: float,
        timeout_per_call: float,
        clock: SteppingClock,
        function_timeout_seconds: float,
    ) -> None:
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._refused = refused
        self._lost = lost
        self._crash = crash_per_call
        self._timeout = timeout_per_call
        self._clock = clock
        self._function_timeout = function_timeout_seconds
        self.injected: Counter[str] = Counter()

    def _roll(self) -> float:
        with self._lock:
            return self._rng.random()

    def _count(self, kind: str) -> None:
        with self._lock:
            self.injected[kind] += 1

    def write(
        self,
        items: Sequence[Item],
        apply: Callable[[Sequence[Item]], WriteReport],
    ) -> WriteReport:
        crash_at = len(items) + 1
        if items and self._roll() < self._crash:
            crash_at = int(self._roll() * len(items))
        unfinished = NO_CUT
        for index, item in enumerate(items):
            if index == crash_at:
                self._count("crash")
                raise SimulatedCrash(f"the function died after {index} writes")
            roll = self._roll()
            shard_id, sequence = _coordinates(item)
            if roll < self._refused:
                self._count("refused")
                unfinished = unfinished.lowered_to(shard_id, sequence)
                continue
            report = apply([item])
            unfinished = unfinished.merged(report.cut)
            if roll < self._refused + self._lost:
                self._count("lost")
                unfinished = unfinished.lowered_to(shard_id, sequence)
        if items and self._roll() < self._timeout:
            self._count("timeout")
            self._clock.jump(self._function_timeout + 1)
        if unfinished:
            return WriteReport(unfinished, ("injected faults",))
        return WriteReport()


class MetricStoreInFront(MetricStore):
    """A metric store in front of another, `inner`: reads pass through to it, and each subclass
    says what of a write reaches it."""

    def __init__(self, inner: MetricStore) -> None:
        self.inner = inner

    def snapshots(
        self,
        experiment_id: str,
        granularity: Granularity,
        start: datetime | None = None,
        end: datetime | None = None,
        user_sets: bool = False,
    ) -> list[MetricSnapshot]:
        return self.inner.snapshots(experiment_id, granularity, start, end, user_sets)

    def watermarks(self, keys: Collection[MetricKey], shard_id: str) -> dict[MetricKey, int]:
        return self.inner.watermarks(keys, shard_id)


class FaultyMetricStore(MetricStoreInFront):
    def __init__(self, inner: MetricStore, faults: PortFaults) -> None:
        super().__init__(inner)
        self._faults = faults

    def apply(
        self,
        deltas: Sequence[MetricDelta],
        deadline: Deadline,
        earlier_records: EarlierRecords = NO_EARLIER_RECORDS,
    ) -> WriteReport:
        return self._faults.write(
            deltas, lambda part: self.inner.apply(part, deadline, earlier_records)
        )


class FaultyEventArchive(EventArchive):
    def __init__(self, inner: EventArchive, faults: PortFaults) -> None:
        self._inner = inner
        self._faults = faults

    def store(self, objects: Sequence[ArchiveObject], deadline: Deadline) -> WriteReport:
        return self._faults.write(objects, lambda part: self._inner.store(part, deadline))


class FaultyDeadLetterQueue(DeadLetterQueue):
    def __init__(self, inner: DeadLetterQueue, faults: PortFaults) -> None:
        self._inner = inner
        self._faults = faults

    def send(self, letters: Sequence[DeadLetter], deadline: Deadline) -> WriteReport:
        return self._faults.write(letters, lambda part: self._inner.send(part, deadline))
