"""Reads the assignment service's tables: users' assignments and experiments, by BatchGetItem."""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from decimal import Decimal
from typing import TYPE_CHECKING

from pydantic import ValidationError

from application.ports import AssignmentRepository, ExperimentRepository
from domain.experiments import Assignment, Experiment, ExperimentStatus, Variant
from infrastructure.aws.dynamodb_codec import (
    BATCH_GET_LIMIT,
    Backoff,
    Item,
    MalformedItemError,
    chunked,
    read_decimal,
    read_items,
    read_string,
    string,
)
from infrastructure.malformed_reference_data import (
    MalformedReferenceData,
    Skipped,
    validation_reason,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

ASSIGNMENTS_TABLE = "experiment-assignments"
EXPERIMENTS_TABLE = "experiments"


class _BatchReader:
    """Fetches items by a single string key, 100 keys per BatchGetItem, chunks in parallel."""

    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        key_name: str,
        attributes: Iterable[str],
        executor: Executor | None,
        max_workers: int,
        backoff: Backoff | None,
    ) -> None:
        self._client = client
        self._table_name = table_name
        self._key_name = key_name
        names = [key_name, *attributes]
        # Every attribute goes through a placeholder: `name` and `status` are reserved words.
        self._attribute_names = {f"#a{index}": name for index, name in enumerate(names)}
        self._projection = ", ".join(self._attribute_names)
        self._executor = executor
        self._max_workers = max_workers
        self._executor_lock = threading.Lock()
        self._backoff = backoff or Backoff()
        self.malformed = MalformedReferenceData(table_name)
        """A malformed stored item is left out (counted and logged), so one bad row of the
        assignment service cannot stop every other user's events from being counted."""

    def fetch(self, keys: Collection[str]) -> list[Item]:
        chunks = chunked(sorted(set(keys)), BATCH_GET_LIMIT)
        if len(chunks) <= 1:
            return [item for chunk in chunks for item in self._fetch_chunk(chunk)]
        results = self._pool().map(self._fetch_chunk, chunks)
        return [item for items in results for item in items]

    def _pool(self) -> Executor:
        with self._executor_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=self._max_workers, thread_name_prefix=f"read-{self._table_name}"
                )
            return self._executor

    def _fetch_chunk(self, keys: Collection[str]) -> list[Item]:
        return read_items(
            self._client,
            self._table_name,
            [{self._key_name: string(key)} for key in keys],
            self._projection,
            self._attribute_names,
            self._backoff,
        )


def _map_of(value: AttributeValueTypeDef | None, what: str) -> Mapping[str, AttributeValueTypeDef]:
    if value is None or "M" not in value:
        raise MalformedItemError(f"{what} is missing or not a map")
    return value["M"]


class DynamoDbAssignmentRepository(AssignmentRepository):
    """Item per user: `user_id` (S) and `assignments`, a map experiment_id -> {variant_id,
    assigned_at}. A malformed assignment entry is skipped, counted and logged; the user's other
    assignments still count."""

    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str = ASSIGNMENTS_TABLE,
        max_workers: int = 8,
        executor: Executor | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self._reader = _BatchReader(
            client, table_name, "user_id", ["assignments"], executor, max_workers, backoff
        )

    @property
    def malformed_items(self) -> int:
        return self._reader.malformed.count

    def assignments_for(self, user_ids: Collection[str]) -> dict[str, tuple[Assignment, ...]]:
        found: dict[str, tuple[Assignment, ...]] = {}
        skipped: list[Skipped] = []
        for item in self._reader.fetch(user_ids):
            try:
                user_id = read_string(item, "user_id")
                entries = _map_of(item.get("assignments"), "assignments")
            except MalformedItemError as error:
                skipped.append(Skipped("assignment item", None, str(error)))
                continue
            assignments = []
            for experiment_id, entry in sorted(entries.items()):
                try:
                    fields = _map_of(entry, f"assignments.{experiment_id}")
                    assignments.append(
                        Assignment.model_validate(
                            {
                                "user_id": user_id,
                                "experiment_id": experiment_id,
                                "variant_id": read_string(fields, "variant_id"),
                                "assigned_at": read_string(fields, "assigned_at"),
                            }
                        )
                    )
                except MalformedItemError as error:
                    skipped.append(Skipped("assignment", experiment_id, str(error)))
                except ValidationError as error:
                    skipped.append(Skipped("assignment", experiment_id, validation_reason(error)))
            found[user_id] = tuple(assignments)
        self._reader.malformed.report(skipped)
        return found


class DynamoDbExperimentRepository(ExperimentRepository):
    """Item per experiment: `experiment_id` (S), name, status, variants [{variant_id, weight}].
    A malformed experiment is skipped (as if unknown), counted and logged."""

    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str = EXPERIMENTS_TABLE,
        max_workers: int = 4,
        executor: Executor | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self._reader = _BatchReader(
            client,
            table_name,
            "experiment_id",
            ["name", "status", "variants"],
            executor,
            max_workers,
            backoff,
        )

    @property
    def malformed_items(self) -> int:
        return self._reader.malformed.count

    def experiments(self, experiment_ids: Collection[str]) -> dict[str, Experiment]:
        found: dict[str, Experiment] = {}
        skipped: list[Skipped] = []
        for item in self._reader.fetch(experiment_ids):
            try:
                experiment = _experiment_of(item)
            except ValidationError as error:
                skipped.append(Skipped("experiment", _key_of(item), validation_reason(error)))
                continue
            except (MalformedItemError, ValueError) as error:
                skipped.append(Skipped("experiment", _key_of(item), str(error)))
                continue
            found[experiment.experiment_id] = experiment
        self._reader.malformed.report(skipped)
        return found


def _key_of(item: Item) -> str | None:
    value = item.get("experiment_id")
    return value.get("S") if value is not None else None


def _experiment_of(item: Item) -> Experiment:
    variants_value = item.get("variants", {"L": []})
    if "L" not in variants_value:
        raise MalformedItemError("variants is not a list")
    variants = []
    for entry in variants_value["L"]:
        fields = _map_of(entry, "variants[]")
        weight = read_decimal(fields, "weight") if "weight" in fields else Decimal(1)
        variants.append(Variant(variant_id=read_string(fields, "variant_id"), weight=float(weight)))
    return Experiment(
        experiment_id=read_string(item, "experiment_id"),
        name=read_string(item, "name"),
        status=ExperimentStatus(read_string(item, "status")),
        variants=tuple(variants),
    )
