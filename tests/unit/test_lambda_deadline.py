from __future__ import annotations

from dataclasses import dataclass

from entrypoints.lambda_handler import LambdaDeadline


@dataclass
class Remaining:
    """A context whose remaining time the test sets."""

    remaining_ms: int

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def test_the_deadline_passes_when_less_than_the_margin_is_left() -> None:
    context = Remaining(120_000)
    deadline = LambdaDeadline(context, margin_ms=10_000)  # type: ignore[arg-type]
    assert not deadline.expired()
    context.remaining_ms = 10_001
    assert not deadline.expired()
    context.remaining_ms = 10_000
    assert deadline.expired()


def test_a_short_function_timeout_still_leaves_most_of_the_invocation_for_work() -> None:
    context = Remaining(10_000)
    deadline = LambdaDeadline(context, margin_ms=10_000)  # type: ignore[arg-type]
    assert not deadline.expired()
    context.remaining_ms = 2_600
    assert not deadline.expired()
    context.remaining_ms = 2_400
    assert deadline.expired()


def test_an_invocation_that_starts_without_time_is_out_of_time() -> None:
    assert LambdaDeadline(Remaining(0), margin_ms=10_000).expired()  # type: ignore[arg-type]
