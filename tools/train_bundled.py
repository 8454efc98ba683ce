"""Train a bundled model package and install it into ``Resources/Models/<id>``.

The bundled models are sized for a laptop CPU (``MultiModalSegLib.bundled_configs``).
The phantom-trained ones use phantom seeds that never overlap the held-out evaluation and
demo seeds (training: phantom seed block 1, i.e. seeds 100000+; evaluation: block 9; demo
and sample data: 2026 and 990001). ``maml-brain-tissue-mr3`` trains on the SPM avg152
templates that ``tools/fetch_spm_templates.py`` extracts (one real volume, heavy
augmentation, no validation case: it is checked on nilearn's ICBM152 2009a template by
``tools/fetch_spm_templates.py --check``).

Run (the budgets of the shipped v2 packages; minutes on one thread of the shared 2-core
development machine: liver 115, brain ~110, atrium 78, tissue 63)::

    python tools/train_bundled.py maml-liver-ct2 --iterations 3000 --validate-every 250 --threads 1 --work /tmp/train-liver --install
    python tools/train_bundled.py maml-brain-mr4 --iterations 2000 --validate-every 250 --threads 1 --work /tmp/train-brain --install
    python tools/train_bundled.py dtc-atrium-mr --iterations 4000 --validate-every 500 --threads 1 --work /tmp/train-atrium --install
    python tools/fetch_spm_templates.py --output /tmp/spm-templates
    python tools/train_bundled.py maml-brain-tissue-mr3 --data /tmp/spm-templates/cases.json \\
        --iterations 1200 --validate-every 300 --threads 1 --work /tmp/train-tissue --install

It trains with ``MultiModalSegLib.training.train`` (the same code as ``mmseg train``),
takes the best validation package (the last one when there is no validation case), adds
the name patterns, label terminology and composite regions of the table below to its
manifest and copies it into ``Resources/Models/<id>``. The model card (``MODEL_CARD.md``)
is written by hand from the measured results and is kept when a package is reinstalled.
``--install-only`` installs from a finished ``--work`` folder without training.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))

from MultiModalSegLib import bundled_configs


def _concept(scheme: str, code: str, meaning: str) -> dict[str, str]:
    return {"scheme": scheme, "code": code, "meaning": meaning}


ANATOMICAL_STRUCTURE = _concept("SCT", "123037004", "Anatomical Structure")
ALTERED_STRUCTURE = _concept("SCT", "49755003", "Morphologically Altered Structure")
BRAIN = _concept("SCT", "12738006", "Brain")

# nnU-Net's data augmentation, as far as the patch sampler has it (MultiModalSegLib.sampling): a fifth of the
# patches rotated (+-15 deg about each axis, in mm) and zoomed (0.85-1.15), gamma 1/1.3-1.3, channel brightness
# +-10 %, Gaussian noise sigma up to 0.05 (normalised units), plus each recipe's mirroring. nnU-Net rotates up
# to 30 deg and zooms 0.7-1.4 at p 0.2; the smaller ranges suit the phantoms' fixed anatomy and short CPU runs.
BUNDLED_AUGMENTATION: dict[str, Any] = {"rotation_degrees": 15.0, "scale_range": 0.15, "spatial_probability": 0.2,
                                        "gamma_range": 0.3, "intensity_scale": 0.1, "noise_std": 0.05}
#: the version the retrained packages get (v1: trained without a data plan)
BUNDLED_VERSION = 2

MODELS: dict[str, dict[str, Any]] = {
    "maml-liver-ct2": {
        "method": "maml", "data": "phantom:liver-ct2:56:1", "patch": (32, 64, 64), "batch": 2, "validation_cases": 8,
        "architecture": bundled_configs.liver_maml_architecture()["config"],
        "title": "MAML liver and tumour, arterial + venous CT (phantom-trained)",
        "patterns": {"arterial": ["*art*", "*arterial*", "*phase1*"], "venous": ["*ven*", "*portal*", "*pv*", "*phase2*"]},
    },
    "dtc-atrium-mr": {
        # DTC's LA setting: 16 labeled + 64 unlabeled cases (20 %), batch 2 labeled + 2 unlabeled as the reference;
        # 8 more labeled cases validate (post-processing is chosen on them). The reference's LA volumes are cropped
        # around the atrium, so its random crops always hold it; the phantoms are not, so half the labeled
        # patches are centred on the atrium (nnU-Net's per-batch rule) instead.
        "method": "dtc", "data": "phantom:atrium-mr:88:1", "patch": (48, 64, 64), "batch": 4, "labeled_batch": 2,
        "labeled_cases": 16, "validation_cases": 8, "foreground_fraction": 0.5,
        "architecture": {"in_channels": 1, "num_classes": 1, "base_filters": 8},
        "title": "DTC left atrium, one MR (phantom-trained, 16 labeled + 64 unlabeled)",
        "patterns": {"mri": ["*lgemri*", "*lge*", "*atri*", "*cardiac*", "*heart*", "*mri*", "*mr*"]},
        "labels": {1: {"name": "left_atrium", "color": [0.8471, 0.3961, 0.3098],
                       "terminology": {"category": ANATOMICAL_STRUCTURE,
                                       "type": _concept("SCT", "82471001", "Left atrium")}}},
    },
    "maml-brain-mr4": {
        "method": "maml", "data": "phantom:brain-mr4:40:1", "patch": (48, 48, 48), "batch": 2, "validation_cases": 8,
        "architecture": bundled_configs.brain_tumor_maml_architecture()["config"],
        "title": "MAML brain tumour (BraTS labels), T1 + T1ce + T2 + FLAIR MR (phantom-trained)",
        # The panel gives a volume to the modality with the most specific matching pattern:
        # "case_t1ce" matches *t1* and *t1ce* and goes to T1ce; "t2_flair" goes to FLAIR.
        "patterns": {"t1": ["*t1*", "*t1w*", "*t1n*", "*mprage*", "*spgr*"],
                     "t1ce": ["*t1ce*", "*t1c*", "*t1gd*", "*t1_gd*", "*t1post*", "*t1_post*", "*gad*", "*contrast*"],
                     "t2": ["*t2*", "*t2w*"],
                     "flair": ["*flair*", "*t2f*"]},
        "labels": {
            1: {"name": "necrotic_core", "color": [1.0, 0.2353, 0.2353],
                "terminology": {"category": ALTERED_STRUCTURE, "type": _concept("SCT", "6574001", "Necrosis"),
                                "region": BRAIN}},
            2: {"name": "edema", "color": [0.2353, 0.8627, 0.2353],
                "terminology": {"category": ALTERED_STRUCTURE, "type": _concept("SCT", "79654002", "Edema"),
                                "region": BRAIN}},
            4: {"name": "enhancing_tumor", "color": [1.0, 0.8627, 0.1176],
                "terminology": {"category": ALTERED_STRUCTURE, "type": _concept("SCT", "108369006", "Neoplasm"),
                                "type_modifier": _concept("SCT", "255317007", "Enhancing"), "region": BRAIN}},
        },
        # BraTS evaluation regions (scored by `mmseg evaluate` along with the labels)
        "regions": [{"name": "whole_tumor", "values": [1, 2, 4]}, {"name": "tumor_core", "values": [1, 4]},
                    {"name": "enhancing_region", "values": [4]}],
    },
    "maml-brain-tissue-mr3": {
        "method": "maml", "data": None, "patch": (48, 48, 48), "batch": 2,
        "architecture": bundled_configs.brain_tissue_maml_architecture()["config"],
        "title": "MAML brain tissue (grey matter, white matter, CSF), T1 + T2 + PD MR (SPM avg152-trained)",
        "patterns": {"t1": ["*t1*", "*t1w*", "*mprage*", "*spgr*"], "t2": ["*t2*", "*t2w*"],
                     "pd": ["*pd*", "*pdw*", "*proton*"]},
        "labels": {
            1: {"name": "grey_matter", "color": [0.6, 0.6, 0.6],
                "terminology": {"category": ANATOMICAL_STRUCTURE,
                                "type": _concept("SCT", "389080006", "Grey matter of brain"), "region": BRAIN}},
            2: {"name": "white_matter", "color": [0.95, 0.95, 0.85],
                "terminology": {"category": ANATOMICAL_STRUCTURE,
                                "type": _concept("SCT", "389081005", "White matter of brain"), "region": BRAIN}},
            3: {"name": "csf", "color": [0.3, 0.55, 0.95],
                "terminology": {"category": ANATOMICAL_STRUCTURE,
                                "type": _concept("SCT", "65216001", "Cerebrospinal fluid"), "region": BRAIN}},
        },
        # one volume: no validation case; heavy augmentation (MultiModalSegLib.sampling)
        "validation_cases": 0,
        # rotation +-15 deg about each axis, zoom 0.85-1.15, gamma 1/1.3-1.3, channel scale +-15 %,
        # shift +-0.1, Gaussian noise sigma up to 0.05 (normalised units), left-right mirroring
        "augmentation": {"rotation_degrees": 15.0, "scale_range": 0.15, "gamma_range": 0.3,
                         "intensity_scale": 0.15, "intensity_shift": 0.1, "noise_std": 0.05,
                         "mirror_axes": (2,)},
    },
}


def finish_manifest(manifest: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """The trained package's manifest with the table's patterns, label names/colours/terminology and regions."""
    for modality in manifest["modalities"]:
        modality["patterns"] = spec["patterns"].get(modality["name"], modality.get("patterns", []))
    extra_labels = spec.get("labels", {})
    for label in manifest["labels"]:
        label.update(extra_labels.get(int(label["value"]), {}))
    if spec.get("regions"):
        manifest["regions"] = spec["regions"]
    return manifest


def install(work: Path, model_id: str, spec: dict[str, Any]) -> Path:
    """Copy the best (else last) package of ``work`` into Resources/Models/<id>, keeping an existing card."""
    from MultiModalSegLib.weights import load_model_package

    for selection in ("best", "last"):
        source = work / selection
        if (source / "manifest.json").is_file():
            break
    else:
        raise SystemExit(f"{work} holds no best/ or last/ package; train first (without --install-only).")
    target = REPOSITORY / "Resources" / "Models" / model_id
    card = (target / "MODEL_CARD.md").read_text() if (target / "MODEL_CARD.md").is_file() else None
    staging = work / "install"
    if staging.exists():
        shutil.rmtree(staging)
    shutil.copytree(source, staging)
    manifest = finish_manifest(json.loads((staging / "manifest.json").read_text()), spec)
    manifest["version"] = BUNDLED_VERSION
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    if card is not None:
        (staging / "MODEL_CARD.md").write_text(card)
    load_model_package(staging, verify=True)  # the manifest still matches the weights
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(staging, target)
    print(f"installed {target} (from {source.name})", flush=True)
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_id", choices=sorted(MODELS))
    parser.add_argument("--data", help="data spec (default: the model's own; required for maml-brain-tissue-mr3: "
                                       "the cases.json that tools/fetch_spm_templates.py writes)")
    parser.add_argument("--iterations", type=int, default=1500)
    parser.add_argument("--validate-every", type=int, default=250)
    parser.add_argument("--work", type=Path, required=True, help="training output folder")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --work from its checkpoint")
    parser.add_argument("--resume-iterations", type=int, default=None,
                        help="with --resume: train on to this total (the poly schedule is stretched to it)")
    parser.add_argument("--install", action="store_true", help="copy the best package into Resources/Models")
    parser.add_argument("--install-only", action="store_true", help="install from --work without training")
    args = parser.parse_args()
    spec = MODELS[args.model_id]
    if args.install_only:
        install(args.work, args.model_id, spec)
        return 0
    data = args.data or spec["data"]
    if not data:
        parser.error(f"{args.model_id} needs --data (run tools/fetch_spm_templates.py first)")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from MultiModalSegLib.progress import ProgressReporter
    from MultiModalSegLib.training.config import TrainingConfig
    from MultiModalSegLib.training.train import train

    architecture = {k: v for k, v in spec["architecture"].items()
                    if k not in ("modalities", "num_classes", "in_channels")}
    overrides: dict[str, Any] = {}
    if "validation_cases" in spec:
        overrides["validation_cases"] = spec["validation_cases"]
    for key, field_name in (("foreground_fraction", "foreground_fraction"), ("labeled_cases", "labeled_cases"),
                            ("labeled_batch", "labeled_batch_size")):
        if key in spec:
            overrides[field_name] = spec[key]
    overrides["augmentation"] = dict(spec.get("augmentation") or BUNDLED_AUGMENTATION)
    config = TrainingConfig.for_method(
        spec["method"], iterations=args.iterations, patch_size=spec["patch"], batch_size=spec["batch"],
        validate_every=args.validate_every, checkpoint_every=args.validate_every, seed=args.seed,
        architecture_overrides=architecture, device="cpu", **overrides)
    command = "python tools/train_bundled.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if spec["method"] == "dtc":  # the reference's step and ramp-up, scaled to the run (6000 iterations there)
        config.optimizer.step_every = max(1, round(args.iterations * 2500 / 6000))
        config.dtc.consistency_rampup_iterations = float(args.iterations)
        config.dtc.consistency_rampup_step = max(1, args.iterations // 40)
    modalities = spec["architecture"].get("modalities") or list(spec["patterns"])
    outcome = train(config, data, args.work, modalities=list(modalities),
                    resume=args.resume, resume_iterations=args.resume_iterations if args.resume else None,
                    overwrite=not args.resume, model_id=args.model_id, title=spec["title"],
                    reporter=ProgressReporter(), command=command)
    print(json.dumps({"outcome": str(outcome.output), "seconds": outcome.seconds,
                      "seconds_per_iteration": outcome.seconds_per_iteration}), flush=True)
    if args.install:
        install(args.work, args.model_id, spec)
    return 0


if __name__ == "__main__":
    sys.exit(main())
