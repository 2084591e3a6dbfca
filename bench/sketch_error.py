"""The error and size of distinct-count sketches of unique users, measured: which sketch and lg_k
the sketch mode of unique users keeps (infrastructure/user_sketch.py).

`make bench` runs it (`python bench/sketch_error.py --scale 4` for four times the trials). For
each candidate (HLL_4 and HLL_8, Theta, CPC at a few lg_k) and each number of users (1k, 10k,
100k, 1M), every trial takes a fresh set of user ids (a random prefix) and measures:

- the relative error of the estimate of a sketch of the n users, as the store keeps it (passed
  through a union and a serialization, as every stored sketch is: a union loses the HIP
  estimator a sketch fed directly may use, so this is the error a report sees);
- the relative error of the union of two sketches over overlapping users (the first n users and
  the n users from n/2 on: 1.5 n distinct), as a report unions write shards and windows;
- whether the sketch's 95% bounds (two standard deviations) hold the true count;
- the compact serialized size in bytes, what a DynamoDB item stores.

Prints a markdown table (docs/performance.md, "Unique users: sketch mode"). About 40 s.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from datasketches import (  # noqa: E402
    cpc_sketch,
    cpc_union,
    hll_sketch,
    hll_union,
    tgt_hll_type,
    theta_union,
    update_theta_sketch,
)

from infrastructure.user_sketch import SKETCH_FAMILY, SKETCH_LG_K  # noqa: E402

USERS_AND_TRIALS: tuple[tuple[int, int], ...] = (
    (1_000, 200),
    (10_000, 100),
    (100_000, 40),
    (1_000_000, 8),
)
"""(users, trials at --scale 1): fewer trials where one costs more; beyond a few thousand users
every sketch here is in its estimating mode, whose relative error no longer depends on n."""

TWO_STANDARD_DEVIATIONS = 2
"""The bounds asked of each sketch: about a 95% interval."""


@dataclass(frozen=True)
class Candidate:
    """One sketch configuration: `stored(users)` is the sketch of `users` as the store keeps it,
    `union(a, b)` the union of two stored sketches (both as objects with `get_estimate`,
    `get_lower_bound`, `get_upper_bound`), `size(sketch)` its compact serialized bytes."""

    family: str
    lg_k: int
    stored: Callable[[Iterable[str]], Any]
    union: Callable[[Any, Any], Any]
    size: Callable[[Any], int]

    @property
    def name(self) -> str:
        return f"{self.family} lg_k={self.lg_k}"


def _feed(sketch: Any, users: Iterable[str]) -> Any:
    deque(map(sketch.update, users), maxlen=0)
    return sketch


def hll(target: Any, family: str, lg_k: int) -> Candidate:
    def through_union(*sketches: Any) -> Any:
        union = hll_union(lg_k)
        for sketch in sketches:
            union.update(sketch)
        return hll_sketch.deserialize(union.get_result(target).serialize_compact())

    return Candidate(
        family,
        lg_k,
        lambda users: through_union(_feed(hll_sketch(lg_k, target), users)),
        through_union,
        lambda sketch: len(sketch.serialize_compact()),
    )


def theta(lg_k: int) -> Candidate:
    def through_union(*sketches: Any) -> Any:
        union = theta_union(lg_k)
        for sketch in sketches:
            union.update(sketch)
        return union.get_result()

    return Candidate(
        "Theta",
        lg_k,
        lambda users: through_union(_feed(update_theta_sketch(lg_k), users)),
        through_union,
        lambda sketch: len(sketch.serialize()),
    )


def cpc(lg_k: int) -> Candidate:
    def through_union(*sketches: Any) -> Any:
        union = cpc_union(lg_k)
        for sketch in sketches:
            union.update(sketch)
        return cpc_sketch.deserialize(union.get_result().serialize())

    return Candidate(
        "CPC",
        lg_k,
        lambda users: through_union(_feed(cpc_sketch(lg_k), users)),
        through_union,
        lambda sketch: len(sketch.serialize()),
    )


def candidates() -> list[Candidate]:
    return [
        *(hll(tgt_hll_type.HLL_4, "HLL_4", lg_k) for lg_k in (12, 13, 14)),
        *(hll(tgt_hll_type.HLL_8, "HLL_8", lg_k) for lg_k in (12, 13, 14)),
        *(theta(lg_k) for lg_k in (12, 13, 14)),
        *(cpc(lg_k) for lg_k in (11, 12, 13)),
    ]


@dataclass
class Measured:
    errors: list[float] = field(default_factory=list)
    union_errors: list[float] = field(default_factory=list)
    covered: int = 0
    sizes: list[int] = field(default_factory=list)

    def add(self, truth: int, sketch: Any, union_truth: int, union: Any, size: int) -> None:
        self.errors.append(abs(sketch.get_estimate() / truth - 1))
        self.union_errors.append(abs(union.get_estimate() / union_truth - 1))
        lower = sketch.get_lower_bound(TWO_STANDARD_DEVIATIONS)
        upper = sketch.get_upper_bound(TWO_STANDARD_DEVIATIONS)
        self.covered += lower <= truth <= upper
        self.sizes.append(size)


def p95(values: Sequence[float]) -> float:
    """The nearest-rank 95th percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def measure(
    scale: float, seed: int, chosen: Sequence[Candidate]
) -> dict[tuple[str, int], Measured]:
    rng = random.Random(seed)
    results: dict[tuple[str, int], Measured] = {}
    for users, base_trials in USERS_AND_TRIALS:
        for _ in range(max(2, round(base_trials * scale))):
            prefix = f"{rng.getrandbits(64):016x}:"
            ids = [prefix + number for number in map(str, range(users + users // 2))]
            first, overlapping = ids[:users], ids[users // 2 :]
            for candidate in chosen:
                sketch = candidate.stored(first)
                union = candidate.union(sketch, candidate.stored(overlapping))
                results.setdefault((candidate.name, users), Measured()).add(
                    users, sketch, len(ids), union, candidate.size(sketch)
                )
    return results


def table(chosen: Sequence[Candidate], results: dict[tuple[str, int], Measured]) -> str:
    kept = f"{SKETCH_FAMILY} lg_k={SKETCH_LG_K}"
    lines = [
        "| sketch | users | trials | p95 error | max error | p95 error of a union "
        "| 95% bounds hold | compact bytes (max) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for candidate in chosen:
        for users, _ in USERS_AND_TRIALS:
            measured = results[(candidate.name, users)]
            trials = len(measured.errors)
            name = f"**{candidate.name}** (kept)" if candidate.name == kept else candidate.name
            lines.append(
                f"| {name} | {users:,} | {trials} | {p95(measured.errors):.2%} "
                f"| {max(measured.errors):.2%} | {p95(measured.union_errors):.2%} "
                f"| {measured.covered / trials:.0%} | {max(measured.sizes):,} |"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiplies every number of trials (default 1)"
    )
    parser.add_argument("--seed", type=int, default=14, help="of the user id prefixes")
    parser.add_argument(
        "--only", default="", help="candidates whose name contains this (e.g. 'CPC')"
    )
    arguments = parser.parse_args(argv)
    chosen = [candidate for candidate in candidates() if arguments.only in candidate.name]
    started = time.perf_counter()
    results = measure(arguments.scale, arguments.seed, chosen)
    print(table(chosen, results))
    print(f"\n{time.perf_counter() - started:.0f} s, --scale {arguments.scale:g}", file=sys.stderr)


if __name__ == "__main__":
    main()
