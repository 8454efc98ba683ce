"""MAML's Tables 1-2 on two-phase liver phantoms: train every arm with one budget, evaluate on held-out cases.

The arms (Zhang et al., MICCAI 2021, Tables 1 and 2), all with the bundled laptop widths
(``bundled_configs.liver_maml_architecture()``: base 8, max 64, strides (1,2,2), (2,2,2) x3,
deep supervision) and the same iterations, patch, batch, seed and training cases:

* ``unet-early-fusion``: one U-Net, arterial and venous as input channels (the nnU-Net way);
* ``unet-arterial`` / ``unet-venous``: one U-Net on that phase alone (Table 2, and the two
  members of MS+Ensemble);
* ``ms-ensemble``: the mean of the two single-phase U-Nets' softmax probabilities (no training
  of its own; its budget is the two single-phase trainings);
* ``ms-ma``: MAML trained with the joint loss only (``--lambda-intra 0``: modality-specific
  branches + modality-aware fusion, no mutual learning);
* ``maml``: MAML (``lambda_intra = 1``), evaluated with both phases and with either one missing.

Training runs ``python -m MultiModalSegLib train`` in a child process per arm (the commands are
written into the report). Evaluation runs :func:`MultiModalSegLib.evaluation.evaluate_model` (what
``mmseg evaluate`` runs) in this process on ``--test-cases`` held-out phantoms; the ensemble goes
through :func:`MultiModalSegLib.inference.predict` for each member and is scored with the same
per-case metrics and summaries. Training cases are ``phantom:liver-ct2:N:1`` (seed block 1),
test cases ``phantom:liver-ct2:M:9`` (seed block 9, disjoint), the demo uses seed 2026.

Resumable: an arm whose ``WORK/<arm>/result.json`` and package exist is not trained again (an
interrupted one resumes from its checkpoint); the children's progress goes to ``WORK/logs/``; an evaluation whose ``WORK/eval/<name>/summary.json``
exists is read back. Usage::

    OMP_NUM_THREADS=1 python tools/reproduce_maml.py --work /tmp/reproduce-maml \\
        --markdown /tmp/reproduce-maml/results-maml.md [--iterations 300] [--test-cases 20]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))
sys.path.insert(0, str(REPOSITORY / "tools"))

from reproduce_common import evaluation_bar, finished_arm

from MultiModalSegLib import bundled_configs
from MultiModalSegLib.atomic import atomic_write_json, atomic_write_text
from MultiModalSegLib.errors import MultiModalSegError
from MultiModalSegLib.human_progress import relay_json_lines, stderr_progress

TRAIN_SEED_BLOCK = 1
TEST_SEED_BLOCK = 9
PHASES = ("arterial", "venous")
STRUCTURAL_KEYS = ("base_filters", "max_filters", "strides", "deep_supervision")  # shared by every arm
MAML_ONLY_KEYS = ("ma_kernel", "absent_fill")


@dataclass(frozen=True)
class Arm:
    """One trained network of the comparison."""

    key: str
    title: str
    method: str
    modalities: tuple[str, ...]
    lambda_intra: float | None = None


ARMS = (
    Arm("unet-early-fusion", "Early-fusion U-Net (nnU-Net style)", "unet", PHASES),
    Arm("unet-arterial", "U-Net, arterial only", "unet", ("arterial",)),
    Arm("unet-venous", "U-Net, venous only", "unet", ("venous",)),
    Arm("ms-ma", "MS+MA (MAML without mutual learning)", "maml", PHASES, 0.0),
    Arm("maml", "MAML", "maml", PHASES, 1.0),
)


@dataclass
class Evaluated:
    """One row of a table: its summaries, per-case values and timing."""

    key: str
    title: str
    summary: list[Any]
    per_case: dict[str, dict[str, float]] = field(default_factory=dict)  # region -> case -> dice
    seconds: float = 0.0


# ------------------------------------------------------------------------------------------------ training


def architecture_overrides(arm: Arm) -> dict[str, Any]:
    """The bundled liver configuration's structural settings (and MAML's fusion settings for MAML arms)."""
    config = bundled_configs.liver_maml_architecture()["config"]
    keys = STRUCTURAL_KEYS + (MAML_ONLY_KEYS if arm.method == "maml" else ())
    return {key: config[key] for key in keys}


def train_command(arm: Arm, args: argparse.Namespace, output: Path, resume: bool) -> list[str]:
    command = [
        "python", "-m", "MultiModalSegLib", "train", "--method", arm.method,
        "--modalities", ",".join(arm.modalities), "--data", args.train_spec, "--output", str(output),
        "--iterations", str(args.iterations), "--patch", "x".join(map(str, args.patch)), "--batch", str(args.batch),
        "--seed", str(args.seed), "--validation-cases", "0", "--validate-every", str(args.iterations),
        "--checkpoint-every", str(args.checkpoint_every), "--device", "cpu", "--model-id", f"reproduce-{arm.key}",
        "--architecture", json.dumps(architecture_overrides(arm), separators=(",", ":")),
    ]
    if arm.lambda_intra is not None:
        command += ["--lambda-intra", repr(arm.lambda_intra)]
    if resume:
        command.append("--resume")
    return command


def train_arm(arm: Arm, args: argparse.Namespace) -> dict[str, Any]:
    """Train one arm in a child process unless it is already done; return its result.json."""
    output = args.work / arm.key
    result_path = output / "result.json"
    finished = finished_arm(output, arm.key, args.iterations)
    if finished is not None:
        return finished
    resume = (output / "checkpoint").is_dir()
    command = train_command(arm, args, output, resume)
    print(f"[{arm.key}] {'resuming' if resume else 'training'}: {shlex.join(command)}", flush=True)
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY), "OMP_NUM_THREADS": str(args.threads),
           "MKL_NUM_THREADS": str(args.threads)}
    log = args.work / "logs" / f"train-{arm.key}.log"  # JSON-line progress events of the child
    log.parent.mkdir(parents=True, exist_ok=True)
    if not resume and output.exists():
        command.append("--overwrite")  # an attempt that died before its first checkpoint
    with open(log, "a", encoding="utf-8") as stream:
        child = subprocess.Popen([sys.executable, *command[1:]], cwd=REPOSITORY, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, encoding="utf-8", errors="replace")
        relay_json_lines(child.stdout, stream, stderr_progress())  # the log gets every line; a terminal a bar
        returncode = child.wait()
    if returncode != 0 or not result_path.is_file():
        raise MultiModalSegError(
            f"Training {arm.key} failed (exit code {returncode}); see {log}. Run the "
            "script again to resume it from its checkpoint.")
    result = json.loads(result_path.read_text(encoding="utf-8"))
    print(f"[{arm.key}] done in {result['seconds']:.0f} s", flush=True)
    return result


# ------------------------------------------------------------------------------------------------ evaluation


def restrict(cases: list[Any], modalities: tuple[str, ...]) -> list[Any]:
    """The cases with only ``modalities`` (a single-phase model knows no other image)."""
    from MultiModalSegLib.datasets import Case

    return [Case(case.case_id, {name: case.images[name] for name in modalities}, case.label, case.source)
            for case in cases]


def read_back(folder: Path, key: str, title: str) -> Evaluated:
    """An evaluation written earlier: the summaries from summary.json, Dice per case from per_case.csv."""
    from MultiModalSegLib.evaluation.summary import MetricSummary, RegionSummary

    record = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    summary = []
    for entry in record["labels"]:
        metrics = {name: MetricSummary(*(math.nan if value.get(k) is None else value[k]
                                         for k in ("mean", "std", "ci_low", "ci_high")), int(value["n"]))
                   for name, value in entry["metrics"].items()}
        summary.append(RegionSummary(entry["name"], entry["kind"], tuple(entry["values"]), entry["n_cases"],
                                     entry["n_present"], entry["n_reference_empty"], entry["n_false_positive"],
                                     entry["n_missed"], metrics))
    per_case: dict[str, dict[str, float]] = {}
    with open(folder / "per_case.csv", encoding="utf-8") as stream:
        for row in csv.DictReader(stream):
            if row["reference_empty"] == "0":
                per_case.setdefault(row["label"], {})[row["case_id"]] = float(row["dice"])
    return Evaluated(key, title, summary, per_case, float(record.get("timing", {}).get("seconds") or 0.0))


def evaluate_package(key: str, title: str, package_folder: Path, cases: list[Any], missing: list[str],
                     args: argparse.Namespace) -> Evaluated:
    from MultiModalSegLib.evaluation import evaluate_model

    folder = args.work / "eval" / key
    if (folder / "summary.json").is_file():
        print(f"[eval {key}] evaluated already, reading it back", flush=True)
        return read_back(folder, key, title)
    print(f"[eval {key}] {len(cases)} cases" + (f" without {', '.join(missing)}" if missing else ""), flush=True)
    result = evaluate_model(package_folder, cases, missing=missing, device="cpu", overlap=args.overlap,
                            batch_size=2, bootstrap=args.bootstrap, seed=0, data=args.test_spec,
                            progress=evaluation_bar(f"eval {key}"))
    result.write(folder)
    return read_back(folder, key, title)


def evaluate_ensemble(key: str, title: str, members: dict[str, Path], cases: list[Any],
                      args: argparse.Namespace) -> Evaluated:
    """MS+Ensemble: the mean of the single-phase U-Nets' softmax probabilities, argmax, scored per case."""
    import numpy as np
    import SimpleITK as sitk

    from MultiModalSegLib.evaluation import EvaluationResult
    from MultiModalSegLib.evaluation.case_metrics import case_metrics, regions_for_labels
    from MultiModalSegLib.evaluation.summary import summarize
    from MultiModalSegLib.inference import predict
    from MultiModalSegLib.weights import load_model_package

    folder = args.work / "eval" / key
    if (folder / "summary.json").is_file():
        print(f"[eval {key}] evaluated already, reading it back", flush=True)
        return read_back(folder, key, title)
    print(f"[eval {key}] {len(cases)} cases, members {', '.join(members)}", flush=True)
    started = time.perf_counter()
    packages = {phase: load_model_package(path) for phase, path in members.items()}
    networks = {phase: package.build_network("cpu") for phase, package in packages.items()}
    first = next(iter(packages.values()))
    labels = first.labels
    for phase, package in packages.items():
        if package.labels != labels or package.method != "unet":
            raise MultiModalSegError(
                f"The ensemble member {phase} ({package.folder}) is not a U-Net with the labels of the others; "
                "train every member with tools/reproduce_maml.py.")
    regions = regions_for_labels(labels, first.manifest.get("regions", []), where="the ensemble's labels")
    values = np.array([0] + [int(label["value"]) for label in labels], dtype=np.uint8)
    rows, info = [], []
    for case in cases:
        case_started = time.perf_counter()
        foreground = []
        reference_image = None
        for phase, package in packages.items():
            result = predict(package, {phase: case.images[phase]}, device="cpu", overlap=args.overlap, batch_size=2,
                             network=networks[phase])
            if reference_image is None:
                reference_image = result.reference
            elif (result.reference.GetSize() != reference_image.GetSize()
                  or not np.allclose(result.reference.GetOrigin(), reference_image.GetOrigin())
                  or not np.allclose(result.reference.GetSpacing(), reference_image.GetSpacing())):
                raise MultiModalSegError(
                    f"The phases of case '{case.case_id}' lie on different grids, so their probabilities cannot be "
                    "averaged voxel by voxel; resample them onto one grid first.")
            foreground.append(np.stack([result.probabilities[label["name"]].astype(np.float32) for label in labels]))
        mean_foreground = np.mean(foreground, axis=0)
        probabilities = np.concatenate([1.0 - mean_foreground.sum(axis=0, keepdims=True), mean_foreground])
        prediction = values[np.argmax(probabilities, axis=0)]
        reference = sitk.GetArrayFromImage(case.label).astype(np.int64)
        spacing = tuple(reversed(case.label.GetSpacing()))
        case_rows = case_metrics(case.case_id, prediction, reference, spacing, regions, list(packages))
        rows.extend(case_rows)
        info.append({"case_id": case.case_id, "source": case.source, "available": list(packages),
                     "seconds": round(time.perf_counter() - case_started, 3),
                     "dice": {row.label: row.dice for row in case_rows}})
    summary = summarize(rows, regions, resamples=args.bootstrap, seed=0, alpha=0.05)
    result = EvaluationResult(
        model={"id": key, "version": 1, "method": "unet ensemble",
               "members": {phase: str(path) for phase, path in members.items()}},
        data=args.test_spec, missing=[], available=list(packages), regions=regions, rows=rows, summary=summary,
        cases=info, statistics={"resamples": args.bootstrap, "seed": 0, "alpha": 0.05,
                                "ci": "percentile bootstrap of the mean over cases", "std": "ddof=1"},
        timing={"device": "cpu", "seconds": round(time.perf_counter() - started, 3), "overlap": args.overlap})
    result.write(folder)
    return read_back(folder, key, title)


