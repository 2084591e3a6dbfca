"""Experiments and the users' assignments to their variants, as the assignment service owns them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
)

from domain.events import identifier_problem


def _usable_identifier(value: str, info: ValidationInfo) -> str:
    problem = identifier_problem(info.field_name or "identifier", value)
    if problem is not None:
        raise ValueError(problem)
    return value


ReferenceIdentifier = Annotated[str, Field(min_length=1), AfterValidator(_usable_identifier)]
"""An experiment or variant id of the assignment service: what the event contract takes
(`IDENTIFIER_MAX_BYTES` in UTF-8), so that every key built from it fits its store. An item
holding another is malformed reference data, skipped by the repositories."""


class ExperimentStatus(StrEnum):
    DRAFT = "draft"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"


class Variant(BaseModel):
    model_config = ConfigDict(frozen=True)

    variant_id: ReferenceIdentifier
    weight: float = Field(default=1.0, ge=0)


class Experiment(BaseModel):
    model_config = ConfigDict(frozen=True)

    experiment_id: ReferenceIdentifier
    name: str
    status: ExperimentStatus
    variants: tuple[Variant, ...] = ()

    @property
    def is_running(self) -> bool:
        return self.status is ExperimentStatus.RUNNING


class Assignment(BaseModel):
    """One user's variant in one experiment, and since when."""

    model_config = ConfigDict(frozen=True)

    user_id: str = Field(min_length=1)
    experiment_id: ReferenceIdentifier
    variant_id: ReferenceIdentifier
    assigned_at: AwareDatetime

    def precedes(self, moment: datetime) -> bool:
        return self.assigned_at <= moment
