"""MS+Ensemble of MAML Table 1: the mean of single-phase U-Nets' softmax probabilities, scored like ``mmseg evaluate``.

It has no training of its own: each member is a U-Net trained on one phase (an arm of the
reproduction). Every test case goes through :func:`MultiModalSegLib.inference.predict` once per
member (as ``mmseg predict`` would segment it with that member alone); the foreground
probabilities are averaged voxel by voxel, the argmax is scored with the same per-case metrics
and summaries as ``mmseg evaluate``, and the folder gets the same ``per_case.csv``,
``summary.json`` and ``summary.md``. Run by the reproduction as a child process::

    python tools/reproduction/ensemble.py --member arterial=PKG_A --member venous=PKG_V \\
        --data test.json --output FOLDER [--overlap 0.5] [--bootstrap 1000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: the repository and tools/ on the path
    sys.path[:0] = [str(Path(__file__).resolve().parents[2]), str(Path(__file__).resolve().parents[1])]

from MultiModalSegLib.errors import MultiModalSegError


def evaluate_ensemble(members: dict[str, Path], cases: list[Any], *, overlap: float, bootstrap: int,
                      data: str | None = None) -> Any:
    """Score the ensemble of ``members`` ({phase: package folder}) on ``cases``; an ``EvaluationResult``."""
    import numpy as np
    import SimpleITK as sitk

    from MultiModalSegLib.evaluation import EvaluationResult
    from MultiModalSegLib.evaluation.case_metrics import case_metrics, regions_for_labels
    from MultiModalSegLib.evaluation.summary import summarize
    from MultiModalSegLib.inference import predict
    from MultiModalSegLib.preprocessing import resample_like
    from MultiModalSegLib.weights import load_model_package

    started = time.perf_counter()
    packages = {phase: load_model_package(path) for phase, path in members.items()}
    first = next(iter(packages.values()))
    labels = first.labels
    for phase, package in packages.items():
        if package.labels != labels or package.method != "unet" or package.modalities != [phase]:
            raise MultiModalSegError(
                f"The ensemble member {phase} ({package.folder}) is not a U-Net of the phase {phase} alone with the "
                "labels of the others; give single-phase U-Nets trained on the same labels.")
    networks = {phase: package.build_network("cpu") for phase, package in packages.items()}
    regions = regions_for_labels(labels, first.manifest.get("regions", []), where="the ensemble's labels")
    values = np.array([0] + [int(label["value"]) for label in labels], dtype=np.uint8)
    rows, info = [], []
    for case in cases:
        if case.label is None:
            continue
        case_started = time.perf_counter()
        foreground = []
        for phase, package in packages.items():
            result = predict(package, {phase: case.images[phase]}, device="cpu", overlap=overlap, batch_size=1,
                             network=networks[phase])
            probabilities = {}
            for label in labels:
                image = sitk.GetImageFromArray(result.probabilities[label["name"]].astype(np.float32))
                image.CopyInformation(result.reference)
                # the members' outputs lie on their own inputs' grids: bring each onto the label's grid
                probabilities[label["name"]] = sitk.GetArrayFromImage(resample_like(image, case.label, "linear"))
            foreground.append(np.stack([probabilities[label["name"]] for label in labels]))
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
    if not rows:
        raise MultiModalSegError("None of the cases has a label map; the ensemble needs labeled test cases.")
    summary = summarize(rows, regions, resamples=bootstrap, seed=0, alpha=0.05)
    return EvaluationResult(
        model={"id": "ms-ensemble", "version": 1, "method": "unet ensemble",
               "members": {phase: str(path) for phase, path in members.items()}},
        data=data, missing=[], available=list(packages), regions=regions, rows=rows, summary=summary, cases=info,
        statistics={"resamples": bootstrap, "seed": 0, "alpha": 0.05,
                    "ci": "percentile bootstrap of the mean over cases", "std": "ddof=1"},
        timing={"device": "cpu", "seconds": round(time.perf_counter() - started, 3), "overlap": overlap})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--member", action="append", required=True, metavar="PHASE=PACKAGE",
                        help="a single-phase U-Net package and its phase (repeat for each member)")
    parser.add_argument("--data", required=True, help="labeled test cases (any mmseg data spec)")
    parser.add_argument("--output", required=True, type=Path, help="folder for per_case.csv and the summaries")
    parser.add_argument("--overlap", type=float, default=0.5, help="sliding-window overlap (default 0.5)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of the summaries' CIs")
    args = parser.parse_args(argv)
    try:
        members = {}
        for text in args.member:
            phase, separator, folder = text.partition("=")
            if not separator:
                raise MultiModalSegError(f"--member takes PHASE=PACKAGE, not '{text}'.")
            members[phase.strip()] = Path(folder)
        from MultiModalSegLib.datasets import load_cases

        cases = load_cases(args.data, modalities=list(members))
        result = evaluate_ensemble(members, cases, overlap=args.overlap, bootstrap=args.bootstrap, data=args.data)
        result.write(args.output)
    except MultiModalSegError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.output}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
