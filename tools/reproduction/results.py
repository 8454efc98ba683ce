"""Reading a finished reproduction back: per-case metrics as ``[seeds, cases]`` grids, validation curves, CPU time.

A metric grid holds ``nan`` where a case's reference lacks the structure (it says nothing about
it) or the metric is undefined (a distance of an empty prediction); the paired bootstrap and the
tables leave those out (evaluation/claims.py).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from reproduction.arms import Evaluation
from reproduction.plan import eval_folder, train_folder
from reproduction.runner import attempts_of

from MultiModalSegLib.training.plateau import PlateauResult, plateau_test

METRICS = ("dice", "jaccard", "assd_voxel", "hd95_voxel", "asd_voxel")


@dataclass
class EvaluationData:
    """One evaluation over the seeds: ``grids[label][metric]`` is ``[seeds, cases]``."""

    evaluation: Evaluation
    seeds: list[int]
    cases: list[str]
    grids: dict[str, dict[str, np.ndarray]]

    def grid(self, label: str, metric: str = "dice") -> np.ndarray:
        return self.grids[label][metric]

    def mean(self, label: str, metric: str = "dice") -> float:
        values = self.grid(label, metric)
        return float(np.nanmean(values)) if np.isfinite(values).any() else math.nan


@dataclass
class Curve:
    """The validation curve of one arm and seed, and its own plateau test (the report tests the seeds together)."""

    arm: str
    seed: int
    iterations: list[int]
    values: list[float]  # validation Dice of the claim's structure, mean over the validation cases
    plateau: PlateauResult
    run_length: int
    extra: dict[str, list[float]] = field(default_factory=dict)  # the other structures' curves


def _float(text: str) -> float:
    return float(text) if text not in ("", None) else math.nan


def read_per_case(path: Path) -> dict[tuple[str, str], dict[str, float]]:
    """``(label, case) -> {metric: value}`` of the cases whose reference holds the label."""
    rows: dict[tuple[str, str], dict[str, float]] = {}
    with open(path, encoding="utf-8") as stream:
        for row in csv.DictReader(stream):
            if row["reference_empty"] in ("1", "True", "true"):
                continue
            rows[(row["label"], row["case_id"])] = {metric: _float(row[metric]) for metric in METRICS}
    return rows


def load_evaluation(work: Path, evaluation: Evaluation, seeds: list[int]) -> EvaluationData | None:
    """The evaluation's grids over ``seeds``, or None while one seed's ``per_case.csv`` is missing."""
    per_seed = []
    for seed in seeds:
        path = eval_folder(work, evaluation.paper, evaluation.key, seed) / "per_case.csv"
        if not path.is_file():
            return None
        per_seed.append(read_per_case(path))
    labels = sorted({label for rows in per_seed for label, _ in rows})
    cases = sorted({case for rows in per_seed for _, case in rows})
    grids: dict[str, dict[str, np.ndarray]] = {}
    for label in labels:
        grids[label] = {}
        for metric in METRICS:
            grid = np.full((len(seeds), len(cases)), np.nan)
            for s, rows in enumerate(per_seed):
                for c, case in enumerate(cases):
                    value = rows.get((label, case), {}).get(metric)
                    if value is not None:
                        grid[s, c] = value
            grids[label][metric] = grid
    return EvaluationData(evaluation, list(seeds), cases, grids)


def load_curve(work: Path, paper: str, arm: str, seed: int, label: str) -> Curve | None:
    """The arm's validation curve from its ``result.json`` (None when the training is not finished)."""
    path = train_folder(work, paper, arm, seed) / "result.json"
    if not path.is_file():
        return None
    result = json.loads(path.read_text(encoding="utf-8"))
    iterations, values, extra = [], [], {}
    for entry in result.get("validation", []):
        per_class = entry.get("dice_per_class") or {}
        iterations.append(int(entry["iteration"]))
        values.append(float(per_class.get(label, math.nan)))
        for name, value in per_class.items():
            if name != label:
                extra.setdefault(name, []).append(float(value))
    run_length = int(result.get("iterations") or (iterations[-1] if iterations else 0))
    return Curve(arm, seed, iterations, values, plateau_test(iterations, values, run_length=run_length), run_length,
                 extra)


def cpu_seconds(records: Path, prefix: str) -> float:
    """CPU seconds of every recorded attempt of the jobs whose key starts with ``prefix``."""
    total = 0.0
    for path in records.glob("*.json"):
        key = json.loads(path.read_text(encoding="utf-8")).get("key", "")
        if key.startswith(prefix):
            total += sum(float(attempt.get("cpu_seconds") or 0.0) for attempt in attempts_of(records, key))
    return total
