"""Experiments and the users' assignments to their variants, as the assignment service owns them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class ExperimentStatus(StrEnum):
    DRAFT = "draft"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"


class Variant(BaseModel):
    model_config = ConfigDict(frozen=True)

    variant_id: str = Field(min_length=1)
    weight: float = Field(default=1.0, ge=0)


class Experiment(BaseModel):
    model_config = ConfigDict(frozen=True)

    experiment_id: str = Field(min_length=1)
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
    experiment_id: str = Field(min_length=1)
    variant_id: str = Field(min_length=1)
    assigned_at: AwareDatetime

    def precedes(self, moment: datetime) -> bool:
        return self.assigned_at <= moment
