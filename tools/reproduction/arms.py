"""Every trained arm and every evaluation of MAML Tables 1-2 and DTC Tables 1-2, as command lines.

Each arm trains with ``python -m MultiModalSegLib train`` (``mmseg train``), so whatever recipe
the library has (data plan, sampling, post-processing) is what the tables measure; each
evaluation is ``mmseg evaluate`` on the held-out test cases, except MS+Ensemble (``ensemble.py``).
Every difference an arm has from its paper's method is a named setting on its command line:

MAML (Zhang et al., MICCAI 2021), two-phase liver phantoms, tumour Dice:

* ``unet-early-fusion``: one U-Net, arterial and venous as input channels (``--method unet``);
* ``unet-arterial`` / ``unet-venous``: one U-Net on one phase (Table 2's single-phase rows and
  the two members of MS+Ensemble, which has no training of its own);
* ``ms-ma``: MAML without mutual learning: ``--lambda-intra 0`` drops the branches' own
  predictions from the loss, ``--set maml.lambda_deep=1`` keeps nnU-Net's deep supervision of
  their decoders (which every U-Net row has; losses/maml_loss.py explains the choice);
* ``maml``: MAML with the reference's loss weighting (``MAMLSettings`` defaults); evaluated with
  both phases and with either phase missing (Table 2).

DTC (Luo et al., AAAI 2021), left-atrium phantoms, Dice after largest-component post-processing:

* ``dtc-16-64``: DTC, 16 labeled + 64 unlabeled, batch 4 = 2 labeled + 2 unlabeled (the reference's);
* ``vnet-16`` / ``vnet-80``: the segmentation head alone (``--dtc-variant seg``) on the 16 labeled
  cases / on all 80 labeled (Table 1's lower and upper bound);
* ``lsf-16`` / ``seg-lsf-16``: Table 2's ablation rows (level-set head alone; both heads without
  the consistency term), 16 labeled;
* the supervised arms have batch 2, all labeled: as many labeled patches per iteration as DTC;
* every DTC arm: learning-rate steps at 2500/6000 of the run (``--set optimizer.step_fraction``) and
  the consistency ramp's 40 stairs scaled to the run, as the reference's schedule.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from reproduction.profiles import (
    DTC_REFERENCE_RAMP_STAIRS,
    DTC_STEP_FRACTION,
    PaperSize,
)

PAPERS = ("maml", "dtc")
PHASES = ("arterial", "venous")
CLAIM_LABEL = {"maml": "tumor", "dtc": "left_atrium"}  # the structure each paper's claims are about


@dataclass(frozen=True)
class Arm:
    """One trained network of a paper's tables."""

    paper: str
    key: str
    title: str  # ``{labeled}`` / ``{cases}`` are filled in from the profile's sizes
    method: str  # mmseg train --method
    modalities: tuple[str, ...] = ()  # mmseg train --modalities (empty: every modality of the data)
    labeled_only: bool = False  # DTC: train on the labeled part of the training cases only
    semi_supervised: bool = False  # DTC: all training cases, the first ``labeled_cases`` labeled
    options: tuple[str, ...] = ()  # the arm's own settings, as mmseg train arguments

    def describe(self, size: PaperSize) -> str:
        return self.title.format(labeled=size.labeled_cases, cases=size.train_cases,
                                 unlabeled=size.train_cases - size.labeled_cases)


@dataclass(frozen=True)
class Evaluation:
    """One row of a table: an arm's package (or the ensemble of several) scored on the test cases."""

    paper: str
    key: str
    title: str
    arms: tuple[str, ...]  # the arm evaluated, or the ensemble's members
    missing: tuple[str, ...] = ()  # modalities left out of every test case (MAML Table 2)
    largest_component: bool = False  # DTC's post-processing
    ensemble: bool = False

    def describe(self, size: PaperSize) -> str:
        return self.title.format(labeled=size.labeled_cases, cases=size.train_cases,
                                 unlabeled=size.train_cases - size.labeled_cases)


ARMS: tuple[Arm, ...] = (
    Arm("maml", "unet-early-fusion", "Early-fusion U-Net", "unet", PHASES),
    Arm("maml", "unet-arterial", "U-Net, arterial only", "unet", ("arterial",)),
    Arm("maml", "unet-venous", "U-Net, venous only", "unet", ("venous",)),
    Arm("maml", "ms-ma", "MS+MA (no mutual learning)", "maml", PHASES,
        options=("--lambda-intra", "0", "--set", "maml.lambda_deep=1")),
    Arm("maml", "maml", "MAML", "maml", PHASES),
    Arm("dtc", "dtc-16-64", "DTC, {labeled} labeled + {unlabeled} unlabeled", "dtc", semi_supervised=True,
        options=("--dtc-variant", "seg+lsf+dtc")),
    Arm("dtc", "vnet-16", "VNet (Seg), {labeled} labeled", "dtc", labeled_only=True,
        options=("--dtc-variant", "seg")),
    Arm("dtc", "vnet-80", "VNet (Seg), all {cases} labeled", "dtc", options=("--dtc-variant", "seg")),
    Arm("dtc", "lsf-16", "LSF, {labeled} labeled", "dtc", labeled_only=True, options=("--dtc-variant", "lsf")),
    Arm("dtc", "seg-lsf-16", "Seg+LSF, {labeled} labeled", "dtc", labeled_only=True,
        options=("--dtc-variant", "seg+lsf")),
)

