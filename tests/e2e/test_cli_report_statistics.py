"""`report`'s statistics through the CLI against moto's server, for users who come back on
several days: distinct users over any range, rates of exposed users, the chosen control, the
sample-ratio check first; every figure checked against statsmodels and SciPy."""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from scipy.stats import chisquare
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint
from typer.testing import Result

from operations.local_aws import LocalAws
from tests.e2e.cli_support import environment_named, provision, run
from tests.e2e.report_world import (
    ExperimentData,
    Happened,
    experiment,
    put_through_the_cli,
    returning_users,
)

FIRST_DAY = datetime(2026, 11, 2, tzinfo=UTC)
DAYS = 14
RANGE = ["--start", "2026-11-02", "--end", "2026-11-16"]
VARIANTS = ("control", "treatment")


def _broken_split() -> ExperimentData:
    """Configured 1:1, but three users in four see control: a sample ratio mismatch."""
    chosen = experiment("exp-broken", {"control": 1, "treatment": 1}, "Broken split")
    variant_of = {f"broken-user-{i:03d}": "control" if i % 4 else "treatment" for i in range(80)}
    events = [
        Happened(user_id, "exposure", FIRST_DAY + timedelta(days=i % DAYS, hours=12))
        for i, user_id in enumerate(variant_of)
    ]
    return ExperimentData(chosen, variant_of, tuple(events))


World = tuple[dict[str, str], str, ExperimentData]


@pytest.fixture(scope="module")
def world(moto_server: LocalAws, tmp_path_factory: pytest.TempPathFactory) -> World:
    endpoint_url = moto_server.endpoint_url
    name = f"t{uuid.uuid4().hex[:12]}"
    env = provision(environment_named(name), endpoint_url, f"{name}-dlq")
    returning = returning_users(
        experiment("exp-returning", {"control": 1, "treatment": 1}, "Returning users"),
        users=80,
        first_day=FIRST_DAY,
        days=DAYS,
        rng=random.Random(12),
        conversion={"control": 0.15, "treatment": 0.3},
    )
    put_through_the_cli(
        [returning, _broken_split()],
        env,
        endpoint_url,
        tmp_path_factory.mktemp("report-statistics"),
        assigned_at=FIRST_DAY - timedelta(hours=1),
    )
    return env, endpoint_url, returning


@pytest.fixture(scope="module")
def whole_range(world: World) -> dict[str, Any]:
    """The daily report over the 14 days, in JSON."""
    return _report(world, "-e", "exp-returning", "--window", "day", *RANGE)


@pytest.fixture(scope="module")
def tables(world: World) -> dict[str, Result]:
    """The table of the broken split and of the sound one."""
    env, endpoint_url, _ = world
    return {
        e: run(["report", "-e", e, *RANGE], env, endpoint_url)
        for e in ("exp-broken", "exp-returning")
    }


def _report(world: World, *args: str) -> dict[str, Any]:
    env, endpoint_url, _ = world
    result = run(["report", *args, "--format", "json"], env, endpoint_url)
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def _totals(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(t["variant_id"], t["metric"]): t for t in document["summary"]["totals"]}


def _rates(document: dict[str, Any], metric: str = "conversion") -> dict[str, dict[str, Any]]:
    return {r["variant_id"]: r for r in document["summary"]["rates"] if r["metric"] == metric}


def test_unique_and_exposed_users_are_distinct_users_over_the_whole_range(
    world: World, whole_range: dict[str, Any]
) -> None:
    data = world[2]
    document = whole_range

    totals = _totals(document)
    for variant_id in VARIANTS:
        for metric in ("exposure", "conversion"):
            assert totals[(variant_id, metric)]["unique_users"] == len(
                data.users(variant_id, metric)
            )
            assert totals[(variant_id, metric)]["event_count"] == sum(
                1
                for e in data.events
                if e.metric == metric and data.variant_of[e.user_id] == variant_id
            )
    # What makes it bite: the daily counters' users add up to far more than the distinct users.
    user_days = sum(w["unique_users"] for w in document["windows"] if w["metric"] == "exposure")
    distinct = sum(totals[(v, "exposure")]["unique_users"] for v in VARIANTS)
    assert user_days > 3 * distinct
    assert document["summary"]["unique_users_exact"] is True


def test_distinct_users_hold_for_any_range_and_window(world: World) -> None:
    data = world[2]
    start, end = FIRST_DAY + timedelta(days=3, hours=5), FIRST_DAY + timedelta(days=9)

    document = _report(
        world,
        *("-e", "exp-returning", "--window", "hour"),
        *("--start", start.isoformat(), "--end", end.isoformat()),
    )

    totals = _totals(document)
    for variant_id in VARIANTS:
        exposed = data.users(variant_id, "exposure", start, end)
        converted = data.users(variant_id, "conversion", start, end)
        assert totals[(variant_id, "exposure")]["unique_users"] == len(exposed)
        assert totals[(variant_id, "conversion")]["unique_users"] == len(converted)
        rate = _rates(document)[variant_id]
        assert (rate["users"], rate["exposed_users"]) == (len(converted & exposed), len(exposed))


