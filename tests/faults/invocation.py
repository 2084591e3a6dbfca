"""Faults of the function itself: a crash between two writes, and the time running out mid-batch.

`InvocationFaults.wrap(handler)` draws, per invocation, whether the function dies after its n-th
successful write (every later call of that invocation fails too: the process is gone) and
whether its time runs out after its n-th write (the clock jumps past the deadline: the handler
sees no time left, and the emulator discards its response as Lambda does after a timeout).
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from typing import Any

from botocore.client import BaseClient

from operations.event_source_emulator import Handler, LambdaContextLike
from tests.faults.clock import SteppingClock

WRITE_OPERATIONS = frozenset(
    {
        "UpdateItem",
        "PutItem",
        "DeleteItem",
        "BatchWriteItem",
        "TransactWriteItems",
        "PutObject",
        "SendMessage",
        "SendMessageBatch",
    }
)


class SimulatedCrash(Exception):  # noqa: N818 - it is what the function suffered, not a bug
    """The function died (out of memory, killed): not an error the code could handle."""


class InvocationFaults:
    def __init__(
        self,
        seed: int,
        crash_rate: float,
        timeout_rate: float,
        clock: SteppingClock,
        function_timeout_seconds: float,
        max_writes_before_fault: int = 30,
    ) -> None:
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._crash_rate = crash_rate
        self._timeout_rate = timeout_rate
        self._clock = clock
        self._timeout = function_timeout_seconds
        self._max_writes = max_writes_before_fault
        self._writes = 0
        self._crash_after: int | None = None
        self._time_out_after: int | None = None
        self._dead = False
        self._invocations = 0
        self.injected: Counter[str] = Counter()

    def attach(self, client: BaseClient) -> None:
        service = client.meta.service_model.service_name
        client.meta.events.register(f"before-send.{service}", self._refuse_when_dead)
        client.meta.events.register(f"after-call.{service}", self._count_write)

    def wrap(self, handler: Handler) -> Handler:
        def faulty(event: dict[str, Any], context: LambdaContextLike) -> object:
            self._arm()
            try:
                response = handler(event, context)
                if self._dead:
                    # The code carried on after a write failed with the crash; the process
                    # would not have: the invocation is an error, whatever it returned.
                    raise SimulatedCrash("the function died during the invocation")
                return response
            finally:
                self._disarm()

        return faulty

    def _arm(self) -> None:
        with self._lock:
            self._writes = 0
            self._dead = False
            self._invocations += 1
            self._crash_after = (
                self._rng.randint(1, self._max_writes)
                if self._rng.random() < self._crash_rate
                else None
            )
            self._time_out_after = (
                self._rng.randint(1, self._max_writes)
                if self._rng.random() < self._timeout_rate
                else None
            )
            # Whatever the draws, every run meets both kinds at least once, early: the second
            # invocation dies after its first write, the third runs out of time after it.
            if self._crash_rate > 0 and self._invocations == 2:
                self._crash_after = 1
            if self._timeout_rate > 0 and self._invocations == 3:
                self._time_out_after = 1

    def _disarm(self) -> None:
        with self._lock:
            self._crash_after = self._time_out_after = None
            self._dead = False

    def _refuse_when_dead(self, **_: Any) -> None:
        with self._lock:
            dead = self._dead
        if dead:
            raise SimulatedCrash("the function is no longer running")

    def _count_write(self, http_response: Any, model: Any, **_: Any) -> None:
        if model.name not in WRITE_OPERATIONS or http_response.status_code >= 300:
            return
        with self._lock:
            self._writes += 1
            writes = self._writes
            crash = self._crash_after is not None and writes >= self._crash_after
            time_out = self._time_out_after is not None and writes == self._time_out_after
            if crash:
                self._dead = True
                self._crash_after = None
                self.injected["crash"] += 1
            if time_out:
                self.injected["timeout"] += 1
        if time_out:
            self._clock.jump(self._timeout + 1)
        if crash:
            raise SimulatedCrash(f"the function died after {writes} writes")
