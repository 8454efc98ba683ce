"""Has a training run reached a plateau? A test on its validation curve (``result.json``'s ``validation``).

The rule (:func:`plateau_test`): take the validations in the last ``fraction`` (a fifth) of the
run, fit a least-squares line to (iteration, validation Dice) and compute the two-sided
``1 - alpha`` t-interval of its slope (n - 2 degrees of freedom). The curve is flat -- the run
has reached its plateau -- when the slope is **not significantly positive**: the interval's
lower end is at most 0. A slope that is significantly negative also counts as flat (the run has
stopped gaining; over-fitting is for the curves to show). Fewer than ``min_points`` validations
in the window cannot be tested and do not count as a plateau. An arm trained with several seeds
is tested once on all its runs together (:func:`pooled_plateau_test`: one shared slope, one level
per run).

What the test does not say: under a schedule that decays the learning rate (nnU-Net's poly, DTC's
steps), the last fifth is flatter by construction, so a plateau means "no longer improving at
this schedule", not "a longer schedule would not do better". :class:`PlateauResult` therefore
also carries the gain of the last fifth over the fifth before it and the slope as points of Dice
per fifth of the run, which the reports print next to the verdict.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from MultiModalSegLib.errors import MultiModalSegError

__all__ = ["PlateauResult", "plateau_test", "pooled_plateau_test"]


@dataclass
class PlateauResult:
    """The outcome of :func:`plateau_test` on one validation curve.

    ``slope``, ``ci_low``, ``ci_high``: Dice per iteration over the window and its interval;
    ``gain_per_fifth``: the slope times a fifth of the run (Dice a further fifth would add at
    that rate); ``gain_over_previous``: mean Dice of the window minus that of the window before it
    (``nan`` when that one has no validation).
    """

    holds: bool
    slope: float
    ci_low: float
    ci_high: float
    n_points: int
    window_start: int
    run_length: int
    gain_per_fifth: float
    gain_over_previous: float
    reason: str

    def to_dict(self) -> dict[str, object]:
        return {key: (None if isinstance(value, float) and not math.isfinite(value) else value)
                for key, value in asdict(self).items()}


def plateau_test(iterations: Sequence[int], values: Sequence[float], *, run_length: int | None = None,
                 fraction: float = 0.2, alpha: float = 0.05, min_points: int = 3) -> PlateauResult:
    """Test whether the curve ``values`` over ``iterations`` is flat over the last ``fraction`` of the run.

    Args:
        iterations: the iteration of each validation (increasing).
        values: the validation metric at each of them (e.g. mean Dice over the validation cases);
            ``nan`` entries are dropped.
        run_length: the run's length in iterations (default: the last iteration given).
        fraction: the share of the run at its end that must be flat (0.2: the last fifth).
        alpha: 0.05 tests at the 5 % level (a 95 % interval).
        min_points: the fewest validations in the window the test accepts (at least 3, so the
            slope has an error estimate).
    """
    return pooled_plateau_test([(iterations, values)], run_length=run_length, fraction=fraction, alpha=alpha,
                               min_points=min_points)


def pooled_plateau_test(curves: Sequence[tuple[Sequence[int], Sequence[float]]], *, run_length: int | None = None,
                        fraction: float = 0.2, alpha: float = 0.05, min_points: int = 3) -> PlateauResult:
    """The plateau test on several runs of one arm (its training seeds) at once: one slope, one test.

    The runs share the slope and each keeps its own level (a least-squares fit with one intercept
    per run, i.e. every run centred on its own mean), so the test has ``n - runs - 1`` degrees of
    freedom: more power than one run alone, and one 5 % test per arm instead of one per seed (with
    three seeds each tested alone, a flat arm would fail somewhere one time in seven). With one
    run it is :func:`plateau_test`. ``min_points`` counts the window's validations of all runs, and
    at least ``runs + 2`` are needed.
    """
    from scipy import stats

    if not 0.0 < fraction <= 1.0 or not 0.0 < alpha < 1.0 or min_points < 3:
        raise MultiModalSegError("plateau_test needs 0 < fraction <= 1, 0 < alpha < 1 and min_points >= 3.")
    cleaned = []
    for iterations, values in curves:
        x = np.asarray(iterations, dtype=np.float64)
        y = np.asarray(values, dtype=np.float64)
        if x.shape != y.shape or x.ndim != 1:
            raise MultiModalSegError(
                "A validation curve needs one value per iteration (two 1-D sequences of one length).")
        keep = np.isfinite(x) & np.isfinite(y)
        cleaned.append((x[keep], y[keep]))
    if not cleaned:
        raise MultiModalSegError("The plateau test needs at least one validation curve.")
    last = max((float(x.max()) for x, _ in cleaned if x.size), default=0.0)
    length = int(run_length if run_length is not None else last)
    start = length - fraction * length
    nan = float("nan")
    window_means, previous_means = [], []
    dxs, dys = [], []
    for x, y in cleaned:
        window = x >= start - 1e-9
        previous = (x >= start - fraction * length - 1e-9) & ~window
        if window.any() and previous.any():
            window_means.append(y[window].mean())
            previous_means.append(y[previous].mean())
        if window.sum() >= 1:
            dxs.append(x[window] - x[window].mean())
            dys.append(y[window] - y[window].mean())
    gain_over_previous = float(np.mean(window_means) - np.mean(previous_means)) if window_means else nan
    n = int(sum(dx.size for dx in dxs))
    groups = len(dxs)
    needed = max(min_points, groups + 2)
    if n < needed:
        return PlateauResult(False, nan, nan, nan, n, int(math.ceil(start)), length, nan, gain_over_previous,
                             f"{n} validation(s) in the last {fraction:.0%} of the run; the test needs "
                             f"{needed}: validate more often")
    dx, dy = np.concatenate(dxs), np.concatenate(dys)
    sxx = float(np.sum(dx * dx))
    if sxx == 0.0:
        raise MultiModalSegError("The validations of the window all lie at one iteration; give distinct iterations.")
    slope = float(np.sum(dx * dy) / sxx)
    residuals = dy - slope * dx
    degrees = n - groups - 1
    standard_error = math.sqrt(float(np.sum(residuals**2)) / degrees / sxx)
    half_width = float(stats.t.ppf(1.0 - alpha / 2.0, degrees)) * standard_error
    low, high = slope - half_width, slope + half_width
    holds = low <= 0.0
    per_fifth = slope * 0.2 * length
    reason = (f"slope {100 * per_fifth:+.2f} Dice points per fifth of the run, "
              f"{round(100 * (1 - alpha))} % CI [{100 * low * 0.2 * length:+.2f}, {100 * high * 0.2 * length:+.2f}]: "
              + ("not significantly positive" if holds else "still rising"))
    return PlateauResult(holds, slope, low, high, n, int(math.ceil(start)), length, per_fifth, gain_over_previous,
                         reason)
