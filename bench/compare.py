"""A/B of the batch pipeline's throughput: this checkout against another revision, in one run.

`make bench-ab BASE=REV` runs it. The other revision is checked out into a temporary git
worktree; then processes of the two trees alternate (A, B, A, B, ...), each measuring the
headline figure of bench/run.py (a 10,000-record batch through the in-memory adapters with the
warm-container caches, gzip archive, CPU time of the best of several runs). Alternating
processes spread the machine's slow moments over both sides; the median of each side's
figures is compared. Exit status 1 when this checkout is slower than `--tolerance` allows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MEASURE = """
import json, sys
tree = sys.argv[1]
sys.path[:0] = [tree, tree + "/bench"]
import run
workload = run.generate(run.WorkloadSpec(events=20_000))
timing = run.throughput(workload, run.codec_named("gzip"), 10_000, int(sys.argv[2]))
print(json.dumps({"events_per_second": timing.events_per_second}))
"""


def measure(tree: Path, repeats: int) -> float:
    """One process of `tree`'s code: its best events a second."""
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(tree), str(repeats)],
        check=True,
        capture_output=True,
        text=True,
        cwd=tree,
    )
    figure: float = json.loads(done.stdout.strip().splitlines()[-1])["events_per_second"]
    return figure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="HEAD~1", help="the revision to compare with")
    parser.add_argument("--rounds", type=int, default=6, help="processes per side")
    parser.add_argument("--repeats", type=int, default=8, help="batches timed per process")
    parser.add_argument(
        "--tolerance", type=float, default=0.05, help="slowdown accepted (0.05: 5%%)"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-base-") as scratch:
        base = Path(scratch) / "tree"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(base), args.base],
            check=True,
        )
        try:
            sides: dict[str, list[float]] = {"base": [], "this": []}
            for round_number in range(1, args.rounds + 1):
                for side, tree in (("base", base), ("this", ROOT)):
                    sides[side].append(measure(tree, args.repeats))
                print(
                    f"round {round_number}/{args.rounds}: base {sides['base'][-1]:,.0f}"
                    f" events/s, this {sides['this'][-1]:,.0f} events/s",
                    flush=True,
                )
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False
            )
    base_median = statistics.median(sides["base"])
    this_median = statistics.median(sides["this"])
    change = this_median / base_median - 1
    print(
        f"median: base ({args.base}) {base_median:,.0f} events/s, this checkout "
        f"{this_median:,.0f} events/s: {change:+.1%}"
    )
    if change < -args.tolerance:
        print(f"slower than the {args.tolerance:.0%} allowed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
