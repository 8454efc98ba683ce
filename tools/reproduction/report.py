"""The papers' claims, their verdicts and ``docs/results.md`` (with its PNGs) from a finished reproduction.

Each claim of each paper is one or more comparisons "A beats B" on the claim's structure (MAML:
tumour Dice; DTC: left-atrium Dice after largest-component post-processing), each a paired
bootstrap over the test cases and the training seeds (evaluation/claims.py), with a verdict:
``untested`` when an arm of it is still near its floor (:data:`FLOORS`), ``unresolved`` when an
arm did not reach a plateau on its validation curve (training/plateau.py) or the CI contains 0,
else ``reproduced`` or ``contradicted`` by the side of 0 the CI lies on.
"""

from __future__ import annotations

import math
import os
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from reproduction import figures
from reproduction.arms import CLAIM_LABEL, arms_of, evaluations_of
from reproduction.plan import eval_folder
from reproduction.profiles import Profile, differences
from reproduction.results import Curve, EvaluationData, cpu_seconds, load_curve, load_evaluation

from MultiModalSegLib.atomic import atomic_write_json
from MultiModalSegLib.evaluation.claims import (
    PairedDifference,
    Verdict,
    combine_verdicts,
    comparison_verdict,
    paired_bootstrap,
)
from MultiModalSegLib.training.plateau import PlateauResult, pooled_plateau_test

FLOORS = {"maml": 0.30, "dtc": 0.70}  # an arm under this mean test Dice of the claim's structure is "near its floor"
STRUCTURE_NAMES = {"tumor": "tumour", "liver": "liver", "left_atrium": "left atrium"}
DTC_PAPER = {  # Luo et al., AAAI 2021, Tables 1-2 (LA, 16 labeled + 64 unlabeled): Dice %, Jaccard %, 95HD, ASD voxel
    "vnet-16": (86.03, 76.06, 14.26, 3.51), "dtc-16-64": (89.42, 80.98, 7.32, 2.10),
    "vnet-80": (91.14, 83.82, 5.75, 1.52), "lsf-16": (87.87, 78.38, 9.58, 2.37),
    "seg-lsf-16": (88.29, 79.17, 8.98, 2.29),
}


@dataclass(frozen=True)
class Comparison:
    """"``first`` beats ``second``" on the claim's structure (evaluation keys)."""

    first: str
    second: str


@dataclass(frozen=True)
class Claim:
    paper: str
    title: str
    statement: str
    comparisons: tuple[Comparison, ...]


CLAIMS: tuple[Claim, ...] = (
    Claim("maml", "MAML Table 1: the ordering",
          "MAML beats MS+MA, and MS+MA beats both baselines (MS+Ensemble and the early-fusion U-Net), in tumour Dice",
          (Comparison("maml", "ms-ma"), Comparison("ms-ma", "ms-ensemble"),
           Comparison("ms-ma", "unet-early-fusion"))),
    Claim("maml", "MAML Table 2: a missing phase",
          "MAML run with one phase missing segments the tumour better than a U-Net trained on that phase alone",
          (Comparison("maml-arterial-only", "unet-arterial"), Comparison("maml-venous-only", "unet-venous"))),
    Claim("dtc", "DTC Table 1: the semi-supervised gain",
          "DTC with {labeled} labeled + {unlabeled} unlabeled cases beats the VNet trained on the {labeled} labeled "
          "cases alone",
          (Comparison("dtc-16-64", "vnet-16"),)),
    Claim("dtc", "DTC Table 1: the upper bound",
          "the VNet trained on all {cases} cases labeled stays above DTC ({labeled} labeled + {unlabeled} unlabeled)",
          (Comparison("vnet-80", "dtc-16-64"),)),
    Claim("dtc", "DTC Table 2: the ablation",
          "each part adds: LSF beats Seg, Seg+LSF beats LSF, and Seg+LSF+DTC beats Seg+LSF ({labeled} labeled)",
          (Comparison("lsf-16", "vnet-16"), Comparison("seg-lsf-16", "lsf-16"),
           Comparison("dtc-16-64", "seg-lsf-16"))),
)


@dataclass
class ComparisonResult:
    comparison: Comparison
    difference: PairedDifference
    verdict: Verdict


