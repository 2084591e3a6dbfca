"""Writes experiments and assignments in the assignment service's table layout (seed and demo)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC
from decimal import Decimal
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from application.ports import NoDeadline
from domain.errors import PipelineError, TransientInfrastructureError
from domain.experiments import Assignment, Experiment
from domain.metrics import to_decimal
from infrastructure.aws.dynamodb_codec import (
    BATCH_GET_LIMIT,
    BATCH_WRITE_LIMIT,
    Backoff,
    Item,
    chunked,
    number,
    put_items,
    read_items,
    string,
)
from infrastructure.aws.dynamodb_repositories import ASSIGNMENTS_TABLE, EXPERIMENTS_TABLE
from infrastructure.aws.errors import translate

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef


def experiment_item(experiment: Experiment) -> Item:
    variants: list[AttributeValueTypeDef] = [
        {
            "M": {
                "variant_id": string(variant.variant_id),
                "weight": number(to_decimal(variant.weight)),
            }
        }
        for variant in experiment.variants
    ]
    return {
        "experiment_id": string(experiment.experiment_id),
        "name": string(experiment.name),
        "status": string(experiment.status.value),
        "variants": {"L": variants},
    }


def assignments_item(user_id: str, assignments: Iterable[Assignment]) -> Item:
    entries: dict[str, AttributeValueTypeDef] = {
        a.experiment_id: {
            "M": {
                "variant_id": string(a.variant_id),
                "assigned_at": string(a.assigned_at.astimezone(UTC).isoformat()),
            }
        }
        for a in assignments
    }
    return {"user_id": string(user_id), "assignments": {"M": entries}}


@dataclass(frozen=True, slots=True)
class Changes:
    """What a seed does (or, dry, would do) to one table's items or entries."""

    new: int = 0
    changed: int = 0
    unchanged: int = 0
    kept: int = 0
    """Assignments of experiments not in the seed, kept in the users' items (merge)."""
    removed: int = 0
    """Assignments of experiments not in the seed, removed with their users' items (replace)."""


class SeedConflictError(PipelineError):
    """A user's stored item cannot take a merged assignment (its `assignments` is not a map)."""


@dataclass(frozen=True, slots=True)
class _UserPlan:
    user_id: str
    exists: bool
    entries: Mapping[str, AttributeValueTypeDef]
    """The seed's entries for this user that differ from the stored ones (all with replace)."""
    item: Item
    """The user's whole item as the seed gives it (written when the user has none, or replace)."""


