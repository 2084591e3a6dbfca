"""UserSketch: a distinct count of users whose union is idempotent, commutative and lossless, kept
as bytes that round-trip."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infrastructure.user_sketch import SKETCH_LG_K, MalformedSketchError, UserSketch, union_of

user_ids = st.text(min_size=1, max_size=12)
user_sets = st.sets(user_ids, max_size=300)


@given(user_sets)
@settings(max_examples=60, deadline=None)
def test_adding_the_same_users_again_changes_nothing_not_even_the_bytes(users: set[str]) -> None:
    sketch = UserSketch.of(users)

    again = sketch.union(UserSketch.of(users))

    assert again == sketch
    assert again.union(sketch).to_bytes() == sketch.to_bytes()


@given(user_sets, user_sets)
@settings(max_examples=60, deadline=None)
def test_the_union_of_two_sketches_is_the_sketch_of_the_union_of_their_users(
    first: set[str], second: set[str]
) -> None:
    assert UserSketch.of(first).union(UserSketch.of(second)) == UserSketch.of(first | second)
    assert UserSketch.of(second).union(UserSketch.of(first)) == UserSketch.of(first | second)


@given(st.lists(user_sets, max_size=4))
@settings(max_examples=40, deadline=None)
def test_a_union_of_many_sketches_holds_every_user_of_each_whatever_the_grouping(
    groups: list[set[str]],
) -> None:
    everyone = set().union(*groups)
    sketches = [UserSketch.of(group) for group in groups]

    assert union_of(sketches) == UserSketch.of(everyone)
    assert union_of(reversed(sketches)) == UserSketch.of(everyone)


@given(user_sets)
@settings(max_examples=60, deadline=None)
def test_a_sketch_is_the_same_sketch_after_a_round_trip_through_its_bytes(users: set[str]) -> None:
    sketch = UserSketch.of(users)

    restored = UserSketch.from_bytes(sketch.to_bytes())

    assert restored == sketch
    assert restored.estimate() == sketch.estimate()


@given(st.lists(user_ids, max_size=200))
@settings(max_examples=60, deadline=None)
def test_the_bounds_hold_the_estimate_and_a_repeated_user_counts_once(users: list[str]) -> None:
    sketch = UserSketch.of(users)
    lower, upper = sketch.bounds()

    assert sketch == UserSketch.of(set(users))
    assert lower <= sketch.estimate() <= upper
    assert sketch.unique_estimate().estimate == sketch.estimate()
    assert (sketch.unique_estimate().lower_bound, sketch.unique_estimate().upper_bound) == (
        lower,
        upper,
    )


def test_a_few_users_are_counted_exactly() -> None:
    assert UserSketch.of(["u1", "u2", "u3", "u1"]).unique_estimate().users == 3
    assert UserSketch.of([]).estimate() == 0
    assert UserSketch.empty().is_empty()
    assert union_of([]) == UserSketch.empty()


@pytest.mark.parametrize("users", [1_000, 10_000, 100_000])
def test_many_users_are_estimated_within_two_percent(users: int) -> None:
    # Within the measured p95 error (docs/performance.md); whether the 95% bounds hold the true
    # count is a rate over many user sets, which bench/sketch_error.py measures.
    sketch = UserSketch.of(f"user-{number}" for number in range(users))

    assert sketch.estimate() == pytest.approx(users, rel=0.02)


def test_bytes_that_are_not_a_sketch_are_refused() -> None:
    with pytest.raises(MalformedSketchError):
        UserSketch.from_bytes(b"not a sketch")
    with pytest.raises(MalformedSketchError):
        UserSketch.from_bytes(b"")


def test_a_sketch_of_another_size_is_refused() -> None:
    from datasketches import cpc_sketch, cpc_union

    smaller = cpc_sketch(SKETCH_LG_K - 1)
    smaller.update("u1")
    union = cpc_union(SKETCH_LG_K - 1)
    union.update(smaller)

    with pytest.raises(MalformedSketchError, match="lg_k"):
        UserSketch.from_bytes(union.get_result().serialize())