@dataclass
class ClaimResult:
    claim: Claim
    comparisons: list[ComparisonResult]

    @property
    def verdict(self) -> str:
        return combine_verdicts([item.verdict for item in self.comparisons])


@dataclass
class PaperResults:
    """Everything the report shows of one paper."""

    paper: str
    profile: Profile
    evaluations: dict[str, EvaluationData]
    curves: dict[str, list[Curve]]  # arm -> one per seed
    claims: list[ClaimResult]
    titles: dict[str, str]  # evaluation and arm keys -> titles

    @property
    def label(self) -> str:
        return CLAIM_LABEL[self.paper]

    @property
    def floor(self) -> float:
        return FLOORS[self.paper]

    def plateau(self, arm: str) -> PlateauResult:
        """The arm's plateau test on all its seeds' curves at once (one shared slope, training/plateau.py)."""
        curves = self.curves[arm]
        return pooled_plateau_test([(curve.iterations, curve.values) for curve in curves],
                                   run_length=max(curve.run_length for curve in curves))


def load_paper(profile: Profile, work: Path, paper: str) -> PaperResults:
    """Read one paper's finished evaluations and curves and test its claims (raises when something is missing)."""
    size = profile.paper(paper)
    seeds = list(profile.seeds)
    label = CLAIM_LABEL[paper]
    evaluations: dict[str, EvaluationData] = {}
    titles: dict[str, str] = {}
    for evaluation in evaluations_of(paper):
        data = load_evaluation(work, evaluation, seeds)
        if data is None:
            raise SystemExit(f"{eval_folder(work, paper, evaluation.key, seeds[0]).parent} is not finished for every "
                             "seed; run the reproduction again to finish it.")
        evaluations[evaluation.key] = data
        titles[evaluation.key] = evaluation.describe(size)
    curves: dict[str, list[Curve]] = {}
    for arm in arms_of(paper):
        loaded = [load_curve(work, paper, arm.key, seed, label) for seed in seeds]
        if any(curve is None for curve in loaded):
            raise SystemExit(f"The training of {paper}/{arm.key} is not finished for every seed.")
        curves[arm.key] = [curve for curve in loaded if curve is not None]
        titles[arm.key] = arm.describe(size)
    results = PaperResults(paper, profile, evaluations, curves, [], titles)
    results.claims = [test_claim(claim, results) for claim in CLAIMS if claim.paper == paper]
    return results


def test_claim(claim: Claim, results: PaperResults) -> ClaimResult:
    """Every comparison of the claim: paired bootstrap of the claim structure's Dice, floor and plateau checks."""
    items = []
    for comparison in claim.comparisons:
        first, second = results.evaluations[comparison.first], results.evaluations[comparison.second]
        difference = paired_bootstrap(first.grid(results.label), second.grid(results.label),
                                      resamples=results.profile.bootstrap)
        floor = [results.titles[key] for key in (comparison.first, comparison.second)
                 if not results.evaluations[key].mean(results.label) >= results.floor]
        arms = dict.fromkeys(arm for key in (comparison.first, comparison.second)
                             for arm in results.evaluations[key].evaluation.arms)
        unconverged = [results.titles[arm] for arm in arms if not results.plateau(arm).holds]
        items.append(ComparisonResult(comparison, difference, comparison_verdict(
            difference, floor_arms=floor, unconverged_arms=unconverged)))
    return ClaimResult(claim, items)


# ------------------------------------------------------------------------------------------------ formatting


def _points(value: float) -> str:
    return "–" if not math.isfinite(value) else f"{100 * value:+.1f}"


def effect_text(difference: PairedDifference) -> str:
    """``+3.2 [+1.0, +5.4]``: the effect in Dice points with its CI."""
    return f"{_points(difference.mean)} [{_points(difference.ci_low)}, {_points(difference.ci_high)}]"


def cell(grid: np.ndarray, scale: float, resamples: int, digits: int = 1) -> str:
    """``mean [CI]`` of a ``[seeds, cases]`` grid (two-way bootstrap), ``–`` without values."""
    summary = paired_bootstrap(grid, resamples=resamples)
    if not math.isfinite(summary.mean):
        return "–"
    return (f"{scale * summary.mean:.{digits}f} [{scale * summary.ci_low:.{digits}f}, "
            f"{scale * summary.ci_high:.{digits}f}]")


