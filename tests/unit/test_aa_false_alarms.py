"""A/A experiments through the report path: false alarms at their nominal rates.

Users come back on several of the 14 days (see tests/aa_simulation.py). Summing the windows'
users counted them once per day and raised sample-ratio alarms in about 18% of such runs
(nominal 0.1%) and A/A difference intervals excluding 0 in about 17% (nominal 5%); with
distinct users over the range both are back at their nominal rates.

The bounds leave room for sampling error: each is a binomial tail of about 0.001 or less at the
nominal rate, while the rates of a broken report are far beyond them.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import kstest

from domain.metrics import Granularity
from tests.aa_simulation import EXPERIMENT_ID, AaSpec, aa_store, false_alarms

RUNS = 400
SEED = 2026


def test_users_of_the_simulation_come_back_on_several_days() -> None:
    # What makes the test bite: counted per window, users would be counted several times.
    store = aa_store(AaSpec(), np.random.default_rng(SEED))

    days = [
        s
        for s in store.snapshots(EXPERIMENT_ID, Granularity.DAY, user_sets=True)
        if s.key.metric == "exposure"
    ]
    user_days = sum(s.unique_users for s in days)
    distinct = len(set().union(*(s.user_ids or () for s in days)))

    assert len({s.key.window_start for s in days}) == 14
    assert user_days > 2.5 * distinct


def test_a_a_false_alarms_of_the_sample_ratio_check_and_the_intervals_are_nominal() -> None:
    alarms = false_alarms(RUNS, SEED)

    # Sample-ratio check at p < 0.001: 0.4 alarms expected in 400 runs; P(4 or more) < 0.001.
    assert alarms.sample_ratio_alarms <= 3, alarms
    # At p < 0.05, and for the 95% difference interval: 20 expected, sd 4.4; [8, 34] is
    # beyond 2.9 standard deviations each side.
    assert 8 <= alarms.sample_ratio_p_below_5_percent <= 34, alarms
    assert 8 <= alarms.differences_excluding_zero <= 34, alarms
    # And the p-values as a whole are uniform, as they are when the test is right.
    assert kstest(alarms.sample_ratio_p_values, "uniform").pvalue > 0.001, alarms
