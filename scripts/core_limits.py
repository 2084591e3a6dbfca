"""The core stays readable: size and complexity limits of `domain/` and `application/`.

`make check` runs it. A module of the core is at most `MAX_MODULE_LINES` lines; a function or
method at most `MAX_FUNCTION_LINES` lines and of cyclomatic complexity at most
`MAX_COMPLEXITY` (radon's measure: one plus each branch, loop, boolean operator and handler).
Each breach is printed as `path:line: what`, and the exit status is 1 when there is one.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from radon.complexity import cc_visit
from radon.visitors import Class, Function

ROOT = Path(__file__).resolve().parent.parent
CORE = ("domain", "application")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
MAX_COMPLEXITY = 15


def _functions(blocks: Sequence[Function | Class]) -> Iterator[Function]:
    """Every function, method and closure once (radon lists methods both alone and in their
    class)."""
    seen: set[tuple[int, str]] = set()

    def walk(blocks: Sequence[Function | Class]) -> Iterator[Function]:
        for block in blocks:
            if isinstance(block, Class):
                yield from walk(block.methods)
                yield from walk(block.inner_classes)
            elif (block.lineno, block.fullname) not in seen:
                seen.add((block.lineno, block.fullname))
                yield block
                yield from walk(block.closures)

    yield from walk(blocks)


def breaches(path: Path) -> Iterator[str]:
    source = path.read_text(encoding="utf-8")
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    lines = source.count("\n")
    if lines > MAX_MODULE_LINES:
        yield f"{shown}:1: module of {lines} lines (at most {MAX_MODULE_LINES})"
    for function in _functions(cc_visit(source)):
        name = function.fullname
        length = function.endline - function.lineno + 1
        if length > MAX_FUNCTION_LINES:
            yield (
                f"{shown}:{function.lineno}: {name} is {length} lines "
                f"(at most {MAX_FUNCTION_LINES})"
            )
        if function.complexity > MAX_COMPLEXITY:
            yield (
                f"{shown}:{function.lineno}: {name} has cyclomatic complexity "
                f"{function.complexity} (at most {MAX_COMPLEXITY})"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", default=list(CORE), help="default: the core")
    folders = parser.parse_args(argv).folders
    found = [
        breach
        for folder in folders
        for path in sorted((ROOT / folder).rglob("*.py"))
        for breach in breaches(path)
    ]
    for breach in found:
        print(breach)
    if found:
        print(f"{len(found)} breaches of the core's limits", file=sys.stderr)
        return 1
    print(f"the core is within its limits ({', '.join(folders)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
