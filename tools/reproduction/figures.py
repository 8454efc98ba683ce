"""The report's pictures: every arm's validation curves and per-case box plots, as PNGs (matplotlib, Agg).

* :func:`learning_curves`: one panel per arm, one line per training seed (validation Dice of the
  claim's structure against the iteration), the last fifth of the run shaded (where the plateau
  test looks) and the floor as a dashed line;
* :func:`case_boxes`: one box per evaluation of the held-out test cases' Dice (each case's mean
  over the seeds), the cases as dots, the floor as a dashed line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def learning_curves(curves: dict[str, list], titles: dict[str, str], path: Path, *, label: str, floor: float,
                    heading: str, plateaus: dict[str, bool] | None = None) -> Path:
    """``curves``: arm key -> its :class:`~reproduction.results.Curve` per seed; writes ``path``.

    ``plateaus``: arm key -> whether the arm passed the plateau test (said in its panel's title).
    """
    plt = _pyplot()
    keys = list(curves)
    columns = min(3, max(1, len(keys)))
    rows = math.ceil(len(keys) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.0 * rows), squeeze=False, sharey=True)
    for index, key in enumerate(keys):
        axis = axes[index // columns][index % columns]
        length = max((curve.run_length for curve in curves[key]), default=0)
        if length:
            axis.axvspan(0.8 * length, length, color="0.92", zorder=0)
        for curve in curves[key]:
            axis.plot(curve.iterations, 100 * np.asarray(curve.values), marker=".", linewidth=1.2,
                      label=f"seed {curve.seed}")
        axis.axhline(100 * floor, color="0.4", linestyle="--", linewidth=0.8)
        verdict = "" if plateaus is None else (" (plateau)" if plateaus.get(key) else " (no plateau)")
        axis.set_title(titles.get(key, key) + verdict, fontsize=9)
        axis.set_xlabel("iteration", fontsize=8)
        axis.set_ylim(0, 100)
        axis.tick_params(labelsize=7)
        axis.legend(fontsize=7, loc="lower right")
        if index % columns == 0:
            axis.set_ylabel(f"validation {label} Dice [%]", fontsize=8)
    for index in range(len(keys), rows * columns):
        axes[index // columns][index % columns].axis("off")
    figure.suptitle(heading, fontsize=10)
    return _save(plt, figure, path)


def case_boxes(values: dict[str, np.ndarray], titles: dict[str, str], path: Path, *, label: str, floor: float,
               heading: str) -> Path:
    """``values``: evaluation key -> per-case Dice (mean over seeds, fractions); writes ``path``."""
    plt = _pyplot()
    keys = list(values)
    figure, axis = plt.subplots(figsize=(max(5.0, 1.25 * len(keys) + 1.5), 3.8))
    data = [100 * np.asarray(values[key])[np.isfinite(values[key])] for key in keys]
    axis.boxplot(data, showfliers=False, widths=0.55)
    rng = np.random.default_rng(0)
    for position, points in enumerate(data, start=1):
        axis.scatter(position + rng.uniform(-0.15, 0.15, len(points)), points, s=9, alpha=0.6, color="tab:blue",
                     zorder=3)
    axis.axhline(100 * floor, color="0.4", linestyle="--", linewidth=0.8)
    axis.set_xticks(range(1, len(keys) + 1), [_wrap(titles.get(key, key)) for key in keys], fontsize=7)
    axis.set_ylabel(f"test {label} Dice [%] (per case, mean over seeds)", fontsize=8)
    axis.set_ylim(0, 100)
    axis.set_title(heading, fontsize=10)
    return _save(plt, figure, path)


def _save(plt: object, figure: object, path: Path) -> Path:
    figure.tight_layout()  # type: ignore[attr-defined]
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)  # type: ignore[attr-defined]
    plt.close(figure)  # type: ignore[attr-defined]
    return path


def _wrap(text: str, width: int = 16) -> str:
    words: Sequence[str] = text.split()
    lines, line = [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    return "\n".join(lines)
