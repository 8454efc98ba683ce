"""The ``train`` and ``finetune`` verbs and ``models --versions / --rollback``.

``cli.py`` calls :func:`add_parsers` to register them; parsing imports neither torch nor
SimpleITK. Exit codes: 0 done, 2 a user error (``error`` event with a sentence), 130 after
SIGINT and 143 after SIGTERM (``cancelled`` event; nothing partial is written), 1 a crash.

Under ``torchrun --nproc_per_node N -m MultiModalSegLib train ...`` every process runs the
verb; only rank 0 prints events and writes files.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any

from MultiModalSegLib.argtypes import non_negative_int, positive_int
from MultiModalSegLib.destinations import OUTPUT_REMEDY, check_writable_folder
from MultiModalSegLib.errors import MultiModalSegError

EXIT_OK = 0
EXIT_USER_ERROR = 2


def parse_patch_size(text: str) -> tuple[int, int, int]:
    """``"64"`` -> (64, 64, 64); ``"48x64x64"`` or ``"48,64,64"`` -> (48, 64, 64), in (z, y, x)."""
    parts = [p for p in re.split(r"[x,\s]+", str(text).strip().lower()) if p]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values = values * 3
    if len(values) != 3 or any(v < 8 for v in values):
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a patch size: give one size or three as ZxYxX (array order), each at least 8")
    return values[0], values[1], values[2]


def parse_architecture(text: str) -> dict[str, Any]:
    """``--architecture``: a JSON object, inline or in a ``.json`` file."""
    import json

    source = Path(text)
    try:
        raw = source.read_text(encoding="utf-8") if text.strip().endswith(".json") and source.is_file() else text
        value = json.loads(raw)
    except (OSError, json.JSONDecodeError) as exc:
        raise MultiModalSegError(f"--architecture must be a JSON object or a .json file holding one ({exc}).") from exc
    if not isinstance(value, dict):
        raise MultiModalSegError("--architecture must be a JSON object of network settings, e.g. '{\"max_filters\": 64}'.")
    return value


def _add_common_runtime_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default 1337, the DTC reference's)")
    parser.add_argument("--workers", type=non_negative_int, default=None,
                        help="patch-sampling worker processes (default 0: sample in the training process)")
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                        help="mixed precision on CUDA (ignored on CPU)")
    parser.add_argument("--learning-rate", type=float, default=None, help="initial learning rate")


def add_train_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``mmseg train --method maml|dtc|unet --data SPEC --output DIR ...``."""
    parser = subparsers.add_parser(
        "train", help="train a MAML or DTC model (or a U-Net baseline) from a data set",
        description="Train MAML (supervised, mutual learning), DTC (semi-supervised, dual-task consistency) or "
                    "the U-Net baseline of MAML's tables (--method unet: one nnU-Net style U-Net with every "
                    "modality of --modalities as an input channel; one modality gives the single-modality U-Net). "
                    "Writes OUTPUT/best and OUTPUT/last (model packages), OUTPUT/checkpoint (resumable) and "
                    "OUTPUT/result.json. Defaults are the reference code's; see docs. Multi-GPU: "
                    "torchrun --nproc_per_node N -m MultiModalSegLib train ...")
    parser.add_argument("--method", required=True, choices=("maml", "dtc", "unet"),
                        help="maml, dtc, or unet (early-fusion / single-modality U-Net with MAML's recipe)")
    parser.add_argument("--data", required=True,
                        help="cases: an nnU-Net raw folder, a BraTS folder, a JSON list, or phantom:KIND:N[:SEED]")
    parser.add_argument("--output", required=True, type=Path, help="output folder")
    parser.add_argument("--labeled", type=non_negative_int, default=None,
                        help="use the labels of the first N cases only; the others train unlabeled "
                             "(DTC --labelnum; MAML uses them through its branch-joint consistency)")
    parser.add_argument("--modalities", default=None,
                        help="comma-separated modality names to use, in this order (default: all, as read)")
    parser.add_argument("--iterations", type=positive_int, default=None,
                        help="iterations (default: MAML 250000 = nnU-Net 1000x250, DTC 6000)")
    parser.add_argument("--patch", type=parse_patch_size, default=None,
                        help="patch size ZxYxX in array order (default: MAML 64x64x64, DTC 80x112x112)")
    parser.add_argument("--batch", type=positive_int, default=None,
                        help="batch size per process (default: MAML 2, DTC 4)")
    parser.add_argument("--labeled-batch", type=positive_int, default=None,
                        help="labeled samples per batch (default: DTC 2; MAML all, or half with unlabeled cases)")
    parser.add_argument("--validation-cases", type=non_negative_int, default=None,
                        help="labeled cases held out for validation (default 20%%, at least 1)")
    parser.add_argument("--validate-every", type=positive_int, default=None, help="iterations between validations")
    parser.add_argument("--checkpoint-every", type=positive_int, default=None,
                        help="iterations between checkpoints (and the last package)")
    parser.add_argument("--base-filters", type=positive_int, default=None,
                        help="network width (MAML branch base 16, DTC VNet 16)")
    parser.add_argument("--depth", type=positive_int, default=None, help="MAML U-Net stages (default 4)")
    parser.add_argument("--lambda-intra", type=float, default=None, metavar="LAMBDA",
                        help="MAML: weight of the per-modality branch losses (default 1.0); 0 trains the joint "
                             "output alone, without mutual learning (the paper's MS+MA ablation)")
    parser.add_argument("--dtc-variant", default=None, choices=("seg", "lsf", "seg+lsf", "seg+lsf+dtc"),
                        help="DTC: the ablation row of DTC Table 2 (default seg+lsf+dtc, the full method); seg: "
                             "segmentation head only; lsf: level-set head only, the label read from the level set; "
                             "seg+lsf: both heads without the consistency term")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="any named setting of the training config (training/config.py), repeatable, applied "
                             "last, e.g. --set maml.lambda_deep=1 --set optimizer.step_fraction=0.4167 --set "
                             "dtc.consistency_rampup_iterations=1500")
    parser.add_argument("--architecture", default=None, metavar="JSON",
                        help="network settings merged over the above, as JSON or a .json file, e.g. the bundled "
                             "liver model's '{\"strides\": [[1,2,2],[2,2,2],[2,2,2],[2,2,2]], \"max_filters\": 64}'")
    parser.add_argument("--model-id", default=None, help="id written into the package manifest")
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT/checkpoint")
    parser.add_argument("--overwrite", action="store_true", help="start over in a non-empty output folder")
    _add_common_runtime_options(parser)
    parser.set_defaults(run=run_train)
    return parser


