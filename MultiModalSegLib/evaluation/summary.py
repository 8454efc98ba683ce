"""Summaries of per-case metrics: mean ± std, a bootstrap 95 % CI, and the papers' tables.

Which cases a region's statistics use
-------------------------------------
* Every metric of a region is averaged over the cases whose **reference has the region**
  (a case without tumour in its label map says nothing about tumour segmentation, and
  ``dice`` of two empty masks is 1.0, which would reward it). Those cases are ``n_present``;
  the others are counted (``n_reference_empty``) and, when the model predicted the region
  there anyway, reported as ``n_false_positive``. Those where it rightly predicted nothing
  (``n_both_empty``) have Dice 1.0 by convention in ``per_case.csv``; the summary says how many,
  so a per-case 1.0 never passes for a segmentation.
* Distances (ASSD, HD95, ASD) are undefined when the prediction is empty (``nan``); such a
  case has Dice 0 and is left out of the distance statistics only (``n_missed``). Each
  metric carries its own ``n``.

Statistics
----------
* ``mean`` and ``std``: the sample mean and the sample standard deviation (``ddof=1``, the
  usual "mean ± SD" of a results table; ``nan`` for a single case).
* ``ci_low``/``ci_high``: a percentile bootstrap confidence interval of the **mean over
  cases**: ``resamples`` draws of n cases with replacement from a
  ``numpy.random.default_rng(seed)``, the ``alpha/2`` and ``1 - alpha/2`` quantiles of the
  resampled means. A fixed seed makes the report reproducible bit for bit.

Tables
------
:func:`maml_table` is MAML Table 1's layout (Dice [%] and ASSD [voxel] per structure, one
row per method); :func:`dtc_table` is DTC Tables 1-2's (Dice [%], Jaccard [%], 95HD
[voxel], ASD [voxel]). Both take several ``(method name, summary)`` pairs, so the
``make reproduce`` scripts put the arms of a comparison in one table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from MultiModalSegLib.errors import MultiModalSegError
from MultiModalSegLib.evaluation.case_metrics import FLOAT_METRICS, CaseMetrics, Region

__all__ = [
    "MetricSummary",
    "RegionSummary",
    "both_empty_sentences",
    "bootstrap_ci",
    "describe",
    "detail_table",
    "dtc_table",
    "maml_table",
    "summarize",
]

METRIC_TITLES: dict[str, tuple[str, float]] = {
    "dice": ("Dice [%]", 100.0),
    "jaccard": ("Jaccard [%]", 100.0),
    "assd_voxel": ("ASSD [voxel]", 1.0),
    "hd95_voxel": ("95HD [voxel]", 1.0),
    "asd_voxel": ("ASD [voxel]", 1.0),
    "assd_mm": ("ASSD [mm]", 1.0),
    "hd95_mm": ("95HD [mm]", 1.0),
    "asd_mm": ("ASD [mm]", 1.0),
    "predicted_ml": ("predicted volume [ml]", 1.0),
    "reference_ml": ("reference volume [ml]", 1.0),
}
"""Column title and display scale of each metric (Dice and Jaccard are stored as fractions)."""


def bootstrap_ci(values: Sequence[float] | np.ndarray, n: int = 1000, seed: int = 0,
                 alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap ``(low, high)`` confidence interval of the mean of ``values``.

    Args:
        values: one number per case; ``nan`` entries are dropped.
        n: number of bootstrap resamples (each draws ``len(values)`` values with replacement).
        seed: seed of ``numpy.random.default_rng``; the same inputs give the same interval.
        alpha: 0.05 gives the 95 % interval (the ``alpha/2`` and ``1 - alpha/2`` quantiles).

    Returns:
        ``(nan, nan)`` without values, ``(v, v)`` for a single value, else the interval.
    """
    if n < 1:
        raise MultiModalSegError(f"The number of bootstrap resamples must be at least 1, got {n}.")
    if not 0.0 < alpha < 1.0:
        raise MultiModalSegError(f"alpha must lie between 0 and 1 (0.05 for a 95 % interval), got {alpha}.")
    data = np.asarray(values, dtype=np.float64).ravel()
    data = data[np.isfinite(data)]
    if data.size == 0:
        return float("nan"), float("nan")
    if data.size == 1:
        return float(data[0]), float(data[0])
    rng = np.random.default_rng(seed)
    means = np.empty(n, dtype=np.float64)
    chunk = max(1, 2_000_000 // data.size)  # bound the index array's memory for large case counts
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        means[start:stop] = data[rng.integers(0, data.size, size=(stop - start, data.size))].mean(axis=1)
    low, high = np.quantile(means, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


@dataclass
class MetricSummary:
    """Mean ± sample std, bootstrap CI of the mean, and the number of cases behind them."""

    mean: float
    std: float
    ci_low: float
    ci_high: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {key: (None if isinstance(value, float) and not math.isfinite(value) else value)
                for key, value in self.__dict__.items()}


def describe(values: Sequence[float] | np.ndarray, resamples: int = 1000, seed: int = 0,
             alpha: float = 0.05) -> MetricSummary:
    """Summarise one metric over cases (``nan`` entries are dropped first)."""
    data = np.asarray(values, dtype=np.float64).ravel()
    data = data[np.isfinite(data)]
    if data.size == 0:
        nan = float("nan")
        return MetricSummary(nan, nan, nan, nan, 0)
    std = float(np.std(data, ddof=1)) if data.size > 1 else float("nan")
    low, high = bootstrap_ci(data, n=resamples, seed=seed, alpha=alpha)
    return MetricSummary(float(np.mean(data)), std, low, high, int(data.size))


@dataclass
class RegionSummary:
    """Statistics of one label or region over the cases (see the module docstring for who counts)."""

    name: str
    kind: str
    values: tuple[int, ...]
    n_cases: int
    n_present: int
    n_reference_empty: int
    n_false_positive: int
    n_missed: int
    metrics: dict[str, MetricSummary] = field(default_factory=dict)
    n_both_empty: int = 0
    """Cases with neither reference nor prediction: Dice 1.0 by convention, not in the means."""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "values": list(self.values), "n_cases": self.n_cases,
                "n_present": self.n_present, "n_reference_empty": self.n_reference_empty,
                "n_false_positive": self.n_false_positive, "n_both_empty": self.n_both_empty,
                "n_missed": self.n_missed,
                "metrics": {name: summary.to_dict() for name, summary in self.metrics.items()}}


def summarize(rows: Sequence[CaseMetrics], regions: Sequence[Region], resamples: int = 1000, seed: int = 0,
              alpha: float = 0.05) -> list[RegionSummary]:
    """Per region: every metric of :data:`FLOAT_METRICS` over the cases whose reference has it."""
    summaries = []
    for region in regions:
        region_rows = [row for row in rows if row.label == region.name]
        present = [row for row in region_rows if not row.reference_empty]
        absent = [row for row in region_rows if row.reference_empty]
        metrics = {name: describe([getattr(row, name) for row in present], resamples, seed, alpha)
                   for name in FLOAT_METRICS}
        summaries.append(RegionSummary(
            name=region.name, kind=region.kind, values=tuple(region.values), n_cases=len(region_rows),
            n_present=len(present), n_reference_empty=len(absent),
            n_false_positive=sum(1 for row in absent if not row.predicted_empty),
            n_missed=sum(1 for row in present if row.predicted_empty), metrics=metrics,
            n_both_empty=sum(1 for row in absent if row.predicted_empty)))
    return summaries


# --------------------------------------------------------------------------- Markdown


def _cell(summary: MetricSummary | None, scale: float, digits: int, with_ci: bool) -> str:
    if summary is None or summary.n == 0:
        return "–"
    text = f"{summary.mean * scale:.{digits}f}"
    if math.isfinite(summary.std):
        text += f" ± {summary.std * scale:.{digits}f}"
    if with_ci:
        text += f" [{summary.ci_low * scale:.{digits}f}, {summary.ci_high * scale:.{digits}f}]"
    return text


def _escape(text: str) -> str:
    return str(text).replace("|", "\\|")


def _by_name(summary: Sequence[RegionSummary]) -> dict[str, RegionSummary]:
    return {region.name: region for region in summary}


def _region_names(entries: Sequence[tuple[str, Sequence[RegionSummary]]], regions: Sequence[str] | None) -> list[str]:
    if regions is not None:
        return list(regions)
    names: list[str] = []
    for _, summary in entries:
        names.extend(region.name for region in summary if region.name not in names)
    return names


def _table(header: list[str], rows: list[list[str]], text_columns: int = 1) -> str:
    """A Markdown table; the first ``text_columns`` columns are left-aligned, the numbers right-aligned."""
    alignment = ["---"] * text_columns + ["---:"] * (len(header) - text_columns)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(alignment) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def maml_table(entries: Sequence[tuple[str, Sequence[RegionSummary]]], regions: Sequence[str] | None = None,
               with_ci: bool = True, digits: int = 2) -> str:
    """MAML Table 1's layout: one row per method, Dice [%] and ASSD [voxel] per structure.

    Args:
        entries: ``(method name, summary)`` pairs, a summary being ``EvaluationResult.summary``.
        regions: the structures (columns) to show, in order; default every one found.
        with_ci: add the bootstrap 95 % CI as ``[low, high]`` after mean ± std.
    """
    names = _region_names(entries, regions)
    header = ["Method"] + [f"{_escape(name)} {title}" for name in names
                           for title in (METRIC_TITLES["dice"][0], METRIC_TITLES["assd_voxel"][0])]
    rows = []
    for method, summary in entries:
        found = _by_name(summary)
        row = [_escape(method)]
        for name in names:
            region = found.get(name)
            for metric in ("dice", "assd_voxel"):
                row.append(_cell(region.metrics.get(metric) if region else None, METRIC_TITLES[metric][1], digits,
                                 with_ci))
        rows.append(row)
    return _table(header, rows)


DTC_METRICS = ("dice", "jaccard", "hd95_voxel", "asd_voxel")


def dtc_table(entries: Sequence[tuple[str, Sequence[RegionSummary]]], regions: Sequence[str] | None = None,
              with_ci: bool = True, digits: int = 2, extra_columns: Mapping[str, Sequence[str]] | None = None) -> str:
    """DTC Tables 1-2's layout: one row per method and structure, Dice [%], Jaccard [%], 95HD, ASD [voxel].

    ASD is DTC's directed mean surface distance prediction -> reference.
    ``extra_columns`` maps a column title (e.g. "labeled / unlabeled", "parameters [M]") to
    one value per entry, placed after the method name as in the paper.
    """
    names = _region_names(entries, regions)
    extra = dict(extra_columns or {})
    for title, values in extra.items():
        if len(values) != len(entries):
            raise MultiModalSegError(f"The column '{title}' has {len(values)} values for {len(entries)} methods.")
    header = (["Method"] + [_escape(title) for title in extra] + ["Structure"]
              + [METRIC_TITLES[metric][0] for metric in DTC_METRICS])
    rows = []
    for index, (method, summary) in enumerate(entries):
        found = _by_name(summary)
        for name in names:
            region = found.get(name)
            row = [_escape(method)] + [_escape(values[index]) for values in extra.values()] + [_escape(name)]
            row += [_cell(region.metrics.get(metric) if region else None, METRIC_TITLES[metric][1], digits, with_ci)
                    for metric in DTC_METRICS]
            rows.append(row)
    return _table(header, rows, text_columns=len(extra) + 2)


def detail_table(summary: Sequence[RegionSummary], digits: int = 3) -> str:
    """Every metric of every region: mean ± std, 95 % CI and n, in the stored units."""
    rows = []
    for region in summary:
        for metric, (title, scale) in METRIC_TITLES.items():
            stats = region.metrics.get(metric)
            if stats is None:
                continue
            ci = "–" if stats.n == 0 else f"[{stats.ci_low * scale:.{digits}f}, {stats.ci_high * scale:.{digits}f}]"
            rows.append([_escape(region.name), title, _cell(stats, scale, digits, with_ci=False), ci, str(stats.n)])
    return _table(["Structure", "Metric", "mean ± std", "95 % CI of the mean", "n"], rows, text_columns=2)


def counts_table(summary: Sequence[RegionSummary]) -> str:
    """How many cases each region's statistics rest on, and the empty-mask cases left out."""
    rows = [[_escape(r.name), r.kind, ", ".join(str(v) for v in r.values), str(r.n_cases), str(r.n_present),
             str(r.n_missed), str(r.n_reference_empty), str(r.n_false_positive), str(r.n_both_empty)]
            for r in summary]
    return _table(["Structure", "kind", "label values", "cases", "in reference", "missed (prediction empty)",
                   "absent from reference", "false positive where absent", "both empty (Dice 1.0, not averaged)"],
                  rows, text_columns=3)


def both_empty_sentences(summary: Sequence[RegionSummary]) -> list[str]:
    """One sentence per region with cases where reference and prediction are both empty (Dice 1.0 unsaid else)."""
    return [f"{r.name}: {r.n_both_empty} case(s) with neither a reference nor a predicted {r.name}; their Dice is "
            "1.0 by convention (per_case.csv) and is not in the means above." for r in summary if r.n_both_empty]
