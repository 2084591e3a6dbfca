"""The warm container's memory of committed event ids: bounded, first committed first forgotten."""

from __future__ import annotations

from infrastructure.in_memory.recent_events import InMemoryRecentEventIndex


def test_remembers_the_record_that_first_carried_each_id() -> None:
    index = InMemoryRecentEventIndex(capacity=10)
    index.remember({"a": ("shard-1", 5), "b": ("shard-2", 7)})
    index.remember({"a": ("shard-1", 9)})  # a later record with the same id: not the first

    assert index.lookup(["a", "b", "c"]) == {"a": ("shard-1", 5), "b": ("shard-2", 7)}


def test_once_full_the_ids_committed_first_are_forgotten_first() -> None:
    index = InMemoryRecentEventIndex(capacity=3)
    index.remember({"a": ("s", 1), "b": ("s", 2)})
    index.remember({"a": ("s", 1), "c": ("s", 3), "d": ("s", 4)})

    assert len(index) == 3
    assert set(index.lookup(["a", "b", "c", "d"])) == {"b", "c", "d"}


def test_a_batch_larger_than_the_capacity_keeps_its_last_ids() -> None:
    index = InMemoryRecentEventIndex(capacity=2)
    index.remember({f"e{n}": ("s", n) for n in range(5)})

    assert index.lookup([f"e{n}" for n in range(5)]) == {"e3": ("s", 3), "e4": ("s", 4)}


def test_a_capacity_of_zero_remembers_nothing() -> None:
    index = InMemoryRecentEventIndex(capacity=0)
    index.remember({"a": ("s", 1)})

    assert index.lookup(["a"]) == {}