def add_finetune_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``mmseg finetune --model ID_OR_DIR --labeled CASES [--unlabeled CASES] --output DIR ...``."""
    parser = subparsers.add_parser(
        "finetune", help="fine-tune a model on corrected (labeled) and unlabeled cases",
        description="Fine-tune a model package semi-supervised: labeled cases through the supervised loss, "
                    "unlabeled ones through the method's consistency term. Writes a new version to the user "
                    "model store (the starting package is never modified) and OUTPUT/result.json.")
    parser.add_argument("--model", required=True, help="model id (see `mmseg models`) or package folder")
    parser.add_argument("--labeled", required=True, action="append",
                        help="labeled cases (any data spec); repeat to combine")
    parser.add_argument("--unlabeled", action="append", default=[],
                        help="unlabeled cases (any data spec); repeat to combine")
    parser.add_argument("--output", required=True, type=Path, help="folder for result.json and the checkpoint")
    parser.add_argument("--iterations", type=positive_int, default=None, help="iterations (default 200)")
    parser.add_argument("--patch", type=parse_patch_size, default=None,
                        help="patch size ZxYxX (default: the package's)")
    parser.add_argument("--batch", type=positive_int, default=None, help="batch size (default 2: 1 labeled)")
    parser.add_argument("--labeled-batch", type=positive_int, default=None, help="labeled samples per batch")
    parser.add_argument("--no-store", action="store_true",
                        help="write the new version to OUTPUT/model instead of the user model store")
    _add_common_runtime_options(parser)
    parser.set_defaults(run=run_finetune)
    return parser


def _augment_models_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``--versions [ID]`` and ``--rollback ID VERSION`` to the lead's ``models`` verb."""
    parser = subparsers.choices.get("models")
    if parser is None:
        parser = subparsers.add_parser("models", help="list models, their versions, roll back")
        parser.add_argument("--json", action="store_true", help="one JSON object per line on stdout")
        parser.set_defaults(run=None)
    existing = {a.dest for a in parser._actions}
    if "versions" not in existing:
        parser.add_argument("--versions", nargs="?", const="", default=None, metavar="ID",
                            help="list every version in the user model store (and bundled), current marked *")
    if "rollback" not in existing:
        parser.add_argument("--rollback", nargs=2, default=None, metavar=("ID", "VERSION"),
                            help="make an older version of a model current again")
    previous = parser.get_default("run")

    def run_models_with_versions(args: argparse.Namespace, reporter: Any) -> int:
        if getattr(args, "rollback", None) or getattr(args, "versions", None) is not None:
            return run_model_versions(args, reporter)
        if previous is None:
            return run_model_versions(argparse.Namespace(**{**vars(args), "versions": ""}), reporter)
        return previous(args, reporter)

    parser.set_defaults(run=run_models_with_versions)


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Register ``train``, ``finetune`` and the version options of ``models`` (called by cli.py)."""
    add_train_parser(subparsers)
    add_finetune_parser(subparsers)
    _augment_models_parser(subparsers)


# -- running the verbs -------------------------------------------------------------------------------------


def _quiet_unless_rank_zero(reporter: Any) -> None:
    """Under torchrun only rank 0 prints events."""
    if int(os.environ.get("RANK", "0")) != 0:
        reporter.quiet = True


def training_config_from_arguments(args: argparse.Namespace) -> Any:
    """The :class:`TrainingConfig` that ``mmseg train`` with these parsed arguments trains with (validated)."""
    from MultiModalSegLib.training.config import TrainingConfig

    overrides: dict[str, Any] = {
        "iterations": args.iterations, "patch_size": args.patch, "batch_size": args.batch,
        "labeled_batch_size": args.labeled_batch, "seed": args.seed, "device": args.device,
        "num_workers": args.workers, "amp": args.amp, "labeled_cases": args.labeled,
        "validation_cases": args.validation_cases, "validate_every": args.validate_every,
        "checkpoint_every": args.checkpoint_every,
    }
    config = TrainingConfig.for_method(args.method, **overrides)
    if args.learning_rate is not None:
        config.optimizer.learning_rate = float(args.learning_rate)
    if args.base_filters is not None:
        config.maml.base_filters = config.dtc.base_filters = int(args.base_filters)
    if args.depth is not None:
        config.maml.depth = int(args.depth)
    if getattr(args, "lambda_intra", None) is not None:
        if args.method != "maml":
            raise MultiModalSegError("--lambda-intra weighs MAML's branch losses; use it with --method maml only.")
        if not args.lambda_intra >= 0:
            raise MultiModalSegError(f"--lambda-intra must be 0 or more, not {args.lambda_intra}.")
        config.maml.lambda_intra = float(args.lambda_intra)
    if getattr(args, "dtc_variant", None) is not None:
        if args.method != "dtc":
            raise MultiModalSegError("--dtc-variant picks a DTC ablation row; use it with --method dtc only.")
        config.dtc.variant = args.dtc_variant
    if args.architecture:
        config.architecture_overrides = parse_architecture(args.architecture)
    for assignment in getattr(args, "settings", None) or []:
        config.apply_setting(assignment)
    config.validate()
    return config


def run_train(args: argparse.Namespace, reporter: Any) -> int:
    from MultiModalSegLib.training.cancellation import CancellationToken, TrainingCancelled, report_cancelled
    from MultiModalSegLib.training.resume import OPTION_FIELDS, check_resume_settings
    from MultiModalSegLib.training.train import train

    _quiet_unless_rank_zero(reporter)
    config = training_config_from_arguments(args)
    modalities = [m.strip() for m in args.modalities.split(",") if m.strip()] if args.modalities else None
    check_writable_folder(args.output, "output folder", OUTPUT_REMEDY)
    if args.resume:
        check_resume_settings(args.output, config, [dest for dest in OPTION_FIELDS if getattr(args, dest, None)
                                                    is not None], modalities, getattr(args, "settings", None) or ())
    command = " ".join(["mmseg", *sys.argv[1:]]) if sys.argv else "mmseg train"
    with CancellationToken() as token:
        try:
            outcome = train(config, data=args.data, output=args.output, modalities=modalities,
                            resume=args.resume, resume_iterations=args.iterations if args.resume else None,
                            overwrite=args.overwrite, model_id=args.model_id,
                            reporter=reporter, token=token, command=command)
        except TrainingCancelled as exc:
            return report_cancelled(reporter, exc)
    if outcome.is_main:
        reporter.result(**outcome.summary())
    return EXIT_OK


def run_finetune(args: argparse.Namespace, reporter: Any) -> int:
    from MultiModalSegLib.training.cancellation import (
        CancellationToken,
        TrainingCancelled,
        note_late_cancel,
        report_cancelled,
    )
    from MultiModalSegLib.training.config import FinetuneConfig
    from MultiModalSegLib.training.finetune import finetune

    _quiet_unless_rank_zero(reporter)
    config = FinetuneConfig()
    for name, value in (("iterations", args.iterations), ("patch_size", args.patch), ("batch_size", args.batch),
                        ("labeled_batch_size", args.labeled_batch), ("seed", args.seed), ("device", args.device),
                        ("num_workers", args.workers), ("amp", args.amp), ("learning_rate", args.learning_rate)):
        if value is not None:
            setattr(config, name, value)
    if args.batch is not None and args.labeled_batch is None:
        config.labeled_batch_size = max(1, args.batch // 2)
    config.validate()  # finetune() checks the output folder and the store before any work
    command = " ".join(["mmseg", *sys.argv[1:]]) if sys.argv else "mmseg finetune"
    with CancellationToken() as token:
        try:
            outcome = finetune(args.model, labeled=args.labeled, unlabeled=args.unlabeled, output=args.output,
                               config=config, reporter=reporter, token=token, command=command,
                               write_to_store=not args.no_store)
        except TrainingCancelled as exc:
            return report_cancelled(reporter, exc)
        note_late_cancel(token, reporter, "the new version was saved")
    if outcome.is_main:
        reporter.result(**outcome.summary())
    return EXIT_OK


def run_model_versions(args: argparse.Namespace, reporter: Any) -> int:
    """``models --versions [ID]`` (a table, or ``model_version`` JSON lines with --json) and ``--rollback``."""
    from MultiModalSegLib import model_store

    if getattr(args, "rollback", None):
        model_id, version_text = args.rollback
        try:
            version = int(version_text.lstrip("vV"))
        except ValueError:
            raise MultiModalSegError(f"'{version_text}' is not a version number; see `mmseg models --versions`.") from None
        package = model_store.rollback(model_id, version)
        reporter.result(id=package.id, version=package.version, folder=str(package.folder),
                        source="bundled" if package.read_only else "user",
                        message=f"{package.id} version {package.version} is now current.")
        return EXIT_OK
    model_id = args.versions or None
    entries = model_store.list_model_versions(model_id)
    if model_id and not entries:
        raise MultiModalSegError(f"No model '{model_id}' is installed; see `mmseg models` for the known ids.")
    if getattr(args, "json", False):
        for entry in entries:
            reporter.emit("model_version", **entry)
    else:
        print(model_store.format_versions_table(entries))
        print(f"\nuser model store: {model_store.user_model_store_dir()}  (* = current; "
              "`mmseg models --rollback ID VERSION` changes it)")
    return EXIT_OK
