"""A simulated monotonic clock that only what a test charges to it moves on, so a Lambda
context's time runs out after the same work on every run, whatever the machine's load; and the
charges: a back end's throughput per request, botocore's retry pauses, the function's own work
per record.

Real time never enters it: a drain needs the same deliveries on an idle machine and under four
test workers. Whatever would wait for time to pass must be charged here instead: the
event-source-mapping emulator does not wait while it drains (`run(until_drained=True)`), and
botocore's backoff between attempts is charged by `charge_retry_pauses` in place of sleeping.
"""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime
from typing import Any, Protocol

from botocore.client import BaseClient

from application.ports import Clock


class SteppingClock:
    """Simulated seconds, standing still until `jump` moves them on: every deadline read from it
    comes only after what was charged to it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._now = 0.0

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def jump(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a monotonic clock does not go back")
        with self._lock:
            self._now += seconds

    def as_clock(self) -> Clock:
        """The service's clock on this time line, so that what it measures (a segment's pace)
        agrees with the deadline the invocation's context reports."""
        return _SteppingServiceClock(self)


class _SteppingServiceClock(Clock):
    def __init__(self, stepping: SteppingClock) -> None:
        self._stepping = stepping

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return self._stepping()


class RequestThroughput:
    """A back end that serves `requests_per_second` in all: every attempt of an attached client
    moves the clock on by its share of a second (so the invocation's deadline comes as it would
    against a service that slow, however quickly moto answers)."""

    def __init__(self, clock: SteppingClock, requests_per_second: float) -> None:
        if requests_per_second <= 0:
            raise ValueError("requests_per_second must be positive")
        self._clock = clock
        self._cost = 1.0 / requests_per_second

    def attach(self, client: BaseClient) -> None:
        service = client.meta.service_model.service_name
        client.meta.events.register(f"before-send.{service}", self._charge)

    def _charge(self, **_: Any) -> None:
        self._clock.jump(self._cost)


class _RetryBackoff(Protocol):
    _random: Any

    def delay_amount(self, context: Any) -> float: ...


class _ChargedBackoff:
    """botocore's own backoff, its jitter seeded, its pause charged to the clock and not slept."""

    def __init__(self, inner: _RetryBackoff, clock: SteppingClock, seed: str) -> None:
        self._inner = inner
        self._clock = clock
        inner._random = random.Random(seed).random

    def delay_amount(self, context: Any) -> float:
        self._clock.jump(self._inner.delay_amount(context))
        return 0.0  # botocore sleeps what this returns: the pause was charged instead


def charge_retry_pauses(client: BaseClient, clock: SteppingClock, seed: int) -> None:
    """Let the pauses between botocore's attempts pass on `clock` instead of in real time: an
    invocation retrying under faults spends its own time, as in Lambda, and a test spends none.

    botocore has no public hook for its backoff; this reaches its standard retry handler the way
    `infrastructure.aws.client_config.refund_retry_quota_on_answers` does, and fails loudly when
    a botocore release no longer has it (a real sleep would bring real time back in)."""
    service = client.meta.service_model.service_id.hyphenize()
    emitter = getattr(client.meta.events, "_emitter")  # noqa: B009 - private, not in the stubs
    entry = emitter._unique_id_handlers[f"retry-config-{service}"]
    policy = entry["handler"].__self__._retry_policy
    policy._retry_backoff = _ChargedBackoff(policy._retry_backoff, clock, f"{seed}/{service}")
