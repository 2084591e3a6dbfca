"""The warm-container caches: fresh answers from memory, stale ones fetched again, bounded."""

from __future__ import annotations

from collections.abc import Collection

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.experiments import Assignment
from infrastructure.caching import (
    CachingAssignmentRepository,
    CachingExperimentRepository,
    ExpiringMap,
)
from infrastructure.in_memory.repositories import (
    InMemoryAssignmentRepository,
    InMemoryExperimentRepository,
)
from tests.factories import assignment, experiment


class Timer:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class CountingAssignments(InMemoryAssignmentRepository):
    def __init__(self) -> None:
        super().__init__([assignment("user-1"), assignment("user-2", "exp-2")])
        self.asked: list[set[str]] = []

    def assignments_for(self, user_ids: Collection[str]) -> dict[str, tuple[Assignment, ...]]:
        self.asked.append(set(user_ids))
        return super().assignments_for(user_ids)


def test_assignments_are_fetched_once_until_they_expire_including_having_none() -> None:
    inner, timer = CountingAssignments(), Timer()
    cache = CachingAssignmentRepository(inner, max_size=10, ttl_seconds=60, timer=timer)
    first = cache.assignments_for({"user-1", "nobody"})
    timer.now = 59
    again = cache.assignments_for({"user-1", "nobody", "user-2"})
    timer.now = 61
    cache.assignments_for({"user-1"})
    assert first == {"user-1": (assignment("user-1"),), "nobody": ()}
    assert again == {**first, "user-2": (assignment("user-2", "exp-2"),)}
    assert inner.asked == [{"user-1", "nobody"}, {"user-2"}, {"user-1"}]


def test_unknown_experiments_are_remembered_as_absent() -> None:
    inner = InMemoryExperimentRepository([experiment("exp-1")])
    cache = CachingExperimentRepository(inner, max_size=10, ttl_seconds=60, timer=Timer())
    assert cache.experiments({"exp-1", "exp-x"}) == {"exp-1": experiment("exp-1")}
    inner.put_all([experiment("exp-x")])
    assert cache.experiments({"exp-1", "exp-x"}) == {"exp-1": experiment("exp-1")}


@given(
    st.lists(st.tuples(st.integers(0, 9), st.sampled_from(["store", "tick"])), max_size=60),
    st.integers(1, 5),
)
@settings(max_examples=100, deadline=None)
def test_the_map_answers_like_a_dict_of_the_newest_writes_within_age_and_size(
    steps: list[tuple[int, str]], max_size: int
) -> None:
    timer = Timer()
    cache: ExpiringMap[int, int] = ExpiringMap(max_size, ttl_seconds=5, timer=timer)
    written: dict[int, tuple[float, int]] = {}  # key -> (write time, value), in write order
    for step, (key, action) in enumerate(steps):
        if action == "tick":
            timer.now += key / 3
            continue
        cache.store([(key, step)])
        written.pop(key, None)
        written[key] = (timer.now, step)
        # A model of the rule: the newest `max_size` writes that are younger than the age limit.
        alive = [(k, v) for k, (at, v) in written.items() if at + 5 > timer.now][-max_size:]
        found, missing = cache.lookup(range(10))
        assert found == dict(alive)
        assert sorted(missing) == sorted(set(range(10)) - set(found))
        assert len(cache) <= max_size
