"""A counter's measures: one definition that adds up the same however records are grouped, and
that the DynamoDB item format writes and reads whole."""

from __future__ import annotations

from dataclasses import fields
from decimal import Decimal, Inexact, localcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.limits import COUNTER_CONTEXT
from domain.metrics import MEASURE_NAMES, NO_MEASURES, Measures
from infrastructure.aws.dynamodb_codec import (
    MEASURES_ADD,
    measure_values,
    number,
    read_measures,
)

values = st.lists(
    st.none() | st.decimals(min_value=-(10**9), max_value=10**9, places=2, allow_nan=False),
    max_size=30,
)


@given(first=values, second=values)
def test_the_measures_of_records_are_the_sum_of_the_measures_of_any_split(
    first: list[Decimal | None], second: list[Decimal | None]
) -> None:
    assert Measures.of_records(first + second) == (
        Measures.of_records(first) + Measures.of_records(second)
    )


@given(records=values)
def test_no_measures_is_what_adding_nothing_gives(records: list[Decimal | None]) -> None:
    measures = Measures.of_records(records)

    assert measures + NO_MEASURES == measures == NO_MEASURES + measures
    assert Measures.of_records([]) == NO_MEASURES


def test_records_without_a_value_count_as_events_but_not_in_the_value_measures() -> None:
    measures = Measures.of_records([Decimal("19.99"), None, Decimal("0.01")])

    assert measures == Measures(event_count=3, value_sum=Decimal("20.00"), value_count=2)
    assert measures.value_mean == Decimal("10.00")
    assert Measures.of_records([None]).value_mean is None


def test_every_measure_is_named_once_in_the_order_of_its_definition() -> None:
    assert tuple(field.name for field in fields(Measures)) == MEASURE_NAMES
    assert tuple(Measures(1, Decimal("2.5"), 3).as_numbers()) == MEASURE_NAMES


def test_the_counter_update_adds_every_measure_under_its_own_name() -> None:
    measures = Measures(4, Decimal("12.75"), 3, 2)

    added = MEASURES_ADD
    assert added == (
        "ADD event_count :event_count, value_sum :value_sum, value_count :value_count, "
        "unique_users :unique_users"
    )
    assert measure_values(measures) == {
        ":event_count": {"N": "4"},
        ":value_sum": {"N": "12.75"},
        ":value_count": {"N": "3"},
        ":unique_users": {"N": "2"},
    }


def test_a_counter_item_written_before_unique_users_were_stored_reads_none() -> None:
    item = {"event_count": number(4), "value_sum": number(Decimal("1.5")), "value_count": number(1)}

    assert read_measures(item) == Measures(4, Decimal("1.5"), 1, 0)


@given(records=values)
def test_a_counter_item_reads_back_the_measures_it_was_written_with(
    records: list[Decimal | None],
) -> None:
    measures = Measures.of_records(records)
    item = {name: number(amount) for name, amount in measures.as_numbers().items()}

    assert read_measures(item) == measures


def test_in_dynamodb_s_arithmetic_measures_add_exactly_or_not_at_all() -> None:
    thirty_digits = Measures(1, Decimal("1" * 30), 1)
    cent = Measures(1, Decimal("0.01"), 1)

    with localcontext(COUNTER_CONTEXT):
        assert (thirty_digits + cent).value_sum == Decimal("1" * 30 + ".01")
        with pytest.raises(Inexact):
            _ = Measures(value_sum=Decimal("1" * 38)) + Measures(value_sum=Decimal("0.1"))
