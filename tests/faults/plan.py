"""Which calls fail, and how: a seeded random draw per call, counted per service and kind."""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum

FAULTED_SERVICES = frozenset({"dynamodb", "s3", "sqs"})


class FaultKind(StrEnum):
    THROTTLED = "throttled"
    """Refused with the service's throttling error; no effect."""
    SERVER_ERROR = "server_error"
    """Refused with 500 (503 SlowDown for S3); no effect."""
    CONNECTION_CLOSED = "connection_closed"
    """The connection dropped before the server saw the request; no effect."""
    ENDPOINT_UNREACHABLE = "endpoint_unreachable"
    """The endpoint could not be reached; no effect."""
    LOST_RESPONSE_500 = "lost_response_500"
    """The call took effect; the client saw a 500 and retried."""
    LOST_RESPONSE_CLOSED = "lost_response_closed"
    """The call took effect; the connection closed before the response and the client retried."""


REFUSALS = (FaultKind.THROTTLED, FaultKind.SERVER_ERROR)
DROPS = (FaultKind.CONNECTION_CLOSED, FaultKind.ENDPOINT_UNREACHABLE)
LOSSES = (FaultKind.LOST_RESPONSE_500, FaultKind.LOST_RESPONSE_CLOSED)


@dataclass(frozen=True, slots=True)
class FaultRates:
    """Fractions of calls: refused (no effect), dropped (no effect), response lost (effect)."""

    refused: float = 0.0
    dropped: float = 0.0
    lost: float = 0.0

    @classmethod
    def evenly(cls, total: float) -> FaultRates:
        return cls(total / 3, total / 3, total / 3)


class FaultPlan:
    """Draws, for each call to a faulted service, whether and how it fails."""

    def __init__(
        self,
        seed: int,
        rates: FaultRates,
        services: frozenset[str] = FAULTED_SERVICES,
    ) -> None:
        self._seed = seed
        self._rngs: dict[tuple[str, str], random.Random] = {}
        self._lock = threading.Lock()
        self.rates = rates
        self.services = services
        self.enabled = True
        self.injected: Counter[tuple[str, FaultKind]] = Counter()
        self.calls: Counter[str] = Counter()

    def before_request(self, service: str) -> FaultKind | None:
        """A fault that keeps the request from taking effect, or None."""
        if not self.enabled or service not in self.services:
            return None
        with self._lock:
            self.calls[service] += 1
            rng = self._rng(service, "before")
            roll = rng.random()
            if roll < self.rates.refused:
                kind = rng.choice(REFUSALS)
            elif roll < self.rates.refused + self.rates.dropped:
                kind = rng.choice(DROPS)
            else:
                return None
            self.injected[(service, kind)] += 1
            return kind

    def after_effect(self, service: str) -> FaultKind | None:
        """A fault that loses the response of a request that took effect, or None."""
        if not self.enabled or service not in self.services:
            return None
        with self._lock:
            rng = self._rng(service, "after")
            if rng.random() >= self.rates.lost:
                return None
            kind = rng.choice(LOSSES)
            self.injected[(service, kind)] += 1
            return kind

    def _rng(self, service: str, stage: str) -> random.Random:
        """One draw sequence per service and stage: the n-th call to a service meets the same
        fault whatever the other services' calls and the threads' interleaving did."""
        rng = self._rngs.get((service, stage))
        if rng is None:
            rng = self._rngs[(service, stage)] = random.Random(f"{self._seed}/{service}/{stage}")
        return rng

    def total(self, *kinds: FaultKind) -> int:
        with self._lock:
            return sum(n for (_, kind), n in self.injected.items() if not kinds or kind in kinds)