# ------------------------------------------------------------------------------------------------ report


def previous_invocations(work: Path) -> list[dict[str, Any]]:
    """The wall times of the earlier invocations on this work folder (``run.json``), oldest first."""
    path = work / "run.json"
    if not path.is_file():
        return []
    record = json.loads(path.read_text(encoding="utf-8"))
    if "invocations" in record:
        return list(record["invocations"])
    return [{"command": record.get("command"), "wall_seconds": record.get("wall_seconds")}]


def parameter_count(package_folder: Path) -> int:
    from MultiModalSegLib.weights import load_model_package

    network = load_model_package(package_folder).build_network("cpu")
    return sum(p.numel() for p in network.parameters())


def paired_difference(a: Evaluated, b: Evaluated, region: str, resamples: int) -> dict[str, Any]:
    """Dice(a) - Dice(b) over the cases both scored on ``region``: mean, paired bootstrap 95 % CI, wins."""
    import numpy as np

    from MultiModalSegLib.evaluation.summary import bootstrap_ci

    cases = sorted(set(a.per_case.get(region, {})) & set(b.per_case.get(region, {})))
    if not cases:
        return {"n": 0, "mean": math.nan, "low": math.nan, "high": math.nan, "wins": 0}
    differences = np.array([a.per_case[region][c] - b.per_case[region][c] for c in cases])
    low, high = bootstrap_ci(differences, n=resamples, seed=0, alpha=0.05)
    return {"n": len(cases), "mean": float(differences.mean()), "low": low, "high": high,
            "wins": int((differences > 0).sum())}