def seed_spread(grid: np.ndarray) -> str:
    """Sample SD of the per-seed means, in Dice points (``–`` with one seed)."""
    with np.errstate(invalid="ignore"):
        means = np.nanmean(grid, axis=1)
    means = means[np.isfinite(means)]
    return "–" if means.size < 2 else f"{100 * float(np.std(means, ddof=1)):.1f}"


def metric_table(results: PaperResults, keys: list[str], columns: list[tuple[str, str, str, float]]) -> str:
    """One row per evaluation; ``columns``: (title, label, metric, scale)."""
    header = ["Method"] + [title for title, *_ in columns] + [f"{STRUCTURE_NAMES[results.label]} Dice: SD over seeds"]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for key in keys:
        data = results.evaluations[key]
        row = [results.titles[key]]
        for _, label, metric, scale in columns:
            row.append(cell(data.grid(label, metric), scale, results.profile.bootstrap, 1 if scale == 100 else 2)
                       if label in data.grids else "–")
        row.append(seed_spread(data.grid(results.label)))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def training_table(results: PaperResults, records: Path) -> str:
    """Per arm: the plateau test on its seeds together, the gain of the last fifth, final Dice per seed, CPU time."""
    lines = ["| Arm | plateau | slope in the last fifth [points per fifth of the run] [95 % CI] | "
             "last fifth minus the fifth before [points] | final validation Dice per seed [%] | training CPU [min] |",
             "|---|---|---|---:|---|---:|"]
    for arm, curves in results.curves.items():
        plateau = results.plateau(arm)
        if math.isfinite(plateau.slope):
            scale = 0.2 * plateau.run_length
            slope = (f"{_points(plateau.gain_per_fifth)} [{_points(plateau.ci_low * scale)}, "
                     f"{_points(plateau.ci_high * scale)}]")
        else:
            slope = plateau.reason
        finals = "; ".join("–" if not curve.values else f"{100 * curve.values[-1]:.1f}" for curve in curves)
        cpu = cpu_seconds(records, f"{results.paper}/train/{arm}/") / 60
        lines.append(f"| {results.titles[arm]} | {'holds' if plateau.holds else '**no**'} | {slope} | "
                     f"{_points(plateau.gain_over_previous)} | {finals} | {cpu:.0f} |")
    return "\n".join(lines) + "\n"


def claims_table(claims: list[ClaimResult], titles: dict[str, str]) -> str:
    lines = ["| Claim | comparison | Δ Dice [points] [95 % CI] | cases first better | verdict | why |",
             "|---|---|---|---:|---|---|"]
    for result in claims:
        for index, item in enumerate(result.comparisons):
            claim = f"**{result.claim.title}** ({result.verdict})" if index == 0 else ""
            comparison = f"{titles[item.comparison.first]} > {titles[item.comparison.second]}"
            lines.append(f"| {claim} | {comparison} | {effect_text(item.difference)} | "
                         f"{item.difference.wins}/{item.difference.n_cases} | {item.verdict.word} | "
                         f"{item.verdict.reason} |")
    return "\n".join(lines) + "\n"


def verdict_summary(papers: list[PaperResults]) -> str:
    lines = ["| Claim (paper) | effect: Δ Dice [points] [95 % CI] | verdict |", "|---|---|---|"]
    for results in papers:
        for claim in results.claims:
            effects = "; ".join(
                f"{results.titles[item.comparison.first]} − {results.titles[item.comparison.second]}: "
                f"{effect_text(item.difference)}" for item in claim.comparisons)
            size = results.profile.paper(results.paper)
            statement = claim.claim.statement.format(labeled=size.labeled_cases, cases=size.train_cases,
                                                     unlabeled=size.train_cases - size.labeled_cases)
            lines.append(f"| {claim.claim.title}: {statement} | {effects} | **{claim.verdict}** |")
    return "\n".join(lines) + "\n"


def floor_sentences(results: PaperResults, keys: list[str]) -> list[str]:
    low = [f"{results.titles[key]} ({100 * results.evaluations[key].mean(results.label):.1f} %)" for key in keys
           if not results.evaluations[key].mean(results.label) >= results.floor]
    if not low:
        return []
    return [f"Near the floor (mean {STRUCTURE_NAMES[results.label]} Dice under {100 * results.floor:.0f} %): "
            f"{', '.join(low)}. Every claim involving them is **untested**: the comparison would say which arm "
            "leaves the floor first, not which method is better.", ""]


