"""Evaluation: run a model over labeled cases, score each case, summarise as the papers' tables.

* :func:`evaluate_model` (``evaluate.py``): predict every case (optionally with modalities
  left out) and score it; returns an :class:`EvaluationResult` that writes ``per_case.csv``,
  ``summary.json`` and ``summary.md``.
* :func:`case_metrics` (``case_metrics.py``): Dice, Jaccard, ASSD, HD95, ASD in voxels and
  mm, volumes and empty flags of one case, per label and composite region.
* :func:`bootstrap_ci`, :func:`summarize`, :func:`maml_table`, :func:`dtc_table`
  (``summary.py``): mean ± std, percentile bootstrap CI, Markdown tables.
* ``cli_verb.py``: ``mmseg evaluate``.

Importing this package imports neither torch nor SimpleITK.
"""

from __future__ import annotations

from MultiModalSegLib.evaluation.case_metrics import CSV_COLUMNS, CaseMetrics, Region, case_metrics, regions_for_labels
from MultiModalSegLib.evaluation.evaluate import EvaluationResult, check_missing, evaluate_model
from MultiModalSegLib.evaluation.summary import (
    MetricSummary,
    RegionSummary,
    bootstrap_ci,
    describe,
    detail_table,
    dtc_table,
    maml_table,
    summarize,
)

__all__ = [
    "CSV_COLUMNS",
    "CaseMetrics",
    "EvaluationResult",
    "MetricSummary",
    "Region",
    "RegionSummary",
    "bootstrap_ci",
    "case_metrics",
    "check_missing",
    "describe",
    "detail_table",
    "dtc_table",
    "evaluate_model",
    "maml_table",
    "regions_for_labels",
    "summarize",
]
