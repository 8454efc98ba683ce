"""Does fine-tuning help? Train on one phantom appearance, fine-tune on a shifted one, compare Dice.

A test-sized version of the clinical use: a model trained at one site meets scans with other
contrast timing and noise (the liver-ct2 phantom's ``appearance="shifted"``: early-arterial
timing, washed-out delayed venous phase, other noise), a clinician corrects two cases and
leaves four uncorrected, and the Slicer button fine-tunes on them.

1. ``train``: MAML in the bundled configuration (5 stages, base 8, max 64, first stride
   1x2x2; patch 32x64x64) on ``--train-cases`` standard-appearance two-phase CT phantoms
   (20 % of them held out for validation), ``--train-iterations`` iterations, SGD as nnU-Net.
   ``--start-model ID_OR_DIR`` skips this and starts from that package (e.g. the bundled
   ``maml-liver-ct2``, trained on standard phantoms).
2. Dice (liver, tumor) of the best package on ``--test-cases`` held-out *shifted* phantoms,
   through ``inference.predict`` (sliding window, as ``mmseg predict``).
3. ``finetune`` on 2 labeled + 4 unlabeled shifted phantoms (other seeds), 200 iterations
   (FinetuneConfig defaults), and the same Dice again. With ``--ablation`` also a
   fine-tuning on the 2 labeled cases alone, to show what the unlabeled ones add.

All phantoms are drawn at ``--shape`` (default: the phantom's own 48x128x128 grid, where the
tumours have realistic voxel counts; ``--shape 32x64x64`` is the same field of view at coarser
spacing and runs faster, but its tumours are a few dozen voxels and two labeled cases are then
too few to learn them).

Run: ``python bench/bench_finetune_shift.py [--train-iterations 600] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))

import numpy as np

from MultiModalSegLib.bundled_configs import liver_maml_architecture
from MultiModalSegLib.progress import ProgressReporter


def spec(count: int, seed: int, appearance: str, shape: str | None) -> str:
    text = f"phantom:liver-ct2:{count}:{seed}:{appearance}"
    return f"{text}?shape={shape}" if shape else text


def evaluate(package, cases) -> dict[str, float]:
    """Mean Dice per label over ``cases`` (label values as the manifest names them)."""
    import SimpleITK as sitk

    from MultiModalSegLib.inference import predict
    from MultiModalSegLib.metrics import dice

    scores: dict[str, list[float]] = {label["name"]: [] for label in package.labels}
    for case in cases:
        result = predict(package, case.images, device="cpu")
        reference = sitk.GetArrayFromImage(case.label)
        for label in package.labels:
            truth = reference == label["value"]
            if truth.any():
                scores[label["name"]].append(dice(result.labelmap == label["value"], truth))
    summary = {name: round(float(np.mean(values)), 4) for name, values in scores.items() if values}
    summary["mean"] = round(float(np.mean(list(summary.values()))), 4)
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-cases", type=int, default=10)
    parser.add_argument("--train-iterations", type=int, default=600)
    parser.add_argument("--finetune-iterations", type=int, default=200)
    parser.add_argument("--test-cases", type=int, default=4)
    parser.add_argument("--shape", default=None, help="phantom grid ZxYxX (default the phantom's 48x128x128)")
    parser.add_argument("--start-model", default=None, help="start from this package instead of training one")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--ablation", action="store_true", help="also fine-tune on the labeled cases alone")
    parser.add_argument("--keep", type=Path, default=None, help="keep the packages in this folder")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from MultiModalSegLib.datasets import load_cases
    from MultiModalSegLib.training.config import FinetuneConfig, TrainingConfig
    from MultiModalSegLib.training.finetune import finetune
    from MultiModalSegLib.training.train import train
    from MultiModalSegLib.weights import load_model_package

    bundled = liver_maml_architecture()["config"]
    overrides = {k: bundled[k] for k in ("strides", "max_filters", "ma_kernel", "absent_fill")}
    config = TrainingConfig.for_method(
        "maml", iterations=args.train_iterations, patch_size=(32, 64, 64), batch_size=2, device="cpu",
        seed=args.seed, validate_every=max(50, args.train_iterations // 4),
        checkpoint_every=max(50, args.train_iterations // 4), architecture_overrides=overrides)
    config.maml.base_filters = bundled["base_filters"]
    config.validate()
    train_spec = spec(args.train_cases, 0, "standard", args.shape)
    labeled_spec = spec(2, 1, "shifted", args.shape)
    unlabeled_spec = spec(4, 2, "shifted", args.shape)
    test_spec = spec(args.test_cases, 3, "shifted", args.shape)
    standard_test_spec = spec(args.test_cases, 4, "standard", args.shape)
    results: dict = {"specs": {"train": train_spec, "labeled": labeled_spec, "unlabeled": unlabeled_spec,
                               "test_shifted": test_spec, "test_standard": standard_test_spec}}
    quiet = ProgressReporter(quiet=True)
    with tempfile.TemporaryDirectory() as scratch:
        root = args.keep or Path(scratch)
        os.environ["MMSEG_MODEL_STORE"] = str(root / "store")
        started = time.perf_counter()
        if args.start_model:
            start_package = load_model_package(args.start_model)
            results["train"] = {"start_model": str(start_package.folder), "iterations": None, "seconds": 0.0}
        else:
            trained = train(config, train_spec, root / "trained", overwrite=True, model_id="shift-liver",
                            reporter=quiet, command="bench/bench_finetune_shift.py")
            results["train"] = {"iterations": trained.iterations, "seconds": round(time.perf_counter() - started, 1),
                                "best_validation_dice": trained.best_metric, "best_iteration": trained.best_iteration}
            start_package = load_model_package(trained.best or trained.last)
        test_cases = load_cases(test_spec)
        standard_cases = load_cases(standard_test_spec)
        results["before"] = {"shifted": evaluate(start_package, test_cases),
                             "standard": evaluate(start_package, standard_cases)}

        finetune_config = FinetuneConfig(iterations=args.finetune_iterations, device="cpu", seed=args.seed)
        started = time.perf_counter()
        tuned = finetune(start_package.folder, labeled_spec, unlabeled_spec, root / "finetune", finetune_config,
                         reporter=quiet, write_to_store=False)
        results["finetune"] = {"iterations": tuned.iterations, "seconds": round(time.perf_counter() - started, 1),
                               "seconds_per_iteration": tuned.seconds_per_iteration}
        tuned_package = load_model_package(tuned.folder)
        results["after"] = {"shifted": evaluate(tuned_package, test_cases),
                            "standard": evaluate(tuned_package, standard_cases)}
        if args.ablation:
            labeled_only = finetune(start_package.folder, labeled_spec, None, root / "finetune-labeled-only",
                                    finetune_config, reporter=quiet, write_to_store=False)
            results["after_labeled_only"] = {"shifted": evaluate(load_model_package(labeled_only.folder), test_cases)}

    before, after = results["before"]["shifted"], results["after"]["shifted"]
    origin = (f"started from {results['train']['start_model']}" if args.start_model else
              f"trained {results['train']['iterations']} iterations on {args.train_cases} standard phantoms in "
              f"{results['train']['seconds']} s")
    print(f"{origin}; fine-tuned {results['finetune']['iterations']} iterations on 2 labeled + "
          f"4 unlabeled shifted phantoms in {results['finetune']['seconds']} s")
    print(f"{'Dice on held-out shifted phantoms':40} {'before':>8} {'after':>8}")
    for name in before:
        print(f"  {name:38} {before[name]:8.3f} {after[name]:8.3f}")
    if "after_labeled_only" in results:
        print(f"  {'mean, labeled-only fine-tuning':38} {'':8} {results['after_labeled_only']['shifted']['mean']:8.3f}")
    print(f"  {'mean on standard phantoms':38} {results['before']['standard']['mean']:8.3f} "
          f"{results['after']['standard']['mean']:8.3f}")
    results["improved"] = after["mean"] > before["mean"]
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if results["improved"] else 1


if __name__ == "__main__":
    sys.exit(main())