def verdict(difference: dict[str, Any]) -> str:
    if difference["n"] == 0:
        return "no cases to compare"
    if difference["low"] > 0:
        return "higher (CI above 0)"
    if difference["high"] < 0:
        return "lower (CI below 0)"
    return "no resolvable difference (CI contains 0)"


def difference_table(pairs: list[tuple[Evaluated, Evaluated]], region: str, resamples: int) -> tuple[str, list]:
    lines = ["| comparison | cases | Δ Dice [points] | paired 95 % CI | cases where first is better | reading |",
             "|---|---:|---:|---:|---:|---|"]
    results = []
    for first, second in pairs:
        d = paired_difference(first, second, region, resamples)
        results.append((first, second, d))
        lines.append(f"| {first.title} − {second.title} | {d['n']} | {100 * d['mean']:+.2f} | "
                     f"[{100 * d['low']:+.2f}, {100 * d['high']:+.2f}] | {d['wins']}/{d['n']} | {verdict(d)} |")
    return "\n".join(lines) + "\n", results


def dice_mean(row: Evaluated, region_name: str = "tumor") -> float:
    for region in row.summary:
        if region.name == region_name:
            return region.metrics["dice"].mean
    return math.nan


FLOOR_DICE = 0.01  # below 1 % Dice a network has not learned to find the structure at all


