"""evaluation/claims.py: the paired bootstrap over seeds and cases and the verdict rules, on examples worked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from MultiModalSegLib.errors import MultiModalSegError
from MultiModalSegLib.evaluation.claims import (
    CONTRADICTED,
    REPRODUCED,
    UNRESOLVED,
    UNTESTED,
    PairedDifference,
    Verdict,
    combine_verdicts,
    comparison_verdict,
    paired_bootstrap,
)


def test_constant_differences_have_a_zero_width_interval():
    first = np.array([[0.6, 0.7, 0.8], [0.5, 0.9, 0.4]])
    result = paired_bootstrap(first, first - 0.1, resamples=500)
    assert result.mean == pytest.approx(0.1) and result.ci_low == pytest.approx(0.1)
    assert result.ci_high == pytest.approx(0.1)
    assert (result.n_seeds, result.n_cases, result.wins) == (2, 3, 3)


def test_two_seeds_by_two_cases_resample_both_ways():
    # differences d = [[0, 0], [0, 1]] (seeds x cases). A resample draws k copies of seed 1 and m copies
    # of case 1 (each Binomial(2, 1/2)); its mean is k * m / 4. So, by hand:
    # P(0) = 1 - (3/4)^2 = 7/16, P(1/4) = P(k=1, m=1) = 4/16, P(1/2) = 2 * (1/2)(1/4) = 4/16, P(1) = 1/16.
    d = np.array([[0.0, 0.0], [0.0, 1.0]])
    result = paired_bootstrap(d, np.zeros_like(d), resamples=40_000, seed=3)
    assert result.mean == pytest.approx(0.25)
    for value, probability in ((0.0, 7 / 16), (0.25, 4 / 16), (0.5, 4 / 16), (1.0, 1 / 16)):
        assert np.mean(np.isclose(result.resampled, value)) == pytest.approx(probability, abs=0.01)
    # P(<= 0) = 7/16 > 2.5 % and P(<= 1/2) = 15/16 < 97.5 %: the 95 % interval is [0, 1]
    assert (result.ci_low, result.ci_high) == (0.0, 1.0)
    assert result.wins == 1  # case 1's seed mean 0.5 > 0; case 0's is 0


def test_one_seed_is_the_paired_bootstrap_over_cases():
    # d = [0, 1]: resampled means 0, 1/2, 1 with probabilities 1/4, 1/2, 1/4; 95 % interval [0, 1]
    result = paired_bootstrap([0.0, 1.0], resamples=20_000, seed=1)
    assert (result.n_seeds, result.n_cases) == (1, 2)
    assert np.mean(np.isclose(result.resampled, 0.5)) == pytest.approx(0.5, abs=0.01)
    assert (result.mean, result.ci_low, result.ci_high) == (0.5, 0.0, 1.0)


def test_missing_values_are_left_out_of_each_mean():
    result = paired_bootstrap([[1.0, np.nan], [np.nan, 1.0]], resamples=200)
    assert (result.mean, result.ci_low, result.ci_high) == (1.0, 1.0, 1.0)
    empty = paired_bootstrap([[np.nan, np.nan]], resamples=10)
    assert np.isnan(empty.mean) and np.isnan(empty.ci_low)


def test_unpaired_shapes_are_refused():
    with pytest.raises(MultiModalSegError, match="paired"):
        paired_bootstrap(np.zeros((3, 20)), np.zeros((3, 19)))
    with pytest.raises(MultiModalSegError, match="resamples"):
        paired_bootstrap(np.zeros((1, 2)), resamples=0)


def difference(low: float, high: float) -> PairedDifference:
    return PairedDifference((low + high) / 2, low, high, 3, 20, 10, 1000, 0.05)


def test_verdict_follows_the_interval_and_the_claimed_direction():
    assert comparison_verdict(difference(0.01, 0.05)).word == REPRODUCED
    assert comparison_verdict(difference(0.01, 0.05), direction=-1).word == CONTRADICTED
    assert comparison_verdict(difference(-0.05, -0.01)).word == CONTRADICTED
    assert comparison_verdict(difference(-0.05, -0.01), direction=-1).word == REPRODUCED
    assert comparison_verdict(difference(-0.01, 0.05)).word == UNRESOLVED
    assert comparison_verdict(difference(0.0, 0.05)).word == UNRESOLVED  # touching 0 is not "entirely above"


def test_floor_and_missing_plateau_come_before_the_interval():
    floor = comparison_verdict(difference(0.01, 0.05), floor_arms=["MS+MA"], unconverged_arms=["MAML"])
    assert floor.word == UNTESTED and "MS+MA" in floor.reason
    rising = comparison_verdict(difference(0.01, 0.05), unconverged_arms=["MAML", "MAML"])
    assert rising.word == UNRESOLVED and rising.reason.startswith("MAML did not reach a plateau")
    with pytest.raises(MultiModalSegError):
        comparison_verdict(difference(0.01, 0.05), direction=0)


def test_a_claim_of_several_comparisons():
    reproduced, unresolved = Verdict(REPRODUCED, ""), Verdict(UNRESOLVED, "")
    untested, contradicted = Verdict(UNTESTED, ""), Verdict(CONTRADICTED, "")
    assert combine_verdicts([reproduced, reproduced]) == REPRODUCED
    assert combine_verdicts([reproduced, unresolved]) == UNRESOLVED
    assert combine_verdicts([unresolved, untested, reproduced]) == UNTESTED
    assert combine_verdicts([untested, contradicted]) == CONTRADICTED
    with pytest.raises(MultiModalSegError):
        combine_verdicts([])
