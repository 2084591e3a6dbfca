"""The sketch mode of unique users: per counter window, an approximate distinct count of its
users, kept as sketches that union (a port, with the value it answers with)."""

from __future__ import annotations

import abc
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from application.ports import Deadline, WriteReport
from domain.metrics import MetricDelta, MetricKey


@dataclass(frozen=True, slots=True)
class UniqueEstimate:
    """An approximate number of distinct users, with about a 95% interval around it."""

    estimate: float
    lower_bound: float
    upper_bound: float

    @property
    def users(self) -> int:
        """The estimate as a whole number of users."""
        return round(self.estimate)


NO_USERS = UniqueEstimate(0.0, 0.0, 0.0)


class UserSketches(abc.ABC):
    """Approximate unique users: a sketch of each counter's users, kept per write shard, so that
    a window's users and several windows' users (a range) are the union of stored sketches.

    Adding a user already in a sketch changes nothing, so a redelivered record needs no
    watermark: its users are added again, harmlessly.
    """

    @abc.abstractmethod
    def add(self, deltas: Sequence[MetricDelta], deadline: Deadline) -> WriteReport:
        """Add each delta's users to the sketch of its counter. A delta whose sketch is not
        known to be durable leaves its shard unfinished from the delta's first record; one whose
        sketch DynamoDB refuses for good is refused through each of its records."""

    @abc.abstractmethod
    def estimates(self, keys: Collection[MetricKey]) -> dict[MetricKey, UniqueEstimate]:
        """The distinct users of each counter's window (`NO_USERS` where none were added).
        Strongly consistent."""

    @abc.abstractmethod
    def union_estimate(self, keys: Collection[MetricKey]) -> UniqueEstimate:
        """The distinct users of all these windows together, each user counted once (the union
        of their sketches)."""