class DynamoDbReferenceDataWriter:
    """Writes experiments and assignments in the assignment service's layout, never destroying
    what the seed does not name.

    An experiment's attributes (name, status, variants) are set in its item, other attributes
    stay; unchanged experiments are not written. A user's assignments are merged by default: each experiment's entry is set inside
    the user's item (`SET assignments.#experiment = :entry`), so assignments of other
    experiments stay; a user without an item gets one, created on condition that none appeared
    meanwhile. `replace=True` writes each user's item whole, as the seed gives it (BatchWriteItem:
    for tables the seed owns, such as a test's or the demo's). The stored
    items are read first (BatchGetItem), so a seed run again writes nothing, and `plan_*` tells
    what a write would change without writing."""

    def __init__(
        self,
        client: DynamoDBClient,
        assignments_table: str = ASSIGNMENTS_TABLE,
        experiments_table: str = EXPERIMENTS_TABLE,
        backoff: Backoff | None = None,
        max_workers: int = 8,
    ) -> None:
        self._client = client
        self._assignments_table = assignments_table
        self._experiments_table = experiments_table
        self._backoff = backoff or Backoff()
        self._max_workers = max_workers

    # -- experiments ---------------------------------------------------------------------------

    def plan_experiments(self, experiments: Iterable[Experiment]) -> Changes:
        return self._experiments_to_write(experiments)[1]

    def write_experiments(self, experiments: Iterable[Experiment]) -> Changes:
        items, changes = self._experiments_to_write(experiments)
        with ThreadPoolExecutor(
            max_workers=self._max_workers, thread_name_prefix="seed-experiments"
        ) as pool:
            list(pool.map(self._set_experiment, items))
        return changes

    def _experiments_to_write(
        self, experiments: Iterable[Experiment]
    ) -> tuple[list[Item], Changes]:
        by_id = {e.experiment_id: experiment_item(e) for e in experiments}
        stored = self._read(self._experiments_table, "experiment_id", _EXPERIMENT_FIELDS, by_id)
        to_write = [item for key, item in by_id.items() if not _same(stored.get(key), item)]
        new = sum(1 for key in by_id if key not in stored)
        return to_write, Changes(
            new=new, changed=len(to_write) - new, unchanged=len(by_id) - len(to_write)
        )

    def _set_experiment(self, item: Item) -> None:
        """Set the seed's attributes of one experiment, creating its item if missing; other
        attributes of the item (another team's) stay."""
        fields = [name for name in _EXPERIMENT_FIELDS if name != "experiment_id"]
        try:
            self._client.update_item(
                TableName=self._experiments_table,
                Key={"experiment_id": item["experiment_id"]},
                UpdateExpression="SET " + ", ".join(f"#f{i} = :f{i}" for i in range(len(fields))),
                ExpressionAttributeNames={f"#f{i}": name for i, name in enumerate(fields)},
                ExpressionAttributeValues={f":f{i}": item[name] for i, name in enumerate(fields)},
            )
        except (ClientError, BotoCoreError) as error:
            raise translate(error, "UpdateItem") from error

    # -- assignments ---------------------------------------------------------------------------

    def plan_assignments(self, assignments: Iterable[Assignment], replace: bool = False) -> Changes:
        return self._assignment_plans(assignments, replace)[1]

    def write_assignments(
        self, assignments: Iterable[Assignment], replace: bool = False
    ) -> Changes:
        plans, changes = self._assignment_plans(assignments, replace)
        if replace:
            self._put_all(self._assignments_table, [p.item for p in plans if p.entries])
            return changes
        creations = [p for p in plans if not p.exists]
        updates = [p for p in plans if p.exists and p.entries]
        with ThreadPoolExecutor(
            max_workers=self._max_workers, thread_name_prefix="seed-assignments"
        ) as pool:
            list(pool.map(self._create_or_merge, creations))
            list(pool.map(self._merge, updates))
        return changes

    def _assignment_plans(
        self, assignments: Iterable[Assignment], replace: bool
    ) -> tuple[list[_UserPlan], Changes]:
        by_user: dict[str, list[Assignment]] = {}
        for assignment in assignments:
            by_user.setdefault(assignment.user_id, []).append(assignment)
        stored = self._read(self._assignments_table, "user_id", _ASSIGNMENT_FIELDS, by_user)
        plans: list[_UserPlan] = []
        new = changed = unchanged = others = 0
        for user_id, given in by_user.items():
            item = assignments_item(user_id, given)
            entries = item["assignments"]["M"]
            current = stored.get(user_id)
            held = _entries_of(current) if current is not None else {}
            differing = {e: v for e, v in entries.items() if not _same(held.get(e), v)}
            new += sum(1 for e in entries if e not in held)
            changed += sum(1 for e in differing if e in held)
            unchanged += len(entries) - len(differing)
            others += sum(1 for e in held if e not in entries)
            if replace and current is not None and not _same(current, item):
                differing = dict(entries)
            plans.append(_UserPlan(user_id, current is not None, differing, item))
        if replace:
            return plans, Changes(new, changed, unchanged, removed=others)
        return plans, Changes(new, changed, unchanged, kept=others)

    def _create_or_merge(self, plan: _UserPlan) -> None:
        try:
            self._client.put_item(
                TableName=self._assignments_table,
                Item=plan.item,
                ConditionExpression="attribute_not_exists(user_id)",
            )
        except ClientError as error:
            if _code(error) != "ConditionalCheckFailedException":
                raise translate(error, "PutItem") from error
            self._merge(plan)  # the user's item appeared meanwhile: merge into it
        except BotoCoreError as error:
            raise translate(error, "PutItem") from error

    def _merge(self, plan: _UserPlan) -> None:
        names = {f"#e{index}": experiment for index, experiment in enumerate(plan.entries)}
        values = {f":e{index}": entry for index, entry in enumerate(plan.entries.values())}
        expression = "SET " + ", ".join(f"assignments.{name} = :e{name[2:]}" for name in names)
        try:
            self._client.update_item(
                TableName=self._assignments_table,
                Key={"user_id": string(plan.user_id)},
                UpdateExpression=expression,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as error:
            if _code(error) == "ValidationException" and "document path" in str(error):
                raise SeedConflictError(
                    f"the stored item of user {plan.user_id!r} in {self._assignments_table} has "
                    "no 'assignments' map to merge into; --replace writes the whole item"
                ) from None
            raise translate(error, "UpdateItem") from error
        except BotoCoreError as error:
            raise translate(error, "UpdateItem") from error

    # -- reading and writing -------------------------------------------------------------------

    def _read(
        self, table_name: str, key_name: str, fields: Sequence[str], keys: Iterable[str]
    ) -> dict[str, Item]:
        """The stored items of `keys` (only `fields`), by key; strongly consistent."""
        names = {f"#f{index}": name for index, name in enumerate(fields)}
        stored: dict[str, Item] = {}
        for chunk in chunked(sorted(set(keys)), BATCH_GET_LIMIT):
            found = read_items(
                self._client,
                table_name,
                [{key_name: string(key)} for key in chunk],
                ", ".join(names),
                names,
                self._backoff,
                consistent_read=True,
            )
            for item in found:
                stored[item[key_name]["S"]] = item
        return stored

    def _put_all(self, table_name: str, items: Sequence[Item]) -> None:
        for chunk in chunked(items, BATCH_WRITE_LIMIT):
            try:
                left = put_items(self._client, table_name, chunk, self._backoff, NoDeadline())
            except (ClientError, BotoCoreError) as error:
                raise translate(error, "BatchWriteItem") from error
            if left:
                raise TransientInfrastructureError(
                    "BatchWriteItem", f"{len(left)} items of {table_name} still unprocessed"
                )


_EXPERIMENT_FIELDS = ("experiment_id", "name", "status", "variants")
_ASSIGNMENT_FIELDS = ("user_id", "assignments")


def _entries_of(item: Item) -> Mapping[str, AttributeValueTypeDef]:
    value = item.get("assignments")
    if value is None or "M" not in value:
        return {}
    return value["M"]


def _same(stored: object, given: object) -> bool:
    """Whether two attribute values are equal as DynamoDB compares them (numbers by value:
    DynamoDB hands back 1.0 as "1")."""
    return _comparable(stored) == _comparable(given)


def _comparable(value: object) -> object:
    if isinstance(value, Mapping):
        return {
            key: Decimal(inner) if key == "N" and isinstance(inner, str) else _comparable(inner)
            for key, inner in value.items()
        }
    if isinstance(value, list):
        return [_comparable(inner) for inner in value]
    return value


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))
