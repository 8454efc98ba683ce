"""``mmseg`` / ``python -m MultiModalSegLib``: the command-line interface.

Verbs: ``predict``, ``models``, ``demo`` (and, from the training module, ``train`` and
``finetune``). Long verbs print JSON-line events on stdout (``progress.py``) with ``--json``
or when stdout is not a terminal, and progress bars plus a short summary on a terminal
(``human_progress.py``); a user error prints an ``error`` event with a sentence and exits
with code 2. Parsing imports neither torch nor SimpleITK, so ``mmseg --help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from MultiModalSegLib import __version__
from MultiModalSegLib.argtypes import add_postprocessing_arguments
from MultiModalSegLib.destinations import OUTPUT_REMEDY, check_writable_folder
from MultiModalSegLib.errors import MultiModalSegError
from MultiModalSegLib.human_progress import reporter_for
from MultiModalSegLib.progress import ProgressReporter

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USER_ERROR = 2


def parse_named_inputs(pairs: list[str]) -> dict[str, Path]:
    """``["arterial=a.nii.gz", ...]`` -> ``{"arterial": Path("a.nii.gz")}``, with clear errors."""
    named: dict[str, Path] = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        name = name.strip()
        if not sep or not name or not path:
            raise MultiModalSegError(
                f"Input '{pair}' is not NAME=PATH; write each input as a modality name and a file, "
                "for example --input venous=venous.nii.gz.")
        if name in named:
            raise MultiModalSegError(f"Modality '{name}' was given twice; give each modality once.")
        named[name] = Path(path)
    return named


def _add_predict_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict", help="segment one case, or every case of a data set, with a model package",
        description="Segment one case (--input per modality, or --case FOLDER) or a whole data set (--data). "
                    "Writes the label map, probabilities, attention / level-set and uncertainty maps as NIfTI, "
                    "and result.json listing every file; with --data one such folder per case plus summary.csv "
                    "and summary.json (exit code 3 when a case failed).")
    parser.add_argument("--model", required=True, help="model id (see `mmseg models`) or package folder")
    sources = parser.add_mutually_exclusive_group()
    sources.add_argument("--input", action="append", default=[], metavar="NAME=PATH",
                         help="one modality image (NIfTI, NRRD, MHA or a DICOM folder); repeat per modality")
    sources.add_argument("--case", type=Path, default=None, metavar="FOLDER",
                         help="a folder with one image per modality, matched by the model's name patterns")
    sources.add_argument("--data", default=None, metavar="SPEC",
                         help="every case of a data set: an nnU-Net raw folder (DIR, DIR:test, DIR/imagesTs), a "
                              "folder of case folders, or a case-list .json; reruns skip finished cases")
    parser.add_argument("--allow-missing", action="store_true",
                        help="with --case or --data: segment a case that lacks a modality (MAML models)")
    parser.add_argument("--output", required=True, type=Path, help="output folder")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda[:N]")
    parser.add_argument("--overlap", type=float, default=0.5, help="sliding-window overlap in [0, 1) (default 0.5)")
    parser.add_argument("--batch-size", type=int, default=2, help="windows per forward pass (default 2)")
    add_postprocessing_arguments(parser)
    parser.add_argument("--overwrite", action="store_true",
                        help="allow writing into a non-empty output folder (--data: segment finished cases again)")
    parser.set_defaults(run=run_predict)


def _check_output_folder(output: Path, inputs: dict[str, Path], overwrite: bool) -> None:
    """Never write over the user's inputs or an earlier result unless asked to."""
    resolved_inputs = {p.resolve() for p in inputs.values()}
    output_resolved = output.resolve()
    for path in resolved_inputs:
        if path == output_resolved or output_resolved in path.parents:
            raise MultiModalSegError(
                f"The output folder {output} contains the input {path}; choose another output folder so "
                "your inputs are never overwritten.")
    if output.exists() and not output.is_dir():
        raise MultiModalSegError(f"The output {output} is a file; give a folder.")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise MultiModalSegError(
            f"The output folder {output} is not empty; choose a new folder or pass --overwrite.")
    check_writable_folder(output, "output folder", OUTPUT_REMEDY)


def run_predict(args: argparse.Namespace, reporter: ProgressReporter) -> int:
    from MultiModalSegLib.staged_output import remove_stale_staging
    from MultiModalSegLib.training.cancellation import CancellationToken, RunCancelled, report_cancelled

    if args.data is not None:
        from MultiModalSegLib.batch_predict import run_batch_predict

        return run_batch_predict(args, reporter)
    if args.case is not None:
        from MultiModalSegLib.case_folder import inputs_for_case_folder

        inputs = inputs_for_case_folder(args.model, args.case, args.allow_missing, reporter)
    else:
        inputs = parse_named_inputs(args.input)
    if not inputs:
        raise MultiModalSegError("No input was given; add --input NAME=PATH for each modality.")
    if not 0.0 <= args.overlap < 1.0:
        raise MultiModalSegError(f"--overlap must be in [0, 1), got {args.overlap}.")
    if args.batch_size < 1:
        raise MultiModalSegError(f"--batch-size must be at least 1, got {args.batch_size}.")
    remove_stale_staging(args.output)  # what a killed run left is no reason to call the folder busy
    _check_output_folder(args.output, inputs, args.overwrite)
    with CancellationToken() as token:
        try:
            return _predict_case(args, inputs, reporter, token)
        except RunCancelled as exc:
            return report_cancelled(reporter, exc)


