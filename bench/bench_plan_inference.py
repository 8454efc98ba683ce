"""What the data plan costs at inference: a clinical-grid input and test-time mirroring, against the native grid.

The bundled ``maml-liver-ct2`` segments the held-out demo phantom (seed 2026) three ways, each
timed as the median of ``--repeats`` runs in this process, the network built once:

* ``native``: the phantom on its own 48x128x128 grid at 5 x 2.8 x 2.8 mm (the plan's spacing, so
  nothing is resampled);
* ``clinical``: the same anatomy drawn on a clinical CT grid, 96x448x448 at 2.5 x 0.8 x 0.8 mm
  (19 M voxels a phase): resampled to the plan's spacing, segmented, every output map resampled
  back; target: at most 2x ``native``;
* ``tta``: ``native`` with test-time mirroring (8 passes).

``--cli`` also times ``python -m MultiModalSegLib predict`` end to end for native and clinical
(reading and writing the NIfTI files included: 7 output files of 19 M voxels on the clinical grid).

Run: ``python bench/bench_plan_inference.py [--repeats 3] [--cli] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))


def timed(function, repeats: int) -> float:
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def cli_seconds(images: dict, folder: Path, repeats: int) -> float:
    import SimpleITK as sitk

    arguments = []
    for name, image in images.items():
        path = folder / f"{name}.nii.gz"
        sitk.WriteImage(image, str(path), True)
        arguments += ["--input", f"{name}={path}"]
    command = [sys.executable, "-m", "MultiModalSegLib", "predict", "--model", "maml-liver-ct2", *arguments,
               "--output", str(folder / "out"), "--device", "cpu", "--overwrite", "--json"]

    def run() -> None:
        subprocess.run(command, check=True, capture_output=True, cwd=REPOSITORY)

    return timed(run, repeats)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cli", action="store_true", help="also time the CLI end to end")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import torch

    from MultiModalSegLib.inference import predict
    from MultiModalSegLib.phantoms import make_case
    from MultiModalSegLib.weights import load_model_package

    package = load_model_package("maml-liver-ct2")
    network = package.build_network("cpu")
    native = make_case("liver-ct2", 2026)["images"]
    clinical = make_case("liver-ct2", 2026, shape=(96, 448, 448))["images"]
    predict(package, native, device="cpu", network=network)  # warm-up
    results = {
        "model": f"{package.id} v{package.version}", "torch_threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "native_s": timed(lambda: predict(package, native, device="cpu", network=network), args.repeats),
        "clinical_s": timed(lambda: predict(package, clinical, device="cpu", network=network), args.repeats),
        "tta_s": timed(lambda: predict(package, native, device="cpu", network=network, tta=True), args.repeats),
    }
    results["clinical_over_native"] = round(results["clinical_s"] / results["native_s"], 2)
    results["tta_over_native"] = round(results["tta_s"] / results["native_s"], 2)
    if args.cli:
        with tempfile.TemporaryDirectory() as tmp:
            for name, images in (("native", native), ("clinical", clinical)):
                folder = Path(tmp) / name
                folder.mkdir()
                results[f"cli_{name}_s"] = cli_seconds(images, folder, args.repeats)
        results["cli_clinical_over_native"] = round(results["cli_clinical_s"] / results["cli_native_s"], 2)
    for key, value in results.items():
        print(f"{key}: {round(value, 2) if isinstance(value, float) else value}")
    ok = results["clinical_over_native"] <= 2.0
    print(f"clinical-grid predict {results['clinical_over_native']}x the native grid (target <= 2x): "
          f"{'met' if ok else 'MISSED'}")
    results["targets_met"] = ok
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
