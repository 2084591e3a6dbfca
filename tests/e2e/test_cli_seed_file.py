"""The seed file format: valid documents become domain objects, bad entries are named."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from domain.experiments import ExperimentStatus
from operations.seed_file import SeedFileError, dump_seed, load_seed, parse_seed
from operations.synthetic.workload import WorkloadSpec, generate


def _document(**overrides: object) -> dict[str, object]:
    document: dict[str, object] = {
        "experiments": [
            {
                "experiment_id": "exp-checkout",
                "name": "One-page checkout",
                "status": "running",
                "variants": [
                    {"variant_id": "control", "weight": 1},
                    {"variant_id": "one-page", "weight": 1},
                ],
            }
        ],
        "assignments": [
            {
                "user_id": "user-1",
                "experiment_id": "exp-checkout",
                "variant_id": "one-page",
                "assigned_at": "2026-11-20T09:00:00Z",
            }
        ],
    }
    document.update(overrides)
    return document


def test_a_valid_seed_file_becomes_experiments_and_assignments() -> None:
    seed = parse_seed(json.dumps(_document()))

    (experiment,) = seed.experiments
    (assignment,) = seed.assignments
    assert experiment.status is ExperimentStatus.RUNNING
    assert [v.variant_id for v in experiment.variants] == ["control", "one-page"]
    assert assignment.assigned_at == datetime(2026, 11, 20, 9, tzinfo=UTC)


def test_an_invalid_entry_is_named_with_its_position_and_field() -> None:
    document = _document()
    document["experiments"][0]["variants"][1]["weight"] = -2  # type: ignore[index]

    with pytest.raises(SeedFileError) as raised:
        parse_seed(json.dumps(document))

    assert raised.value.problems == (
        "experiments[0].variants[1].weight: Input should be greater than or equal to 0",
    )


def test_a_misspelt_field_is_an_error_not_silently_ignored() -> None:
    document = _document()
    document["assignments"][0]["varient_id"] = "x"  # type: ignore[index]

    with pytest.raises(SeedFileError) as raised:
        parse_seed(json.dumps(document))

    assert "assignments[0].varient_id: Extra inputs are not permitted" in raised.value.problems


def test_an_assignment_to_an_unknown_variant_or_experiment_is_rejected() -> None:
    document = _document(
        assignments=[
            {
                "user_id": "u1",
                "experiment_id": "exp-checkout",
                "variant_id": "two-page",
                "assigned_at": "2026-11-20T09:00:00Z",
            },
            {
                "user_id": "u2",
                "experiment_id": "exp-missing",
                "variant_id": "control",
                "assigned_at": "2026-11-20T09:00:00Z",
            },
        ]
    )

    with pytest.raises(SeedFileError) as raised:
        parse_seed(json.dumps(document))

    assert raised.value.problems == (
        "assignments[0].variant_id: experiment 'exp-checkout' has no variant 'two-page'",
        "assignments[1].experiment_id: no experiment 'exp-missing' in the file",
    )


def test_a_naive_assignment_time_and_a_duplicate_experiment_are_rejected() -> None:
    experiments = _document()["experiments"]
    assert isinstance(experiments, list)
    document = _document(experiments=experiments * 2)
    document["assignments"][0]["assigned_at"] = "2026-11-20T09:00:00"  # type: ignore[index]

    with pytest.raises(SeedFileError) as raised:
        parse_seed(json.dumps(document))

    assert raised.value.problems == ("assignments[0].assigned_at: Input should have timezone info",)
    del document["assignments"]
    with pytest.raises(SeedFileError) as raised:
        parse_seed(json.dumps(document))
    assert raised.value.problems == ("experiments[1].experiment_id: duplicate id 'exp-checkout'",)


def test_text_that_is_not_json_is_reported_with_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "seed.json"
    path.write_text("{not json")

    with pytest.raises(SeedFileError) as raised:
        load_seed(path)

    assert str(raised.value).startswith(f"{path}: (document): Invalid JSON")


def test_a_dumped_workload_reads_back_as_the_same_objects(tmp_path: Path) -> None:
    workload = generate(WorkloadSpec(events=10, experiments=3, users=50))
    path = tmp_path / "seed.json"
    path.write_text(dump_seed(workload.experiments, workload.assignments))

    seed = load_seed(path)

    assert list(seed.experiments) == workload.experiments
    assert list(seed.assignments) == workload.assignments
