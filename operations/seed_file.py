"""The seed file: experiments and assignments as JSON, for the demo and for tests with own data.

Format (documented in docs/cli.md)::

    {
      "experiments": [
        {"experiment_id": "exp-checkout", "name": "One-page checkout", "status": "running",
         "variants": [{"variant_id": "control", "weight": 1}, {"variant_id": "one-page", "weight": 1}]}
      ],
      "assignments": [
        {"user_id": "user-1", "experiment_id": "exp-checkout", "variant_id": "control",
         "assigned_at": "2026-11-20T09:00:00Z"}
      ]
    }

Every entry is validated; an error names the entry (`experiments[2].variants[0].weight`) and
says what is wrong. Beyond each entry's own rules the file must be consistent: experiment ids
are unique, variant ids are unique within an experiment, and each assignment names a variant
of an experiment in the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from domain.experiments import Assignment, Experiment, Variant


class SeedFileError(ValueError):
    """The seed file cannot be used; the message lists every problem, one a line."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = tuple(problems)
        super().__init__(f"{source}: " + "; ".join(problems))


# Strict mirrors of the domain models: a misspelt field is an error, not silently ignored.
class _VariantEntry(Variant):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _ExperimentEntry(Experiment):
    model_config = ConfigDict(frozen=True, extra="forbid")

    variants: tuple[_VariantEntry, ...] = ()


class _AssignmentEntry(Assignment):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _SeedDocument(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    experiments: tuple[_ExperimentEntry, ...] = ()
    assignments: tuple[_AssignmentEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class SeedData:
    experiments: tuple[Experiment, ...]
    assignments: tuple[Assignment, ...]


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(document)"


def parse_seed(text: str | bytes, source: str = "seed file") -> SeedData:
    """Validate a seed document; raise SeedFileError naming every offending entry."""
    try:
        document = _SeedDocument.model_validate_json(text)
    except ValidationError as error:
        problems = [
            f"{_location(tuple(detail['loc']))}: {detail['msg']}" for detail in error.errors()
        ]
        raise SeedFileError(source, problems) from None
    problems = _consistency_problems(document)
    if problems:
        raise SeedFileError(source, problems)
    return SeedData(
        tuple(Experiment.model_validate(e.model_dump()) for e in document.experiments),
        tuple(Assignment.model_validate(a.model_dump()) for a in document.assignments),
    )


def load_seed(path: Path) -> SeedData:
    try:
        text = path.read_bytes()
    except OSError as error:
        raise SeedFileError(str(path), [f"cannot read: {error.strerror or error}"]) from None
    return parse_seed(text, str(path))


def _consistency_problems(document: _SeedDocument) -> list[str]:
    problems = []
    variants: dict[str, set[str]] = {}
    for index, experiment in enumerate(document.experiments):
        where = f"experiments[{index}]"
        if experiment.experiment_id in variants:
            problems.append(f"{where}.experiment_id: duplicate id {experiment.experiment_id!r}")
            continue
        ids = [v.variant_id for v in experiment.variants]
        duplicates = sorted({v for v in ids if ids.count(v) > 1})
        if duplicates:
            problems.append(f"{where}.variants: duplicate variant ids {', '.join(duplicates)}")
        variants[experiment.experiment_id] = set(ids)
    seen: set[tuple[str, str]] = set()
    for index, assignment in enumerate(document.assignments):
        where = f"assignments[{index}]"
        known = variants.get(assignment.experiment_id)
        if known is None:
            problems.append(
                f"{where}.experiment_id: no experiment {assignment.experiment_id!r} in the file"
            )
        elif assignment.variant_id not in known:
            problems.append(
                f"{where}.variant_id: experiment {assignment.experiment_id!r} has no variant "
                f"{assignment.variant_id!r}"
            )
        pair = (assignment.user_id, assignment.experiment_id)
        if pair in seen:
            problems.append(
                f"{where}: user {assignment.user_id!r} is assigned twice in "
                f"{assignment.experiment_id!r}"
            )
        seen.add(pair)
    return problems


def dump_seed(experiments: Iterable[Experiment], assignments: Iterable[Assignment]) -> str:
    """The seed document of these objects (what the demo writes and `seed` reads back)."""
    document = {
        "experiments": [e.model_dump(mode="json") for e in experiments],
        "assignments": [a.model_dump(mode="json") for a in assignments],
    }
    return json.dumps(document, indent=2)
