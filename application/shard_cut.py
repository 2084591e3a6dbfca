"""The cut of a batch: per shard, where redelivery begins."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType


class ShardCut:
    """Per shard, the lowest sequence number whose effects are not known to be durable.

    Every record of a shard below its cut has all its effects durable and is acknowledged;
    the cut itself and everything above it in that shard is reported for redelivery (Kinesis
    redelivers a shard from its first reported failure on). A shard without a cut is complete.
    Cuts only move down: merging two cuts keeps, per shard, the lower one. Immutable.
    """

    __slots__ = ("_lowest",)

    _lowest: Mapping[str, int]

    def __init__(self, lowest: Mapping[str, int] | None = None) -> None:
        object.__setattr__(self, "_lowest", MappingProxyType(dict(lowest or {})))

    @classmethod
    def of(cls, records: Iterable[tuple[str, int]]) -> ShardCut:
        """The cut that redelivers each of `records` ((shard_id, sequence) pairs): each
        shard's lowest sequence number among them."""
        lowest: dict[str, int] = {}
        for shard_id, sequence in records:
            current = lowest.get(shard_id)
            if current is None or sequence < current:
                lowest[shard_id] = sequence
        return cls(lowest)

    def merged(self, *others: ShardCut) -> ShardCut:
        """The cut that redelivers whatever this one or any of `others` redelivers."""
        if not any(others):
            return self
        lowest = dict(self._lowest)
        for other in others:
            for shard_id, sequence in other._lowest.items():
                current = lowest.get(shard_id)
                if current is None or sequence < current:
                    lowest[shard_id] = sequence
        return ShardCut(lowest)

    def lowered_to(self, shard_id: str, sequence: int) -> ShardCut:
        """This cut, also redelivering `shard_id` from `sequence` on."""
        return self.merged(ShardCut({shard_id: sequence}))

    def keeps(self, shard_id: str, sequence: int) -> bool:
        """True when the record is below its shard's cut (or its shard has none): every effect
        of it is kept and it is acknowledged."""
        cut = self._lowest.get(shard_id)
        return cut is None or sequence < cut

    def cuts(self, shard_id: str, sequence: int) -> bool:
        """True when the record is at or above its shard's cut: it is redelivered."""
        return not self.keeps(shard_id, sequence)

    def of_shard(self, shard_id: str) -> int | None:
        """The shard's cut, None when the shard is complete."""
        return self._lowest.get(shard_id)

    def as_dict(self) -> dict[str, int]:
        return dict(self._lowest)

    def shards(self) -> Iterator[str]:
        return iter(self._lowest)

    def __bool__(self) -> bool:
        """True when some shard is cut: not everything is durable."""
        return bool(self._lowest)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ShardCut):
            return NotImplemented
        return self._lowest == other._lowest

    def __hash__(self) -> int:
        return hash(frozenset(self._lowest.items()))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __repr__(self) -> str:
        return f"ShardCut({dict(self._lowest)!r})"


NO_CUT = ShardCut()
"""Nothing to redeliver: every effect is durable."""
