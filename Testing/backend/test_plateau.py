"""training/plateau.py: the flat-last-fifth test on validation curves, on examples worked by hand."""

from __future__ import annotations

import math

import pytest

from MultiModalSegLib.errors import MultiModalSegError
from MultiModalSegLib.training.plateau import plateau_test, pooled_plateau_test


def test_noisy_window_whose_slope_is_not_significant():
    # window (last fifth of 100 iterations): x = 85, 90, 95, 100, y = 0, .02, .01, .03; one earlier point at 70.
    # In units of 5 iterations and 0.01 Dice: x' = 0..3, y' = 0, 2, 1, 3 -> slope 4/5 = 0.8, residuals
    # -.3, .9, -.9, .3, s^2 = 1.8 / 2, SE = sqrt(0.9 / 5) = 0.42426; t(0.975, 2) = 4.30265.
    # Back in Dice per iteration: slope 0.0016, half-width 4.30265 * 0.42426 * 0.01 / 5 = 0.0036509.
    result = plateau_test([10, 40, 70, 85, 90, 95, 100], [0.0, 0.0, 0.0, 0.0, 0.02, 0.01, 0.03])
    assert result.n_points == 4 and result.window_start == 80 and result.run_length == 100
    assert result.slope == pytest.approx(0.0016)
    assert result.ci_low == pytest.approx(0.0016 - 0.0036509, abs=1e-6)
    assert result.ci_high == pytest.approx(0.0016 + 0.0036509, abs=1e-6)
    assert result.holds and "not significantly positive" in result.reason
    assert result.gain_per_fifth == pytest.approx(0.032)  # 0.0016 x 20 iterations
    assert result.gain_over_previous == pytest.approx(0.015)  # mean of the window 0.015 - the point at 70 (0)


def test_a_curve_still_rising_in_a_straight_line_is_no_plateau():
    result = plateau_test([20, 50, 80, 90, 100], [0.1, 0.3, 0.5, 0.6, 0.7])
    assert result.slope == pytest.approx(0.01) and result.ci_low == pytest.approx(0.01)
    assert not result.holds and "still rising" in result.reason


def test_flat_and_falling_curves_are_plateaus():
    assert plateau_test([80, 90, 100], [0.7, 0.7, 0.7]).holds
    falling = plateau_test([80, 90, 100], [0.8, 0.7, 0.6])
    assert falling.holds and falling.slope == pytest.approx(-0.01)


def test_too_few_validations_in_the_window_cannot_show_a_plateau():
    result = plateau_test([25, 50, 75, 100], [0.1, 0.2, 0.3, 0.3])
    assert not result.holds and result.n_points == 1 and "validate more often" in result.reason
    assert math.isnan(result.slope)
    # the run length decides the window, not the last validation: 3 points at 60-80 of 100 are outside it
    assert not plateau_test([60, 70, 80], [0.5, 0.5, 0.5], run_length=100).holds
    with pytest.raises(MultiModalSegError):
        plateau_test([1, 2], [0.5])


def test_pooled_seeds_share_one_slope_and_gain_power():
    # two runs with the window of the first example, the second 0.01 higher: the shared slope is the same
    # 0.0016, but SSR 2 x 1.8 and Sxx 2 x 5 (in the example's units) over 8 - 2 - 1 = 5 degrees of freedom:
    # SE = sqrt(3.6 / 5 / 10) = 0.26833, t(0.975, 5) = 2.57058, half-width 0.68976 -> CI [0.1102, 1.4898] x 0.002
    first = ([85, 90, 95, 100], [0.0, 0.02, 0.01, 0.03])
    second = ([85, 90, 95, 100], [0.01, 0.03, 0.02, 0.04])
    result = pooled_plateau_test([first, second], run_length=100)
    assert result.slope == pytest.approx(0.0016) and result.n_points == 8
    assert result.ci_low == pytest.approx(0.1102 * 0.002, abs=1e-6)
    assert result.ci_high == pytest.approx(1.4898 * 0.002, abs=1e-6)
    assert not result.holds  # each run alone is not significant (first test above); together they are
    assert pooled_plateau_test([first], run_length=100).ci_low == plateau_test(*first, run_length=100).ci_low
    # levels do not leak into the slope: a flat run far above a flat run is still flat
    flat = pooled_plateau_test([([80, 90, 100], [0.2, 0.2, 0.2]), ([80, 90, 100], [0.9, 0.9, 0.9])])
    assert flat.holds and flat.slope == 0.0
