"""Train a bundled model package on phantoms and install it into ``Resources/Models/<id>``.

The bundled models are sized for a laptop CPU (``MultiModalSegLib.bundled_configs``) and
trained on phantom cases whose seeds never overlap the held-out evaluation and demo seeds
(training: phantom seed block 1, i.e. seeds 100000+; evaluation: block 9; demo and sample
data: 2026 and 990001).

Run (about 20-40 minutes on a 2-core CPU for the liver model)::

    python tools/train_bundled.py maml-liver-ct2 --iterations 1500 --work /tmp/train-liver

It trains with ``MultiModalSegLib.training.train`` (the same code as ``mmseg train``),
takes the best validation package, writes its model card with the measured validation
Dice and the command, and copies it into ``Resources/Models/<id>``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))

from MultiModalSegLib import bundled_configs  # noqa: E402

MODELS = {
    "maml-liver-ct2": {
        "method": "maml", "data": "phantom:liver-ct2:40:1", "patch": (32, 64, 64), "batch": 2,
        "architecture": bundled_configs.liver_maml_architecture()["config"],
        "title": "MAML liver and tumour, arterial + venous CT (phantom-trained)",
        "patterns": {"arterial": ["*art*", "*arterial*", "*phase1*"], "venous": ["*ven*", "*portal*", "*pv*", "*phase2*"]},
    },
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_id", choices=sorted(MODELS))
    parser.add_argument("--iterations", type=int, default=1500)
    parser.add_argument("--validate-every", type=int, default=250)
    parser.add_argument("--work", type=Path, required=True, help="training output folder")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--install", action="store_true", help="copy the best package into Resources/Models")
    args = parser.parse_args()
    spec = MODELS[args.model_id]

    from MultiModalSegLib.progress import ProgressReporter
    from MultiModalSegLib.training.config import TrainingConfig
    from MultiModalSegLib.training.train import train

    architecture = {k: v for k, v in spec["architecture"].items() if k not in ("modalities", "num_classes")}
    config = TrainingConfig.for_method(
        spec["method"], iterations=args.iterations, patch_size=spec["patch"], batch_size=spec["batch"],
        validate_every=args.validate_every, checkpoint_every=args.validate_every, seed=args.seed,
        architecture_overrides=architecture, device="cpu")
    command = "python tools/train_bundled.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    outcome = train(config, spec["data"], args.work, resume=args.resume, overwrite=not args.resume,
                    model_id=args.model_id, title=spec["title"], reporter=ProgressReporter(), command=command)
    print(json.dumps({"outcome": str(outcome)}), flush=True)
    if args.install:
        best = args.work / "best"
        manifest = json.loads((best / "manifest.json").read_text())
        for modality in manifest["modalities"]:
            modality["patterns"] = spec["patterns"].get(modality["name"], modality.get("patterns", []))
        (best / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        target = REPOSITORY / "Resources" / "Models" / args.model_id
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(best, target)
        print(f"installed {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