def test_the_rate_counts_exposed_users_who_converted_with_statsmodels_intervals(
    world: World, whole_range: dict[str, Any]
) -> None:
    data = world[2]
    document = whole_range

    rates = _rates(document)
    counts = {}
    for variant_id in VARIANTS:
        exposed = data.users(variant_id, "exposure")
        converted = data.users(variant_id, "conversion")
        rate = rates[variant_id]
        assert rate["users"] == len(converted & exposed)
        assert rate["exposed_users"] == len(exposed)
        assert rate["unexposed_users"] == len(converted - exposed)
        counts[variant_id] = (len(converted & exposed), len(exposed))
        low, high = proportion_confint(*counts[variant_id], alpha=0.05, method="wilson")
        assert rate["rate"] == pytest.approx(counts[variant_id][0] / counts[variant_id][1])
        assert (rate["rate_ci_low"], rate["rate_ci_high"]) == pytest.approx((low, high), abs=1e-12)
    assert sum(rate["unexposed_users"] for rate in rates.values()) > 0  # left out, not counted
    treatment = rates["treatment"]
    low, high = confint_proportions_2indep(
        *counts["treatment"], *counts["control"], method="newcomb", compare="diff"
    )
    assert (treatment["difference_ci_low"], treatment["difference_ci_high"]) == pytest.approx(
        (low, high), abs=1e-12
    )
    assert treatment["difference"] == pytest.approx(
        counts["treatment"][0] / counts["treatment"][1]
        - counts["control"][0] / counts["control"][1]
    )
    srm = document["summary"]["sample_ratio"]
    reference = chisquare([counts["control"][1], counts["treatment"][1]])
    assert srm["statistic"] == pytest.approx(float(reference.statistic), rel=1e-9)
    assert srm["p_value"] == pytest.approx(float(reference.pvalue), rel=1e-9)
    assert srm["observed"] == {v: counts[v][1] for v in VARIANTS}


def test_the_control_is_the_variant_named_with_control(
    world: World, whole_range: dict[str, Any]
) -> None:
    by_default = _rates(whole_range)

    against_treatment = _report(world, "-e", "exp-returning", *RANGE, "--control", "treatment")

    assert against_treatment["summary"]["control_variant"] == "treatment"
    rates = _rates(against_treatment)
    assert rates["treatment"]["difference"] is None
    assert rates["control"]["difference"] == pytest.approx(-by_default["treatment"]["difference"])
    low, high = confint_proportions_2indep(
        rates["control"]["users"],
        rates["control"]["exposed_users"],
        rates["treatment"]["users"],
        rates["treatment"]["exposed_users"],
        method="newcomb",
        compare="diff",
    )
    assert (rates["control"]["difference_ci_low"], rates["control"]["difference_ci_high"]) == (
        pytest.approx((low, high), abs=1e-12)
    )
    assert rates["control"]["lift"] == pytest.approx(
        rates["control"]["difference"] / rates["treatment"]["rate"]
    )


def test_a_control_that_is_no_variant_is_a_usage_error_in_one_line(world: World) -> None:
    env, endpoint_url, _ = world

    result = run(["report", "-e", "exp-returning", "--control", "nosuch"], env, endpoint_url)

    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "no variant 'nosuch'" in result.stderr
    assert "control, treatment" in result.stderr
    assert result.stdout == ""


def test_the_sample_ratio_check_comes_first_and_a_mismatch_marks_every_result(
    world: World, tables: dict[str, Result]
) -> None:
    env, endpoint_url, _ = world
    broken, sound = tables["exp-broken"], tables["exp-returning"]

    gated = run(["report", "-e", "exp-broken", "--fail-on-srm", *RANGE], env, endpoint_url)

    assert broken.exit_code == 0, broken.output
    lines = broken.stdout.splitlines()
    assert lines[0].startswith("Experiment exp-broken - Broken split")
    assert lines[2].startswith("SAMPLE RATIO MISMATCH: p = ")
    assert "'control': 60, 'treatment': 20" in lines[3]
    titles = [line for line in lines if line.startswith(("Counters per", "Exposed users who"))]
    assert len(titles) == 2
    assert all(title.endswith("SUSPECT: sample ratio mismatch") for title in titles)
    assert lines[-1].startswith("SAMPLE RATIO MISMATCH: the results above are suspect")
    assert sound.exit_code == 0, sound.output
    sound_lines = sound.stdout.splitlines()
    assert sound_lines[2].startswith("sample ratio: ok (p = ")
    assert "SUSPECT" not in sound.stdout
    assert gated.exit_code == 1


def test_the_table_says_that_the_intervals_are_fixed_horizon(tables: dict[str, Result]) -> None:
    result = tables["exp-returning"]

    assert result.exit_code == 0, result.output
    assert "intervals are fixed-horizon 95% intervals" in result.stdout
    assert "no correction for peeking" in result.stdout
    assert result.stdout.index("Exposed users who") < result.stdout.index("fixed-horizon")
