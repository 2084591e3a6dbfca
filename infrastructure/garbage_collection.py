"""The cyclic garbage collector around batches (see docs/performance.md).

A batch allocates hundreds of thousands of short-lived, acyclic objects (events, rows, lines),
which reference counting frees; the cyclic collector, triggered by those allocations, would
walk them again and again for nothing. The batch entrypoints pause it for the batch and freeze
the warm heap once, after the first invocation.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


def freeze_warm_heap() -> None:
    """Move what is alive now (imports, container, clients, filled caches) out of the cyclic
    collector's reach, so that its walks see only the objects of later batches. Frozen
    objects are still freed by reference counting when no longer referenced."""
    gc.collect()
    gc.freeze()


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic collection while the block runs; the collector is switched back on after it
    (as it was), and any cyclic garbage of the block is collected by its next run. Memory
    freed by reference counting, which is nearly all of a batch's, is freed as usual."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
