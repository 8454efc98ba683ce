"""Score the bundled models on held-out cases, on their native grid and on a clinical grid.

The figures of the README's "Bundled models" table and of each model card come from here. Every
phantom model is evaluated on 20 held-out phantoms (seed block 9: seeds 900000-900019, never
used for training, validation or the demo) twice: on the phantom's own grid, and on the same
anatomy drawn on a clinical scanner's grid (``?shape=...``: the field of view is kept, so the
spacing changes and the noise and partial-volume blur are those of the finer grid). The model
resamples the clinical-grid input into its plan's space and its outputs back (``predict``), so
a model that works on the scans users have scores about the same on both.

* ``maml-liver-ct2``: native 48x128x128 at 5 x 2.8 x 2.8 mm, and 96x448x448 at 2.5 x 0.8 x 0.8 mm;
  also with the arterial phase missing.
* ``maml-brain-mr4``: native 96^3 at 2.2 mm, and 211^3 at 1.0 mm isotropic.
* ``dtc-atrium-mr``: native 80x112x112 at 1 mm, and 64x179x179 at 1.25 x 0.625 x 0.625 mm.
* ``maml-brain-tissue-mr3``: nilearn's ICBM152 2009a T1 at its native 1 mm (T2 and PD missing),
  built by ``python tools/fetch_spm_templates.py --output DIR --check`` (``DIR/check_native.json``).

Usage::

    python tools/evaluate_bundled.py --output /tmp/eval-bundled [--models maml-liver-ct2,...]
        [--cases 20] [--spm-templates DIR] [--threads 2]

Writes ``OUTPUT/<model>/<setting>/`` (what ``mmseg evaluate`` writes) and ``OUTPUT/summary.json``
and ``summary.md``: mean Dice with bootstrap 95 % CIs per label and region, volume error and the
median predict time per case.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))

HELD_OUT_SEED_BLOCK = 9


def settings_for(model: str, cases: int, spm: Path | None) -> list[dict[str, Any]]:
    """The evaluations of one bundled model: (name, data spec, missing modalities)."""
    block = HELD_OUT_SEED_BLOCK
    if model == "maml-liver-ct2":
        spec = f"phantom:liver-ct2:{cases}:{block}"
        return [{"name": "native 5 x 2.8 x 2.8 mm", "data": spec, "missing": []},
                {"name": "native, arterial missing", "data": spec, "missing": ["arterial"]},
                {"name": "clinical 2.5 x 0.8 x 0.8 mm", "data": spec + "?shape=96x448x448", "missing": []}]
    if model == "maml-brain-mr4":
        spec = f"phantom:brain-mr4:{cases}:{block}"
        return [{"name": "native 2.2 mm", "data": spec, "missing": []},
                {"name": "clinical 1.0 mm", "data": spec + "?shape=211x211x211", "missing": []}]
    if model == "dtc-atrium-mr":
        spec = f"phantom:atrium-mr:{cases}:{block}"
        return [{"name": "native 1 mm", "data": spec, "missing": []},
                {"name": "clinical 1.25 x 0.625 x 0.625 mm", "data": spec + "?shape=64x179x179&spacing=1.25x0.625x0.625",
                 "missing": []}]
    if model == "maml-brain-tissue-mr3":
        if spm is None:
            return []
        return [{"name": "ICBM152 2009a T1 at 1 mm (T2, PD missing)", "data": str(spm / "check_native.json"),
                 "missing": ["t2", "pd"]}]
    raise SystemExit(f"unknown bundled model {model}")


def volume_error(rows: list[Any]) -> dict[str, float]:
    """Mean and median |predicted - reference| / reference volume per label, over cases with a reference."""
    errors: dict[str, list[float]] = {}
    for row in rows:
        if row.reference_ml and row.reference_ml > 0:
            errors.setdefault(row.label, []).append(abs(row.predicted_ml - row.reference_ml) / row.reference_ml)
    return {label: round(float(np.mean(values)), 4) for label, values in errors.items()}


def evaluate_setting(model: str, setting: dict[str, Any], output: Path) -> dict[str, Any]:
    from MultiModalSegLib.datasets import load_cases
    from MultiModalSegLib.evaluation.evaluate import evaluate_model
    from MultiModalSegLib.weights import load_model_package

    package = load_model_package(model)
    started = time.perf_counter()
    wanted = package.modalities
    cases = load_cases(setting["data"], modalities=[m for m in wanted if m not in setting["missing"]]
                       if setting["missing"] and setting["data"].endswith(".json") else wanted)
    loading = time.perf_counter() - started
    result = evaluate_model(package, cases, missing=setting["missing"], device="cpu", data=setting["data"])
    folder = output / model / setting["name"].replace(" ", "_").replace(",", "")
    result.write(folder)
    summary = {region.name: {"dice": region.metrics["dice"].mean, "dice_ci": [region.metrics["dice"].ci_low,
                                                                           region.metrics["dice"].ci_high],
                             "hd95_mm": region.metrics["hd95_mm"].mean if "hd95_mm" in region.metrics else None,
                             "cases": region.metrics["dice"].n}
               for region in result.summary}
    seconds = [info["predict_seconds"] for info in result.cases if info.get("predict_seconds") is not None]
    record = {"model": model, "version": package.version, "setting": setting["name"], "data": setting["data"],
              "missing": setting["missing"], "cases": len(result.cases), "regions": summary,
              "volume_error": volume_error(result.rows), "median_predict_seconds": float(np.median(seconds)),
              "loading_seconds": round(loading, 1), "warnings": result.warnings, "folder": str(folder)}
    print(json.dumps(record), flush=True)
    return record


def markdown(records: list[dict[str, Any]]) -> str:
    lines = ["| model | setting | cases | Dice [95 % CI] per label / region | volume error | predict s |",
             "|---|---|---|---|---|---|"]
    for record in records:
        dice = "; ".join(f"{name} {100 * value['dice']:.1f} [{100 * value['dice_ci'][0]:.1f}, "
                         f"{100 * value['dice_ci'][1]:.1f}]" for name, value in record["regions"].items())
        volume = "; ".join(f"{name} {100 * value:.0f} %" for name, value in record["volume_error"].items())
        lines.append(f"| `{record['model']}` v{record['version']} | {record['setting']} | {record['cases']} | {dice} | "
                     f"{volume} | {record['median_predict_seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--models", default="maml-liver-ct2,maml-brain-mr4,dtc-atrium-mr,maml-brain-tissue-mr3")
    parser.add_argument("--settings", default="", help="only settings whose name contains one of these words")
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--spm-templates", type=Path, help="the --output folder of tools/fetch_spm_templates.py --check")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    records = []
    wanted_words = [w for w in args.settings.split(",") if w]
    for model in [m for m in args.models.split(",") if m]:
        for setting in settings_for(model, args.cases, args.spm_templates):
            if wanted_words and not any(word in setting["name"] for word in wanted_words):
                continue
            records.append(evaluate_setting(model, setting, args.output))
    args.output.mkdir(parents=True, exist_ok=True)
    previous = args.output / "summary.json"
    kept = [r for r in (json.loads(previous.read_text()) if previous.is_file() else [])
            if (r["model"], r["setting"]) not in {(n["model"], n["setting"]) for n in records}]
    records = kept + records
    previous.write_text(json.dumps(records, indent=2) + "\n")
    (args.output / "summary.md").write_text(markdown(records))
    print(markdown(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