def write_markdown(args: argparse.Namespace, trained: dict[str, dict[str, Any]], rows: dict[str, Evaluated],
                   parameters: dict[str, int], commands: dict[str, str], invocations: list[dict[str, Any]],
                   script_command: str) -> str:
    from MultiModalSegLib.evaluation.summary import maml_table

    def entries(keys: list[str]) -> list[tuple[str, list[Any]]]:
        return [(rows[k].title, rows[k].summary) for k in keys]

    table1_keys = ["unet-early-fusion", "ms-ensemble", "ms-ma", "maml"]
    table2_keys = ["unet-arterial", "maml-arterial-only", "unet-venous", "maml-venous-only"]
    n_cases = max(region.n_cases for region in rows["maml"].summary)
    train_seconds = {key: float(result["seconds"]) for key, result in trained.items()}
    spi = {key: result.get("seconds_per_iteration") for key, result in trained.items()}
    budget = {
        "unet-early-fusion": ("1 U-Net, 2 input channels", parameters["unet-early-fusion"],
                              train_seconds["unet-early-fusion"]),
        "ms-ensemble": ("2 single-phase U-Nets", parameters["unet-arterial"] + parameters["unet-venous"],
                        train_seconds["unet-arterial"] + train_seconds["unet-venous"]),
        "ms-ma": ("MAML, lambda_intra = 0", parameters["ms-ma"], train_seconds["ms-ma"]),
        "maml": ("MAML, lambda_intra = 1", parameters["maml"], train_seconds["maml"]),
    }
    lines = [
        "## MAML",
        "",
        ("Zhang et al., *Modality-aware Mutual Learning for Multi-modal Medical Image Segmentation*, MICCAI 2021, "
        "Tables 1 and 2, repeated on the two-phase liver phantoms (`liver-ct2`: arterial + venous CT, labels liver "
        "and tumour; the phases are rendered with lesion types whose contrast differs between phases). Written by "
        f"`{script_command}` on {datetime.now(UTC):%Y-%m-%d}, {platform.machine()} CPU, "
        f"{args.threads} thread(s) per process."),
        "",
        ("**Setting.** Every arm has the same budget: "
        f"{args.iterations} iterations, batch {args.batch}, patch {'x'.join(map(str, args.patch))} (z, y, x), "
        f"seed {args.seed}, the same {args.train_cases} training cases `{args.train_spec}` (seed block "
        f"{TRAIN_SEED_BLOCK}; no validation split, the final weights are evaluated), SGD 0.01 momentum 0.99 "
        "Nesterov with a poly schedule, Dice + CE with deep supervision (nnU-Net's recipe, as the MAML reference), "
        "and the widths of the bundled `maml-liver-ct2` (`bundled_configs.liver_maml_architecture()`: base 8, max "
        "64, 5 stages, first downsampling in-plane only); a U-Net is one MAML branch (the early-fusion one takes "
        f"both phases as input channels). Test: {n_cases} held-out cases `{args.test_spec}` (seed block "
        f"{TEST_SEED_BLOCK}, disjoint from training and from the demo's seed 2026), sliding window with overlap "
        f"{args.overlap}, no post-processing."),
        "",
        ("Cells: mean ± sample SD [percentile bootstrap 95 % CI of the mean, "
        f"{args.bootstrap} resamples, seed 0] over the test cases whose reference holds the structure; ASSD in "
        "voxels (cases with an empty prediction have no ASSD and count in Dice only). Paired differences: per-case "
        "Dice differences with a paired bootstrap 95 % CI."),
        "",
        f"### Table 1: two-phase liver tumour ({n_cases} held-out phantoms)",
        "",
        maml_table(entries(table1_keys), regions=["tumor", "liver"]),
        "| Method | networks | parameters | training time [min] |",
        "|---|---|---:|---:|",
    ]
    for key in table1_keys:
        kind, count, seconds = budget[key]
        lines.append(f"| {rows[key].title} | {kind} | {count / 1e6:.2f} M | {seconds / 60:.1f} |")
    per_iteration = ", ".join(f"{key} {value:.2f}" for key, value in spi.items() if value)
    lines += ["", f"Seconds per training iteration (single-thread CPU, shared machine): {per_iteration}.", ""]
    diff1, results1 = difference_table([(rows["maml"], rows["ms-ma"]), (rows["maml"], rows["ms-ensemble"]),
                                        (rows["maml"], rows["unet-early-fusion"]),
                                        (rows["ms-ma"], rows["ms-ensemble"]),
                                        (rows["ms-ma"], rows["unet-early-fusion"])], "tumor", args.bootstrap)
    lines += ["Tumour Dice, paired differences:", "", diff1]
    lines += [
        f"### Table 2: one phase missing ({n_cases} held-out phantoms)",
        "",
        ("A U-Net trained on that phase alone vs MAML (trained on both) run with the other phase absent "
        "(`mmseg evaluate --missing`): MAML's output is then its branch of the present phase."),
        "",
        maml_table(entries(table2_keys), regions=["tumor", "liver"]),
    ]
    diff2, results2 = difference_table([(rows["maml-arterial-only"], rows["unet-arterial"]),
                                        (rows["maml-venous-only"], rows["unet-venous"]),
                                        (rows["maml"], rows["maml-venous-only"]),
                                        (rows["maml"], rows["maml-arterial-only"])], "tumor", args.bootstrap)
    lines += ["Tumour Dice, paired differences:", "", diff2]

    ranking = sorted(table1_keys, key=lambda k: -dice_mean(rows[k]))
    claimed = ["maml", "ms-ma"]
    lines += [
        "### Against the paper's claims",
        "",
        ("The paper reports, on its two-phase liver tumour data, MAML above MS+MA above the MS+Ensemble and "
        "early-fusion baselines in tumour Dice (Table 1). Table 2 asks whether a MAML branch, trained jointly "
        "with the other phase's branch (mutual learning), segments from its phase alone at least as well as a "
        "U-Net trained on that phase alone -- the premise of handling a missing phase with the branch. Here:"),
        "",
        "* Tumour Dice [%] ranking found: " + " > ".join(f"{rows[k].title} ({100 * dice_mean(rows[k]):.2f})"
                                                    for k in ranking) + ".",
    ]
    floor = [rows[k].title for k in table1_keys if dice_mean(rows[k]) < FLOOR_DICE]
    if floor:
        lines.append(f"* Floor effect: {', '.join(floor)} reach(es) under {100 * FLOOR_DICE:.0f} % tumour Dice, i.e. "
                     "do not find the tumour at all at this budget; their order among themselves is not tested, and "
                     "a difference to them measures which arm starts to find tumours first.")
    liver_ranking = sorted(table1_keys, key=lambda k: -dice_mean(rows[k], "liver"))
    lines.append("* Liver Dice [%] ranking (not a claim of the paper, but a structure every arm learns here): "
                 + " > ".join(f"{rows[k].title} ({100 * dice_mean(rows[k], 'liver'):.2f})" for k in liver_ranking)
                 + ".")
    for first, second, d in results1:
        lines.append(f"* {first.title} vs {second.title}: {100 * d['mean']:+.2f} points, {verdict(d)}.")
    for first, second, d in results2[:2]:
        lines.append(f"* Table 2, {first.title} vs {second.title}: {100 * d['mean']:+.2f} points, {verdict(d)}.")
    order_holds = ranking[:2] == claimed
    lines += [
        "* The paper's top two (MAML, then MS+MA) " + ("are" if order_holds else "are not")
        + " the top two here" + (", " if order_holds else "; ")
        + "read the paired CIs above before taking an order as shown: with "
        f"{n_cases} cases, differences whose CI contains 0 are not resolved by this experiment.",
        "",
        ("What a phantom cannot test: the phantoms' anatomy, lesion shapes and contrast timing are simplified and "
        "generated by one program, so absolute Dice and ASSD say nothing about real CT (the paper's data are real "
        "two-phase liver CT). The phantom builds phase-specific lesion types on purpose (some visible mainly in "
        "one phase), so complementary information between the phases exists by construction; whether real "
        "arterial/venous pairs carry as much is not tested. The budget is a CPU one "
        f"({args.iterations} iterations instead of nnU-Net's 250 000, networks at the bundled laptop widths), so "
        "every arm is far from converged and the comparison is of early training; a ranking can change with a "
        "longer schedule. The test set is one seed block of one generator; the CIs cover case-to-case variation "
        "within it, not training-seed variation (each arm is trained once, seed "
        f"{args.seed})."),
        "",
        "### Commands and run time",
        "",
        "```",
        f"{script_command}",
        "```",
        "",
        ("Each arm was trained with (from the repository root, OMP_NUM_THREADS="
        f"{args.threads}):"),
        "",
        "```",
        *[commands[arm.key] for arm in ARMS],
        "```",
        "",
        ("Each evaluation is what `mmseg evaluate` computes (bootstrap seed 0); for example MAML with the venous "
        "phase missing:"),
        "",
        "```",
        (f"python -m MultiModalSegLib evaluate --model {args.work / 'maml' / 'last'} --data '{args.test_spec}' "
        f"--missing venous --overlap {args.overlap} --bootstrap {args.bootstrap} --output EVAL_FOLDER"),
        "```",
        "",
        ("MS+Ensemble is computed by the script (mean of the two single-phase U-Nets' softmax probabilities from "
        "`inference.predict`, argmax), scored with the same per-case metrics."),
        "",
        (f"Training time, all arms: {sum(train_seconds.values()) / 60:.1f} min; evaluation time: "
        f"{sum(row.seconds for row in rows.values()) / 60:.1f} min; wall time of each invocation of the script "
        "on this work folder (a later one reuses the finished arms and evaluations): "
        + ", ".join(f"{float(run['wall_seconds']) / 60:.1f} min" for run in invocations) + "."),
        "",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ main


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    from MultiModalSegLib.training.cli_verbs import parse_patch_size

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="folder for the packages, logs and evaluations")
    parser.add_argument("--markdown", type=Path, required=True, help="where to write the `## MAML` section")
    parser.add_argument("--iterations", type=int, default=300, help="training iterations of every arm (default 300)")
    parser.add_argument("--test-cases", type=int, default=20, help="held-out test phantoms (default 20)")
    parser.add_argument("--train-cases", type=int, default=40, help="training phantoms (default 40)")
    parser.add_argument("--patch", type=parse_patch_size, default=(32, 64, 64), help="patch ZxYxX (default 32x64x64)")
    parser.add_argument("--batch", type=int, default=2, help="batch size (default 2)")
    parser.add_argument("--seed", type=int, default=1337, help="training seed of every arm (default 1337)")
    parser.add_argument("--checkpoint-every", type=int, default=100, help="iterations between checkpoints")
    parser.add_argument("--overlap", type=float, default=0.5, help="sliding-window overlap (default 0.5, nnU-Net's)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1") or 1),
                        help="torch threads per process (default OMP_NUM_THREADS or 1)")
    parser.add_argument("--shape", default=None, metavar="ZxYxX",
                        help="phantom grid (default the phantom's 48x128x128); smaller for a smoke run")
    args = parser.parse_args(argv)
    for name in ("iterations", "test_cases", "train_cases", "batch", "checkpoint_every", "bootstrap", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.test_cases < 2:
        parser.error("--test-cases must be at least 2 (a standard deviation needs two cases)")
    query = f"?shape={args.shape}" if args.shape else ""
    args.train_spec = f"phantom:liver-ct2:{args.train_cases}:{TRAIN_SEED_BLOCK}{query}"
    args.test_spec = f"phantom:liver-ct2:{args.test_cases}:{TEST_SEED_BLOCK}{query}"
    args.work = args.work.resolve()
    return args


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    args = parse_arguments(argv)
    script_command = shlex.join(["python", "tools/reproduce_maml.py", *(sys.argv[1:] if argv is None else argv)])
    import torch

    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    try:
        trained = {arm.key: train_arm(arm, args) for arm in ARMS}
        commands = {arm.key: shlex.join(train_command(arm, args, args.work / arm.key, False)) for arm in ARMS}
        packages = {arm.key: args.work / arm.key / "last" for arm in ARMS}

        from MultiModalSegLib.datasets import load_cases

        print(f"loading {args.test_spec}", flush=True)
        cases = load_cases(args.test_spec, modalities=list(PHASES))
        rows: dict[str, Evaluated] = {}
        titles = {arm.key: arm.title for arm in ARMS}
        for key in ("unet-early-fusion", "ms-ma", "maml"):
            rows[key] = evaluate_package(key, titles[key], packages[key], cases, [], args)
        rows["ms-ensemble"] = evaluate_ensemble(
            "ms-ensemble", "MS+Ensemble (mean of the single-phase U-Nets)",
            {"arterial": packages["unet-arterial"], "venous": packages["unet-venous"]}, cases, args)
        for phase in PHASES:
            key = f"unet-{phase}"
            rows[key] = evaluate_package(key, titles[key], packages[key], restrict(cases, (phase,)), [], args)
            other = next(p for p in PHASES if p != phase)
            rows[f"maml-{phase}-only"] = evaluate_package(
                f"maml-{phase}-only", f"MAML, {phase} only ({other} missing)", packages["maml"], cases, [other], args)
        parameters = {arm.key: parameter_count(packages[arm.key]) for arm in ARMS}
        invocations = previous_invocations(args.work) + [
            {"command": script_command, "wall_seconds": round(time.perf_counter() - started, 1)}]
        markdown = write_markdown(args, trained, rows, parameters, commands, invocations, script_command)
    except MultiModalSegError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.markdown, markdown)
    atomic_write_json(args.work / "run.json", {
        "invocations": invocations,
        "train_spec": args.train_spec, "test_spec": args.test_spec, "iterations": args.iterations,
        "trained": {key: {"seconds": value["seconds"], "iterations": value["iterations"]}
                    for key, value in trained.items()},
        "parameters": parameters})
    print(f"wrote {args.markdown} ({(time.perf_counter() - started) / 60:.1f} min)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
