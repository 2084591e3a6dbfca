"""Writes experiments and assignments in the assignment service's table layout (seed and demo)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from application.ports import NoDeadline
from domain.errors import TransientInfrastructureError
from domain.experiments import Assignment, Experiment
from domain.metrics import to_decimal
from infrastructure.aws.dynamodb_codec import (
    BATCH_WRITE_LIMIT,
    Backoff,
    Item,
    chunked,
    number,
    put_items,
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


class DynamoDbReferenceDataWriter:
    """Puts whole items: a user's item holds every assignment given in one call (later ones win
    for the same experiment) and replaces what the table held for that user."""

    def __init__(
        self,
        client: DynamoDBClient,
        assignments_table: str = ASSIGNMENTS_TABLE,
        experiments_table: str = EXPERIMENTS_TABLE,
        backoff: Backoff | None = None,
    ) -> None:
        self._client = client
        self._assignments_table = assignments_table
        self._experiments_table = experiments_table
        self._backoff = backoff or Backoff()

    def write_experiments(self, experiments: Iterable[Experiment]) -> int:
        by_id = {e.experiment_id: experiment_item(e) for e in experiments}
        self._put_all(self._experiments_table, list(by_id.values()))
        return len(by_id)

    def write_assignments(self, assignments: Iterable[Assignment]) -> int:
        by_user: dict[str, list[Assignment]] = {}
        for assignment in assignments:
            by_user.setdefault(assignment.user_id, []).append(assignment)
        items = [assignments_item(user_id, items) for user_id, items in by_user.items()]
        self._put_all(self._assignments_table, items)
        return len(items)

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