EVALUATIONS: tuple[Evaluation, ...] = (
    Evaluation("maml", "unet-early-fusion", "Early-fusion U-Net", ("unet-early-fusion",)),
    Evaluation("maml", "ms-ensemble", "MS+Ensemble (mean of the single-phase U-Nets)",
               ("unet-arterial", "unet-venous"), ensemble=True),
    Evaluation("maml", "ms-ma", "MS+MA (no mutual learning)", ("ms-ma",)),
    Evaluation("maml", "maml", "MAML", ("maml",)),
    Evaluation("maml", "unet-arterial", "U-Net, arterial only", ("unet-arterial",)),
    Evaluation("maml", "maml-arterial-only", "MAML, venous missing", ("maml",), missing=("venous",)),
    Evaluation("maml", "unet-venous", "U-Net, venous only", ("unet-venous",)),
    Evaluation("maml", "maml-venous-only", "MAML, arterial missing", ("maml",), missing=("arterial",)),
    Evaluation("dtc", "vnet-16", "VNet (Seg), {labeled} labeled", ("vnet-16",), largest_component=True),
    Evaluation("dtc", "dtc-16-64", "DTC, {labeled} labeled + {unlabeled} unlabeled", ("dtc-16-64",),
               largest_component=True),
    Evaluation("dtc", "vnet-80", "VNet (Seg), all {cases} labeled", ("vnet-80",), largest_component=True),
    Evaluation("dtc", "lsf-16", "LSF, {labeled} labeled", ("lsf-16",), largest_component=True),
    Evaluation("dtc", "seg-lsf-16", "Seg+LSF, {labeled} labeled", ("seg-lsf-16",), largest_component=True),
)


def arms_of(paper: str) -> list[Arm]:
    return [arm for arm in ARMS if arm.paper == paper]


def evaluations_of(paper: str) -> list[Evaluation]:
    return [evaluation for evaluation in EVALUATIONS if evaluation.paper == paper]


def arm_by_key(paper: str, key: str) -> Arm:
    return next(arm for arm in ARMS if arm.paper == paper and arm.key == key)


def training_case_count(arm: Arm, size: PaperSize) -> int:
    """How many training cases the arm's case list holds (before the validation cases)."""
    return size.labeled_cases if arm.labeled_only else size.train_cases


def batch_shape(arm: Arm) -> tuple[int, int]:
    """(batch, labeled per batch): DTC's reference 4 = 2 + 2; every supervised arm 2 labeled (MAML: nnU-Net's 2)."""
    return (4, 2) if arm.semi_supervised else (2, 2)


def train_command(arm: Arm, size: PaperSize, seed: int, data: Path, output: Path) -> list[str]:
    """``python -m MultiModalSegLib train ...`` for one arm and training seed (without --resume/--overwrite)."""
    batch, labeled_batch = batch_shape(arm)
    every = size.validate_every
    command = ["python", "-m", "MultiModalSegLib", "train", "--method", arm.method, "--data", str(data),
               "--output", str(output), "--iterations", str(size.iterations), "--patch", size.patch_text,
               "--batch", str(batch), "--labeled-batch", str(labeled_batch), "--seed", str(seed),
               "--validation-cases", str(size.validation_cases), "--validate-every", str(every),
               "--checkpoint-every", str(every), "--device", "cpu",
               "--model-id", f"reproduce-{arm.paper}-{arm.key}-seed{seed}"]
    if arm.modalities:
        command += ["--modalities", ",".join(arm.modalities)]
    if arm.semi_supervised:
        command += ["--labeled", str(size.labeled_cases)]
    if arm.method == "dtc":
        command += ["--base-filters", str(size.architecture["base_filters"]),
                    "--set", f"optimizer.step_fraction={DTC_STEP_FRACTION:.6g}",
                    "--set", f"dtc.consistency_rampup_iterations={size.iterations}",
                    "--set", f"dtc.consistency_rampup_step={max(1, size.iterations // DTC_REFERENCE_RAMP_STAIRS)}"]
    else:
        command += ["--architecture", json.dumps(size.architecture, separators=(",", ":"))]
    return command + list(arm.options)


def evaluate_command(evaluation: Evaluation, size: PaperSize, package: Path, data: Path, output: Path,
                     bootstrap: int) -> list[str]:
    """``python -m MultiModalSegLib evaluate ...`` for one evaluation of one seed's package."""
    command = ["python", "-m", "MultiModalSegLib", "evaluate", "--model", str(package), "--data", str(data),
               "--output", str(output), "--overwrite", "--device", "cpu", "--overlap", str(size.overlap),
               "--bootstrap", str(bootstrap)]
    if evaluation.missing:
        command += ["--missing", *evaluation.missing]
    if evaluation.largest_component:
        command.append("--largest-component")
    return command


def ensemble_command(evaluation: Evaluation, size: PaperSize, members: dict[str, Path], data: Path, output: Path,
                     bootstrap: int) -> list[str]:
    """``python tools/reproduction/ensemble.py ...``: MS+Ensemble of one seed's single-phase U-Nets."""
    command = ["python", str(Path(__file__).with_name("ensemble.py")), "--data", str(data), "--output", str(output),
               "--overlap", str(size.overlap), "--bootstrap", str(bootstrap)]
    for phase, package in members.items():
        command += ["--member", f"{phase}={package}"]
    return command
