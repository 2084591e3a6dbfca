"""A distinct-count sketch of user ids (Apache DataSketches' CPC): the value the sketch mode of
unique users stores per counter and write shard, and unions over shards and windows.

Which sketch and which lg_k were measured (bench/sketch_error.py, docs/performance.md "Unique
users: sketch mode"): CPC at lg_k 13 keeps the 95th percentile of the relative error under 2% at
every size measured, in the smallest serialized form of the candidates that do.
Here rather than in the domain: datasketches is a compiled library, the domain knows none.
"""

from __future__ import annotations

import importlib
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import TYPE_CHECKING, cast

from application.unique_users import UniqueEstimate

if TYPE_CHECKING:
    from datasketches import cpc_sketch, cpc_union

SKETCH_FAMILY = "CPC"
SKETCH_LG_K = 13
"""2^13 bins: changing it changes what the stored sketches are (a union of two lg_k keeps the
smaller one's error), so it is part of the table's layout, not a setting."""
SKETCH_SEED = 9001
"""DataSketches' default hash seed (the only one its Python deserializer reads); sketches of
different seeds cannot be unioned."""
NINETY_FIVE_PERCENT = 2
"""Standard deviations of the bounds asked of the sketch (its `kappa`): about a 95% interval."""


@cache
def _datasketches() -> ModuleType:
    """datasketches, imported when a sketch is first used: it brings numpy, some 0.15 s of a
    cold start that exact mode (the default) never needs."""
    return importlib.import_module("datasketches")


class MalformedSketchError(ValueError):
    """Bytes that are not a sketch of this module's family, lg_k and seed."""


@dataclass(frozen=True, slots=True)
class UserSketch:
    """The users of a set, approximately counted; immutable, held as its compact serialized form.

    Every sketch is in the form a union leaves it (`of` passes its users through one), so that
    a union with users already in the sketch changes not even its bytes: adding the same users
    again is harmless, which makes a redelivered batch harmless.
    """

    serialized: bytes

    @classmethod
    def empty(cls) -> UserSketch:
        return cls._of_union(_datasketches().cpc_union(SKETCH_LG_K, SKETCH_SEED))

    @classmethod
    def of(cls, user_ids: Iterable[str]) -> UserSketch:
        sketch = _datasketches().cpc_sketch(SKETCH_LG_K, SKETCH_SEED)
        deque(map(sketch.update, user_ids), maxlen=0)
        union = _datasketches().cpc_union(SKETCH_LG_K, SKETCH_SEED)
        union.update(sketch)
        return cls._of_union(union)

    @classmethod
    def from_bytes(cls, serialized: bytes) -> UserSketch:
        """The sketch these bytes hold; raises `MalformedSketchError` unless they are one of
        this family, lg_k and seed."""
        sketch = _deserialized(serialized)
        lg_k = cast(int, sketch.lg_k)
        if lg_k != SKETCH_LG_K:
            raise MalformedSketchError(f"a sketch of lg_k {lg_k}, not {SKETCH_LG_K}")
        return cls(bytes(serialized))

    def to_bytes(self) -> bytes:
        return self.serialized

    def union(self, *others: UserSketch) -> UserSketch:
        """The sketch of every user of this sketch and of `others`."""
        union = _datasketches().cpc_union(SKETCH_LG_K, SKETCH_SEED)
        for sketch in (self, *others):
            union.update(_deserialized(sketch.serialized))
        return self._of_union(union)

    def estimate(self) -> float:
        return float(_deserialized(self.serialized).get_estimate())

    def bounds(self) -> tuple[float, float]:
        """About a 95% interval around the distinct count (two standard deviations)."""
        sketch = _deserialized(self.serialized)
        return (
            float(sketch.get_lower_bound(NINETY_FIVE_PERCENT)),
            float(sketch.get_upper_bound(NINETY_FIVE_PERCENT)),
        )

    def unique_estimate(self) -> UniqueEstimate:
        sketch = _deserialized(self.serialized)
        return UniqueEstimate(
            float(sketch.get_estimate()),
            float(sketch.get_lower_bound(NINETY_FIVE_PERCENT)),
            float(sketch.get_upper_bound(NINETY_FIVE_PERCENT)),
        )

    def is_empty(self) -> bool:
        return bool(_deserialized(self.serialized).is_empty())

    @classmethod
    def _of_union(cls, union: cpc_union) -> UserSketch:
        return cls(bytes(union.get_result().serialize()))


def union_of(sketches: Iterable[UserSketch]) -> UserSketch:
    """The sketch of every user of `sketches` (empty when there is none)."""
    return UserSketch.empty().union(*sketches)


def _deserialized(serialized: bytes) -> cpc_sketch:
    try:
        # datasketches' Python deserializer knows only the default seed, and refuses a sketch
        # of another one.
        sketch: cpc_sketch = _datasketches().cpc_sketch.deserialize(serialized)
        return sketch
    except (ValueError, IndexError, RuntimeError, TypeError) as error:
        raise MalformedSketchError(f"not a {SKETCH_FAMILY} sketch: {error}") from error
