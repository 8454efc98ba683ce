"""Testing a paper's claim that one arm beats another: a paired bootstrap over cases and seeds, a verdict.

The data of one arm is a ``[seeds, cases]`` array (a metric of every held-out case for every
training seed); two arms are *paired* by case (the same test case) and by seed index (the i-th
training seed of each arm). The effect is the mean of the paired differences over the whole
grid, ``mean_{s, c} (a[s, c] - b[s, c])``.

Paired bootstrap (:func:`paired_bootstrap`)
-------------------------------------------
Each resample draws ``S`` seed indices and ``C`` case indices with replacement, independently
(a two-way bootstrap: the seeds and the cases are the two sources of variation the experiment
samples), and takes the mean of the differences on the drawn ``S x C`` grid. The percentile
interval of those means is the CI. With one seed it is the usual paired bootstrap over cases;
with ``second=None`` it is the bootstrap of one arm's mean (the tables' cells). ``nan`` entries
(a distance of an empty prediction) are left out of each mean.

Verdicts (:func:`comparison_verdict`, :func:`combine_verdicts`)
--------------------------------------------------------------
A comparison "A beats B" gets, in this order:

* ``untested`` when an arm is still near its floor (the caller says which: e.g. MAML tumour
  Dice under 30 %): the comparison would measure which arm leaves the floor first;
* ``unresolved`` when an arm has not reached a plateau (its validation curve still rises, so
  the difference may change with more training);
* ``reproduced`` when the CI of the effect lies entirely on the claimed side of 0,
  ``contradicted`` when it lies entirely on the other side, ``unresolved`` when it contains 0.

A claim made of several comparisons (an ordering) is ``contradicted`` when any of them is,
else ``untested`` when any is, else ``unresolved`` when any is, else ``reproduced``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from MultiModalSegLib.errors import MultiModalSegError

__all__ = [
    "CONTRADICTED",
    "REPRODUCED",
    "UNRESOLVED",
    "UNTESTED",
    "PairedDifference",
    "Verdict",
    "combine_verdicts",
    "comparison_verdict",
    "paired_bootstrap",
]

REPRODUCED = "reproduced"
CONTRADICTED = "contradicted"
UNRESOLVED = "unresolved"
UNTESTED = "untested"


@dataclass
class PairedDifference:
    """The effect ``mean(first - second)`` over seeds and cases with its percentile bootstrap CI.

    ``wins``: cases whose difference, averaged over the seeds, is above 0 (out of ``n_cases``).
    ``resampled``: the bootstrap means (kept for tests and plots; not written to reports).
    """

    mean: float
    ci_low: float
    ci_high: float
    n_seeds: int
    n_cases: int
    wins: int
    resamples: int
    alpha: float
    resampled: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)

    def to_dict(self) -> dict[str, float | int | None]:
        def plain(value: float) -> float | None:
            return float(value) if math.isfinite(value) else None

        return {"mean": plain(self.mean), "ci_low": plain(self.ci_low), "ci_high": plain(self.ci_high),
                "n_seeds": self.n_seeds, "n_cases": self.n_cases, "wins": self.wins, "resamples": self.resamples,
                "alpha": self.alpha}


def _as_grid(values: np.ndarray | Sequence[Sequence[float]], name: str) -> np.ndarray:
    grid = np.asarray(values, dtype=np.float64)
    if grid.ndim == 1:
        grid = grid[None, :]
    if grid.ndim != 2 or grid.shape[0] < 1 or grid.shape[1] < 1:
        raise MultiModalSegError(f"{name} must be a [seeds, cases] array with at least one of each, not "
                                 f"shape {grid.shape}.")
    return grid


def paired_bootstrap(first: np.ndarray | Sequence[Sequence[float]],
                     second: np.ndarray | Sequence[Sequence[float]] | None = None, *, resamples: int = 10_000,
                     seed: int = 0, alpha: float = 0.05) -> PairedDifference:
    """Mean of ``first - second`` (or of ``first``) over a ``[seeds, cases]`` grid, with a two-way bootstrap CI.

    Args:
        first, second: ``[seeds, cases]`` arrays (a 1-D array is one seed); the same shape.
        resamples: bootstrap draws; ``seed`` seeds ``numpy.random.default_rng`` (reproducible);
        alpha: 0.05 gives the 95 % interval (``alpha/2`` and ``1 - alpha/2`` quantiles).

    Returns:
        a :class:`PairedDifference`; its mean and CI are ``nan`` when every entry is ``nan``.
    """
    if resamples < 1:
        raise MultiModalSegError(f"The number of bootstrap resamples must be at least 1, got {resamples}.")
    if not 0.0 < alpha < 1.0:
        raise MultiModalSegError(f"alpha must lie between 0 and 1 (0.05 for a 95 % interval), got {alpha}.")
    difference = _as_grid(first, "first")
    if second is not None:
        other = _as_grid(second, "second")
        if other.shape != difference.shape:
            raise MultiModalSegError(
                f"The two arms must have the same seeds and cases to be paired; got {difference.shape} and "
                f"{other.shape} ([seeds, cases]).")
        difference = difference - other
    seeds, cases = difference.shape
    finite = np.isfinite(difference)
    if not finite.any():
        nan = float("nan")
        return PairedDifference(nan, nan, nan, seeds, cases, 0, resamples, alpha)
    values = np.where(finite, difference, 0.0)
    weights = finite.astype(np.float64)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples, dtype=np.float64)
    chunk = max(1, 2_000_000 // (seeds * cases))  # bound the index arrays' memory
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        seed_draw = rng.integers(0, seeds, size=(stop - start, seeds))
        case_draw = rng.integers(0, cases, size=(stop - start, cases))
        rows = seed_draw[:, :, None]
        columns = case_draw[:, None, :]
        total = values[rows, columns].sum(axis=(1, 2))
        count = weights[rows, columns].sum(axis=(1, 2))
        with np.errstate(invalid="ignore", divide="ignore"):
            means[start:stop] = total / count
    drawn = means[np.isfinite(means)]
    low, high = (np.quantile(drawn, [alpha / 2.0, 1.0 - alpha / 2.0]) if drawn.size
                 else (float("nan"), float("nan")))
    with np.errstate(invalid="ignore"):
        per_case = np.nanmean(np.where(finite, difference, np.nan), axis=0)
    return PairedDifference(mean=float(values.sum() / weights.sum()), ci_low=float(low), ci_high=float(high),
                            n_seeds=seeds, n_cases=cases, wins=int(np.sum(per_case > 0)), resamples=resamples,
                            alpha=alpha, resampled=means)


@dataclass(frozen=True)
class Verdict:
    """One of :data:`REPRODUCED`, :data:`CONTRADICTED`, :data:`UNRESOLVED`, :data:`UNTESTED`, and why."""

    word: str
    reason: str


def comparison_verdict(difference: PairedDifference, *, direction: int = 1, floor_arms: Iterable[str] = (),
                       unconverged_arms: Iterable[str] = ()) -> Verdict:
    """The verdict on "first beats second" (``direction=1``) or "second beats first" (``-1``).

    ``floor_arms``: names of the compared arms still near their floor; ``unconverged_arms``:
    names of those whose validation curve did not reach a plateau. See the module docstring.
    """
    if direction not in (1, -1):
        raise MultiModalSegError(f"direction must be 1 or -1, not {direction}.")
    floor = list(dict.fromkeys(floor_arms))
    if floor:
        return Verdict(UNTESTED, f"{', '.join(floor)} still near the floor: the difference says which arm leaves "
                                 "the floor first, not which method is better")
    if not (math.isfinite(difference.ci_low) and math.isfinite(difference.ci_high)):
        return Verdict(UNRESOLVED, "no paired cases to compare")
    unconverged = list(dict.fromkeys(unconverged_arms))
    if unconverged:
        return Verdict(UNRESOLVED, f"{', '.join(unconverged)} did not reach a plateau, so the difference may still "
                                   "change with training")
    low, high = sorted((direction * difference.ci_low, direction * difference.ci_high))
    percent = round(100 * (1 - difference.alpha))
    if low > 0:
        return Verdict(REPRODUCED, f"the {percent} % CI lies on the claimed side of 0")
    if high < 0:
        return Verdict(CONTRADICTED, f"the {percent} % CI lies on the other side of 0")
    return Verdict(UNRESOLVED, f"the {percent} % CI contains 0")


def combine_verdicts(verdicts: Sequence[Verdict]) -> str:
    """The verdict word of a claim made of several comparisons (see the module docstring)."""
    if not verdicts:
        raise MultiModalSegError("A claim needs at least one comparison to have a verdict.")
    words = {verdict.word for verdict in verdicts}
    for word in (CONTRADICTED, UNTESTED, UNRESOLVED):
        if word in words:
            return word
    return REPRODUCED
