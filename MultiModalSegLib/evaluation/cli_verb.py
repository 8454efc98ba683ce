"""The ``evaluate`` verb: ``mmseg evaluate --model M --data SPEC --output DIR [--missing MODALITY ...]``.

``cli.py`` calls :func:`add_parsers` to register it; parsing imports neither torch nor
SimpleITK. Events on stdout (JSON lines): ``started``, ``progress`` (stage ``loading``, then
stage ``evaluation`` once per case with its Dice per label), ``warning`` (skipped cases,
unknown label values) and ``result`` with the files written and the mean Dice per label;
a user error prints an ``error`` event with a sentence and exits with code 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from MultiModalSegLib.argtypes import add_postprocessing_arguments, positive_int
from MultiModalSegLib.destinations import OUTPUT_REMEDY, check_writable_folder
from MultiModalSegLib.errors import MultiModalSegError

EXIT_OK = 0


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Register ``evaluate`` on the ``mmseg`` sub-command parser."""
    parser = subparsers.add_parser(
        "evaluate", help="score a model on labeled cases (Dice, Jaccard, ASSD, HD95, ASD; bootstrap CIs)",
        description="Segment every labeled case of a data set with a model package and score it against its label "
                    "map. Writes OUTPUT/per_case.csv (one row per case and label), OUTPUT/summary.json and "
                    "OUTPUT/summary.md (mean ± std and a bootstrap 95 % CI per label, in the layout of the MAML "
                    "and DTC papers' tables).")
    parser.add_argument("--model", required=True, help="model id (see `mmseg models`) or package folder")
    parser.add_argument("--data", required=True,
                        help="nnU-Net folder (DIR, DIR:test, ...), BraTS-style folder, case-list .json, or "
                             "phantom:KIND:N[:SEED]")
    parser.add_argument("--missing", nargs="+", action="extend", default=[], metavar="MODALITY",
                        help="leave these modalities out of every case's inputs (MAML models)")
    parser.add_argument("--output", required=True, type=Path, help="output folder")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda[:N]")
    parser.add_argument("--overlap", type=float, default=0.5, help="sliding-window overlap in [0, 1) (default 0.5)")
    parser.add_argument("--batch-size", type=positive_int, default=1, help="windows per forward pass (default 1)")
    add_postprocessing_arguments(parser)
    parser.add_argument("--bootstrap", type=positive_int, default=1000,
                        help="bootstrap resamples for the 95 %% CI of each mean (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    parser.add_argument("--region", action="append", default=[], metavar="NAME=V,V",
                        help="also score the union of these label values, e.g. \"whole tumor=1,2,4\" (repeatable; "
                             "the manifest's regions are always scored)")
    parser.add_argument("--save-predictions", action="store_true",
                        help="also write each predicted label map to OUTPUT/predictions/CASE.nii.gz")
    parser.add_argument("--overwrite", action="store_true", help="allow writing into a non-empty output folder")
    parser.set_defaults(run=run_evaluate)


def _check_output_folder(output: Path, overwrite: bool) -> None:
    if output.exists() and not output.is_dir():
        raise MultiModalSegError(f"The output {output} is a file; give a folder.")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise MultiModalSegError(f"The output folder {output} is not empty; choose a new folder or pass --overwrite.")
    check_writable_folder(output, "output folder", OUTPUT_REMEDY)


def _load_cases_for(load_cases: Any, data: str, modalities: list[str], left_out: list[str]) -> list[Any]:
    """The cases with the model's modalities; with ``--missing``, the left-out ones only where the data has them.

    A left-out modality that the data holds is still loaded (the evaluation removes it from
    the inputs) because the label map lies on the reference modality's grid and is checked
    against it; data without it load with the remaining modalities.
    """
    if left_out:
        try:
            return load_cases(data, modalities=modalities)
        except MultiModalSegError:
            pass  # the data lack a left-out modality (or something else, which the next call reports)
    return load_cases(data, modalities=[name for name in modalities if name not in left_out])


def run_evaluate(args: argparse.Namespace, reporter: Any) -> int:
    """Load the model and the cases, evaluate, write the three files and report."""
    from MultiModalSegLib.datasets import load_cases
    from MultiModalSegLib.evaluation.case_metrics import parse_region
    from MultiModalSegLib.evaluation.evaluate import check_missing, evaluate_model
    from MultiModalSegLib.weights import load_model_package

    if not 0.0 <= args.overlap < 1.0:
        raise MultiModalSegError(f"--overlap must be in [0, 1), got {args.overlap}.")
    regions = [parse_region(text) for text in args.region]
    _check_output_folder(args.output, args.overwrite)
    reporter.emit("started", verb="evaluate", model=str(args.model), data=str(args.data), missing=list(args.missing))
    package = load_model_package(args.model)
    left_out = check_missing(package, args.missing)
    reporter.progress("loading", 0, 1)
    cases = _load_cases_for(load_cases, args.data, package.modalities, left_out)
    reporter.progress("loading", 1, 1, cases=len(cases))

    def case_done(done: int, total: int, info: dict[str, Any]) -> None:
        fields = {"case": info["case_id"], "available": info["available"], "dice": info["dice"],
                  "seconds": info["seconds"]} if info else {}
        reporter.progress("evaluation", done, total, **fields)

    result = evaluate_model(package, cases, missing=left_out, device=args.device, overlap=args.overlap,
                            batch_size=args.batch_size, largest_component=args.largest_component, tta=args.tta,
                            regions=regions,
                            bootstrap=args.bootstrap, seed=args.seed, progress=case_done,
                            predictions_folder=(args.output / "predictions") if args.save_predictions else None,
                            data=str(args.data))
    for skipped in result.skipped:
        reporter.warning(f"Case '{skipped['case_id']}' has no label map and was skipped.", case=skipped["case_id"])
    for warning in result.warnings:
        reporter.warning(warning)
    reporter.progress("writing", 0, 1)
    record = result.write(args.output)
    reporter.progress("writing", 1, 1)
    output = args.output.resolve()
    reporter.result(
        output=str(output), files=record["files"], per_case_csv=str(output / "per_case.csv"),
        summary_json=str(output / "summary.json"), summary_md=str(output / "summary.md"),
        n_cases=len(result.cases), missing=result.missing, available=result.available,
        mean_dice={region.name: region.metrics["dice"].mean for region in result.summary},
        timing=result.timing)
    return EXIT_OK
