"""Warm-container caches in front of the enrichment repositories (bounded size and age)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection

from cachetools import TTLCache

from application.ports import AssignmentRepository, ExperimentRepository
from domain.experiments import Assignment, Experiment


class CachingAssignmentRepository(AssignmentRepository):
    """Remembers each user's assignments, including having none, for `ttl_seconds`."""

    def __init__(
        self,
        inner: AssignmentRepository,
        max_size: int,
        ttl_seconds: float,
        timer: Callable[[], float] | None = None,
    ) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self._cache: TTLCache[str, tuple[Assignment, ...]] = (
            TTLCache(max_size, ttl_seconds, timer=timer)
            if timer
            else TTLCache(max_size, ttl_seconds)
        )

    def assignments_for(self, user_ids: Collection[str]) -> dict[str, tuple[Assignment, ...]]:
        found: dict[str, tuple[Assignment, ...]] = {}
        missing: list[str] = []
        with self._lock:
            for user_id in user_ids:
                cached = self._cache.get(user_id)
                if cached is None:
                    missing.append(user_id)
                else:
                    found[user_id] = cached
        if missing:
            fetched = self._inner.assignments_for(missing)
            with self._lock:
                for user_id in missing:
                    assignments = fetched.get(user_id, ())
                    self._cache[user_id] = assignments
                    found[user_id] = assignments
        return found


class CachingExperimentRepository(ExperimentRepository):
    """Remembers experiments, and which ids do not exist, for `ttl_seconds`."""

    def __init__(
        self,
        inner: ExperimentRepository,
        max_size: int,
        ttl_seconds: float,
        timer: Callable[[], float] | None = None,
    ) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self._cache: TTLCache[str, Experiment | None] = (
            TTLCache(max_size, ttl_seconds, timer=timer)
            if timer
            else TTLCache(max_size, ttl_seconds)
        )

    def experiments(self, experiment_ids: Collection[str]) -> dict[str, Experiment]:
        found: dict[str, Experiment] = {}
        missing: list[str] = []
        with self._lock:
            for experiment_id in experiment_ids:
                if experiment_id in self._cache:
                    cached = self._cache[experiment_id]
                    if cached is not None:
                        found[experiment_id] = cached
                else:
                    missing.append(experiment_id)
        if missing:
            fetched = self._inner.experiments(missing)
            with self._lock:
                for experiment_id in missing:
                    experiment = fetched.get(experiment_id)
                    self._cache[experiment_id] = experiment
                    if experiment is not None:
                        found[experiment_id] = experiment
        return found
