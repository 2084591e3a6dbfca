"""`report --chart` through the CLI against moto's server: the extension chooses the format,
the experiment is named in the title, the hour in progress is marked, and bad chart options are
usage errors in one line."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from operations.local_aws import LocalAws
from tests.e2e.cli_support import environment_named, provision, run
from tests.e2e.report_world import ExperimentData, Happened, experiment, put_through_the_cli

World = tuple[dict[str, str], str, datetime]


def _recent_hours(now: datetime) -> ExperimentData:
    """Exposures and conversions in the last five hours and in the current one, none at all
    two hours ago."""
    chosen = experiment("exp-chart", {"control": 1, "treatment": 1}, "Chart test")
    this_hour = now.replace(minute=0, second=0, microsecond=0)
    variant_of = {f"chart-user-{i:02d}": ("control", "treatment")[i % 2] for i in range(24)}
    events = []
    for back in (5, 4, 3, 1, 0):
        start = this_hour - timedelta(hours=back)
        moment = start + (now - start) / 2 if back == 0 else start + timedelta(minutes=30)
        for i, user_id in enumerate(variant_of):
            if (i + back) % 3 == 0:
                events.append(Happened(user_id, "exposure", moment))
            if (i + back) % 4 == 0:
                events.append(Happened(user_id, "conversion", moment + timedelta(seconds=1)))
    return ExperimentData(chosen, variant_of, tuple(events))


@pytest.fixture(scope="module")
def world(moto_server: LocalAws, tmp_path_factory: pytest.TempPathFactory) -> World:
    name = f"t{uuid.uuid4().hex[:12]}"
    env = provision(environment_named(name), moto_server.endpoint_url, f"{name}-dlq")
    now = datetime.now(UTC)
    put_through_the_cli(
        [_recent_hours(now)],
        env,
        moto_server.endpoint_url,
        tmp_path_factory.mktemp("report-chart"),
        assigned_at=now - timedelta(days=1),
    )
    return env, moto_server.endpoint_url, now


def _chart(world: World, path: Path, *args: str) -> tuple[int, str, str]:
    env, endpoint_url, _ = world
    result = run(
        ["report", "-e", "exp-chart", "--window", "hour", "--chart", str(path), *args],
        env,
        endpoint_url,
    )
    return result.exit_code, result.stdout, result.stderr


def test_the_rate_chart_names_the_experiment_and_marks_the_hour_in_progress(
    world: World, tmp_path: Path
) -> None:
    path = tmp_path / "conversion.svg"

    code, stdout, stderr = _chart(world, path, "--chart-metric", "conversion")

    assert code == 0, stderr
    svg = path.read_text()
    assert svg.lstrip().startswith("<?xml")
    assert "<svg" in svg
    assert "exp-chart (Chart test)" in svg
    assert "cumulative conversion rate per exposed user, 95% Wilson band" in svg
    if datetime.now(UTC).hour == world[2].hour:  # the hour of the events is still in progress
        assert "hour in progress (partial" in svg
    assert "chart: " in stderr
    assert "(2 variants of conversion)" in stderr
    assert stdout.startswith("Experiment exp-chart")


def test_the_extension_chooses_the_format(world: World, tmp_path: Path) -> None:
    magic = {"png": b"\x89PNG\r\n\x1a\n", "pdf": b"%PDF-"}

    for extension, start in magic.items():
        path = tmp_path / f"exposure.{extension}"
        code, _, stderr = _chart(world, path, "--chart-measure", "users", "-f", "csv")

        assert code == 0, stderr
        assert path.read_bytes().startswith(start)


@pytest.mark.parametrize(
    ("chart", "message"),
    [
        ("exposure.jpg", "the extension chooses the format, one of .png, .svg, .pdf"),
        ("no/such/dir/x.png", "no directory"),
    ],
)
def test_a_chart_path_that_cannot_be_written_is_a_usage_error_in_one_line(
    world: World, tmp_path: Path, chart: str, message: str
) -> None:
    path = tmp_path / chart

    code, stdout, stderr = _chart(world, path)

    assert code == 2
    assert message in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert stdout == ""
    assert not path.exists()
    assert not (tmp_path / "no").exists(), "no directory is created"


def test_a_chart_metric_without_counters_is_a_usage_error_in_one_line(
    world: World, tmp_path: Path
) -> None:
    path = tmp_path / "x.png"

    code, stdout, stderr = _chart(world, path, "--chart-metric", "nosuch")

    assert code == 2
    assert "no counters of 'nosuch'" in stderr
    assert "(metrics: conversion, exposure)" in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert stdout == ""
    assert not path.exists()