def paper_section(results: PaperResults, records: Path, images: Path, image_prefix: str) -> list[str]:
    size = results.profile.paper(results.paper)
    paper = results.paper
    curves_png = figures.learning_curves(
        results.curves, results.titles, images / f"reproduce-{paper}-curves.png", label=STRUCTURE_NAMES[results.label],
        floor=results.floor, heading=f"{paper.upper()} arms: validation curves (last fifth shaded, floor dashed)",
        plateaus={arm: results.plateau(arm).holds for arm in results.curves})
    boxes_png = figures.case_boxes(
        {key: np.nanmean(data.grid(results.label), axis=0) for key, data in results.evaluations.items()},
        results.titles, images / f"reproduce-{paper}-boxes.png", label=STRUCTURE_NAMES[results.label],
        floor=results.floor, heading=f"{paper.upper()}: held-out test cases")
    lines = [f"## {paper.upper()}", "", "**Sizes (smaller than the paper's, to fit the CPU):** "
             + "; ".join(differences(paper, size)) + ".", ""]
    lines += [f"Data: `{size.kind}` phantoms on a {size.shape_text} grid: {size.train_cases} training cases"
              + (f" (the first {size.labeled_cases} labeled in the semi-supervised and few-label arms)"
                 if paper == "dtc" else "")
              + f", {size.validation_cases} validation cases (the curves and plateau test), {size.test_cases} "
              f"held-out test cases; {size.iterations} iterations for every arm, validation every "
              f"{size.validate_every}; training seeds {', '.join(map(str, results.profile.seeds))}.", ""]
    if paper == "maml":
        table_columns = [("tumour Dice [%]", "tumor", "dice", 100.0),
                         ("tumour ASSD [voxel]", "tumor", "assd_voxel", 1.0),
                         ("liver Dice [%]", "liver", "dice", 100.0), ("liver ASSD [voxel]", "liver", "assd_voxel", 1.0)]
        table1 = ["unet-early-fusion", "ms-ensemble", "ms-ma", "maml"]
        table2 = ["unet-arterial", "maml-arterial-only", "unet-venous", "maml-venous-only"]
        lines += ["### Table 1: both phases", "", metric_table(results, table1, table_columns),
                  "### Table 2: one phase missing", "",
                  "MAML (trained on both phases) run with the other phase absent (`mmseg evaluate --missing`) against "
                  "a U-Net trained on the present phase alone.", "", metric_table(results, table2, table_columns)]
        lines += floor_sentences(results, table1 + table2)
    else:
        label = results.label
        table_columns = [("Dice [%]", label, "dice", 100.0), ("Jaccard [%]", label, "jaccard", 100.0),
                         ("95HD [voxel]", label, "hd95_voxel", 1.0), ("ASD [voxel]", label, "asd_voxel", 1.0)]
        table1 = ["vnet-16", "dtc-16-64", "vnet-80"]
        table2 = ["vnet-16", "lsf-16", "seg-lsf-16", "dtc-16-64"]
        lines += ["All DTC rows after the paper's post-processing (largest connected component, "
                  "`mmseg evaluate --largest-component`); ASD is the directed mean surface distance prediction -> "
                  "reference, as the DTC code computes it.", "",
                  "### Table 1: semi-supervised against supervised", "", metric_table(results, table1, table_columns),
                  "### Table 2: ablation", "", metric_table(results, table2, table_columns),
                  "The paper's numbers on the LA challenge (Dice %, Jaccard %, 95HD, ASD voxel) for comparison of the "
                  "ordering only (real scans, 6000 iterations, full width): "
                  + "; ".join(f"{results.titles[key]} {', '.join(f'{v:g}' for v in DTC_PAPER[key])}"
                              for key in ("vnet-16", "lsf-16", "seg-lsf-16", "dtc-16-64", "vnet-80")) + ".", ""]
        lines += floor_sentences(results, list(dict.fromkeys(table1 + table2)))
    lines += ["### Training: plateau test", "",
              "An arm has reached its plateau when the slope of its validation Dice over the last fifth of the run "
              "is not significantly positive: one least-squares slope for all its seeds (each seed its own level), "
              "95 % t-interval (`training/plateau.py`). Under a decaying learning rate the last fifth is flatter by "
              "construction, so the gain of the last fifth over the fifth before it is shown too.", "",
              training_table(results, records),
              f"![{paper} learning curves]({image_prefix}{curves_png.name})", "",
              "### The claims", "", claims_table(results.claims, results.titles),
              f"![{paper} per-case test Dice]({image_prefix}{boxes_png.name})", ""]
    return lines