def _predict_case(args: argparse.Namespace, inputs: dict[str, Path], reporter: ProgressReporter, token: Any) -> int:
    """Load, segment and write one case; SIGTERM/SIGINT (``token``) stop it at the next window.

    The files go to a staging folder that becomes ``args.output`` only when all are written
    (staged_output.py): a cancel before that leaves the output as it was.
    """
    from MultiModalSegLib.imageio import read_image
    from MultiModalSegLib.inference import predict
    from MultiModalSegLib.staged_output import staged_output_folder
    from MultiModalSegLib.training.cancellation import note_late_cancel
    from MultiModalSegLib.weights import load_model_package

    windows = [0]

    def check_cancelled() -> None:
        token.check(windows[0], "Prediction", "window")

    def on_progress(done: int, total: int) -> None:
        windows[0] = done
        reporter.progress("inference", done, total)
        check_cancelled()

    reporter.emit("started", verb="predict", model=str(args.model))
    package = load_model_package(args.model)
    check_cancelled()
    images = {}
    for index, (name, path) in enumerate(inputs.items(), start=1):
        images[name] = read_image(path)
        reporter.progress("loading", index, len(inputs), modality=name)
        check_cancelled()
    result = predict(package, images, device=args.device, overlap=args.overlap, batch_size=args.batch_size,
                     largest_component=args.largest_component, tta=args.tta, progress=on_progress)
    del images
    for message in result.warnings:
        reporter.warning(message)
    with staged_output_folder(args.output) as staged:
        reporter.progress("writing", 0, 1)
        summary = result.write(staged.folder, inputs={k: str(v.resolve()) for k, v in inputs.items()})
        check_cancelled()  # the last moment a cancel leaves the output as it was
        staged.commit()
    note_late_cancel(token, reporter, "the results were written")
    reporter.progress("writing", 1, 1)
    reporter.result(output=str(args.output.resolve()), result_json=str((args.output / "result.json").resolve()),
                    files=summary["files"], timing=summary["timing"], available=summary["available"])
    return EXIT_OK


def _add_models_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="list the model packages that can be used",
                                   description="List bundled model packages and the current versions in the "
                                               "user model store.")
    parser.add_argument("--json", action="store_true", help="one JSON object per model on stdout")
    parser.set_defaults(run=run_models)


def run_models(args: argparse.Namespace, reporter: ProgressReporter) -> int:
    from MultiModalSegLib.weights import find_model_packages

    from MultiModalSegLib.model_table import format_models_table, model_row

    packages = find_model_packages()
    if args.json:
        for package in packages:
            reporter.emit("model", **model_row(package))
        return EXIT_OK
    if not packages:
        print("No model packages found (bundled: Resources/Models; user store: see `mmseg models --help`).")
        return EXIT_OK
    print(format_models_table(packages))
    return EXIT_OK


def _add_demo_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="run the demo on bundled sample data",
                                   description="Generate phantom sample cases, and pictures of them, into a folder.")
    parser.add_argument("--output", type=Path, default=Path("demo-output"), help="output folder (default demo-output)")
    parser.add_argument("--seed", type=int, default=2026, help="phantom seed (held out from training seeds)")
    parser.set_defaults(run=run_demo)


def run_demo(args: argparse.Namespace, reporter: ProgressReporter) -> int:
    from MultiModalSegLib.demo import run_demo as demo

    check_writable_folder(args.output, "output folder", OUTPUT_REMEDY)
    summary = demo(args.output, seed=args.seed, reporter=reporter)
    reporter.result(**summary)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmseg", description="MultiModalSeg backend: MAML and DTC segmentation of multi-modal medical images.")
    parser.add_argument("--version", action="version", version=f"MultiModalSegLib {__version__}")
    subparsers = parser.add_subparsers(dest="verb", metavar="VERB")
    _add_predict_parser(subparsers)
    _add_models_parser(subparsers)
    _add_demo_parser(subparsers)
    for module_name in ("MultiModalSegLib.training.cli_verbs",
                        "MultiModalSegLib.evaluation.cli_verb"):
        _add_optional_verbs(subparsers, module_name)
    for verb_parser in subparsers.choices.values():  # every verb: JSON lines even on a terminal
        if "json" not in {action.dest for action in verb_parser._actions}:
            verb_parser.add_argument("--json", action="store_true",
                                     help="print JSON lines (the default when stdout is not a terminal)")
    return parser


def _add_optional_verbs(subparsers: argparse._SubParsersAction, module_name: str) -> None:
    """Verbs that live with their subsystem (training) register themselves here."""
    import importlib

    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            return
        raise
    module.add_parsers(subparsers)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return EXIT_USER_ERROR
    reporter = reporter_for(args)
    try:
        return int(args.run(args, reporter) or EXIT_OK)
    except MultiModalSegError as exc:
        reporter.error(str(exc), **exc.details)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        reporter.emit("cancelled", message="Interrupted.")
        return 130
    except Exception as exc:  # a bug, not the user's fault: say so, keep the traceback on stderr
        import traceback

        traceback.print_exc(file=sys.stderr)
        reporter.error(f"Internal error ({type(exc).__name__}: {exc}); please report it with the log above.")
        return EXIT_FAILURE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