def verdict_record(loaded: list[PaperResults]) -> dict[str, object]:
    """The verdicts, effects and plateau tests as JSON (``WORK/verdicts.json``), for scripts."""
    record: dict[str, object] = {}
    for results in loaded:
        record[results.paper] = {
            "claims": [{"claim": claim.claim.title, "verdict": claim.verdict, "comparisons": [
                {"first": item.comparison.first, "second": item.comparison.second, "verdict": item.verdict.word,
                 "reason": item.verdict.reason, **item.difference.to_dict()} for item in claim.comparisons]}
                for claim in results.claims],
            "plateau": {arm: results.plateau(arm).to_dict() for arm in results.curves},
            "mean_dice": {key: data.mean(results.label) for key, data in results.evaluations.items()},
        }
    return record


def write_report(profile: Profile, work: Path, output: Path, papers: list[str], command: str) -> str:
    """Test every claim of ``papers`` and return the markdown; the PNGs go to ``output``'s ``images/`` folder.

    Also writes ``WORK/verdicts.json`` (:func:`verdict_record`).
    """
    records = work / "jobs"
    images = output.parent / "images"
    loaded = [load_paper(profile, work, paper) for paper in papers]
    atomic_write_json(work / "verdicts.json", verdict_record(loaded))
    total_cpu = cpu_seconds(records, "")
    lines = [
        "# Results: the papers' tables on phantoms",
        "",
        (f"Written by `{command}` (profile `{profile.name}`: {profile.description}) on "
         f"{datetime.now(UTC):%Y-%m-%d}, {platform.machine()} CPU with {os.cpu_count()} cores, one thread per "
         f"process; CPU time of every training and evaluation: {total_cpu / 3600:.2f} core-hours. Do not edit by "
         "hand; docs/reproduction.md says how the sizes and budgets were chosen and how to run it in chunks."),
        "",
        "## Verdicts", "",
        verdict_summary(loaded),
        ("How to read it. Each arm is trained with "
         f"{len(profile.seeds)} seed(s); a cell is the mean over the held-out test cases and the seeds with a 95 % "
         f"two-way bootstrap CI ({profile.bootstrap} resamples of seeds and cases). A claim \"A beats B\" is tested "
         "on the paired differences (the same test case, the same seed index) with the same bootstrap "
         "(`evaluation/claims.py`): **reproduced** when the CI of the difference lies on the claimed side of 0, "
         "**contradicted** when it lies on the other side, **unresolved** when it contains 0 or an arm did not "
         "reach a plateau, **untested** when an arm is still near its floor (MAML tumour Dice under 30 %, DTC Dice "
         "under 70 %). A claim of several comparisons is contradicted if any of them is, else untested if any is, "
         "else unresolved if any is."),
        "",
        ("What a phantom cannot test: the phantoms come from one generator with simplified anatomy and appearance, "
         "so they test whether each method's mechanism does what the paper says on data of the same structure, not "
         "the papers' absolute numbers on real CT and LGE-MRI; the networks, patches and grids are smaller than "
         "the papers' (each section lists how), and the seeds vary the training only (initial weights, patches), "
         "not the data."),
        "",
    ]
    left_out = [paper for paper in ("maml", "dtc") if paper not in papers]
    if left_out:
        lines += [("Not in this report: " + ", ".join(paper.upper() for paper in left_out) + " (its trainings were "
                   f"not finished when it was written; `python tools/reproduce.py --profile {profile.name}` runs "
                   "what is left and writes the whole report)."), ""]
    for results in loaded:
        lines += paper_section(results, records, images, "images/")
    return "\n".join(lines)
