"""Sliding-window inference benchmark: overhead over bare forwards, and peak memory.

1. Overhead: a two-modality 256x256x128 volume through ``inference.predict`` with the
   MAML configuration the bundled liver model uses. Reports seconds per volume, the number
   of windows, and ``total / (windows x one forward)`` where "one forward" is the median
   time of the bare network on a batch of two windows, halved (predict's default batch; same
   process, same threads). Target <= 1.10
   for the sliding-window part.
2. Memory: a two-phase 512x512x200 int16 CT (0.8 x 0.8 x 2.5 mm) written to NIfTI, segmented
   by the real CLI (``python -m MultiModalSegLib predict``) in a child process, once with a
   package without a data plan (the network runs on the input grid) and once with the bundled
   liver model's plan (5 x 2.8 x 2.8 mm: inputs resampled down, every output map resampled back
   to 512x512x200); each child's peak RSS is read from ``getrusage(RUSAGE_CHILDREN)`` (a maximum
   over children, so the runs go in separate helper processes). Target <= 3 GB on CPU. Memory
   does not depend on the overlap (the accumulators are a z-band of one patch), so these runs use
   ``--overlap 0`` to keep the benchmark short; the overhead run uses the default 0.5.

Run: ``python bench/bench_inference.py [--json PATH] [--skip-memory | --skip-overhead]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402
import torch  # noqa: E402

from MultiModalSegLib.bundled_configs import liver_maml_architecture  # noqa: E402
from MultiModalSegLib.models import build_model  # noqa: E402
from MultiModalSegLib.weights import save_model_package  # noqa: E402

PATCH = (32, 64, 64)


def _manifest() -> dict:
    return {
        "id": "bench-maml", "version": 1, "method": "maml", "title": "untrained MAML (benchmark)",
        "modalities": [{"name": "arterial", "patterns": ["*art*"], "normalization": "ct"},
                       {"name": "venous", "patterns": ["*ven*"], "normalization": "ct"}],
        "reference_modality": "venous",
        "labels": [{"value": 1, "name": "liver", "color": [0.8, 0.5, 0.4]},
                   {"value": 2, "name": "tumor", "color": [0.9, 0.2, 0.2]}],
        "preprocessing": {}, "patch_size": list(PATCH), "supports_missing_modalities": True,
        "provenance": {"data": "none"},
    }


def _ct_volume(shape: tuple[int, int, int], seed: int) -> sitk.Image:
    rng = np.random.default_rng(seed)
    array = rng.normal(40, 30, size=shape).astype(np.int16)
    array[:, :8] = -1000
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.8, 0.8, 2.5))
    return image


def overhead(folder: Path, repeats: int) -> dict:
    from MultiModalSegLib.inference import predict
    from MultiModalSegLib.weights import load_model_package

    torch.manual_seed(0)
    network = build_model(liver_maml_architecture())
    package = load_model_package(save_model_package(network, _manifest(), folder / "bench-maml").folder)
    network = package.build_network("cpu")
    batch = 2  # predict's default: CPU convolutions take oneDNN only for a batch > 1
    window = torch.randn(batch, 2, *PATCH)
    with torch.inference_mode():
        network(window)  # warm-up
        forward_times = []
        for _ in range(max(5, repeats)):
            start = time.perf_counter()
            network(window)
            forward_times.append(time.perf_counter() - start)
    one_forward = statistics.median(forward_times) / batch
    images = {"arterial": _ct_volume((128, 256, 256), 1), "venous": _ct_volume((128, 256, 256), 2)}
    runs = []
    for _ in range(repeats):
        result = predict(package, images, device="cpu", overlap=0.5, batch_size=batch, network=network)
        runs.append(result.timing)
    windows = runs[0]["windows"]
    inference = statistics.median(r["inference_s"] for r in runs)
    total = statistics.median(r["total_s"] for r in runs)
    return {
        "input": "2 x 256x256x128", "patch": list(PATCH), "windows": windows,
        "one_forward_s": round(one_forward, 4),
        "sliding_window_s": round(inference, 2), "total_per_volume_s": round(total, 2),
        "sliding_window_overhead": round(inference / (windows * one_forward), 3),
        "total_overhead": round(total / (windows * one_forward), 3),
        "torch_threads": torch.get_num_threads(), "repeats": repeats,
    }


LIVER_PLAN = {"target_spacing": [5.0, 2.8, 2.8], "patch_size": list(PATCH),
              "normalization": {name: {"scheme": "ct", "clip": [-300.0, 180.0], "mean": 80.0, "std": 40.0}
                                for name in ("arterial", "venous")},
              "postprocessing": {"largest_component": ["liver"]}}

# a child that runs the CLI in a grandchild and prints that grandchild's peak RSS in KiB
_MEASURE = ("import resource, subprocess, sys; c = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
            "sys.stderr.write(c.stdout[-2000:] + c.stderr[-2000:]); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(c.returncode)")


def peak_memory(folder: Path, planned: bool) -> dict:
    arterial, venous = folder / "arterial.nii.gz", folder / "venous.nii.gz"
    if not arterial.is_file():
        sitk.WriteImage(_ct_volume((200, 512, 512), 3), str(arterial), True)
        sitk.WriteImage(_ct_volume((200, 512, 512), 4), str(venous), True)
    model = folder / "bench-maml"
    if planned:
        manifest = json.loads((model / "manifest.json").read_text())
        manifest["plan"] = LIVER_PLAN
        model = folder / "bench-maml-planned"
        save_model_package(build_model(manifest["architecture"]), manifest, model)
    output = folder / ("out512-planned" if planned else "out512")
    command = [sys.executable, "-m", "MultiModalSegLib", "predict", "--model", str(model),
               "--input", f"arterial={arterial}", "--input", f"venous={venous}",
               "--output", str(output), "--device", "cpu", "--overlap", "0"]
    start = time.perf_counter()
    completed = subprocess.run([sys.executable, "-c", _MEASURE, *command], capture_output=True, text=True,
                               cwd=REPOSITORY)
    seconds = time.perf_counter() - start
    if completed.returncode != 0:
        raise RuntimeError(f"predict failed:\n{completed.stderr[-4000:]}")
    peak_kb = int(completed.stdout.strip().splitlines()[-1])
    network_size = json.loads((output / "result.json").read_text())["grids"]["network"]["size_xyz"]
    return {"input": "2 x 512x512x200 int16 CT, 0.8 x 0.8 x 2.5 mm", "plan": planned, "network_grid_xyz": network_size,
            "overlap": 0.0, "seconds": round(seconds, 1), "peak_rss_gb": round(peak_kb / 1024 ** 2, 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-overhead", action="store_true", help="only the memory runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        results = {}
        if args.skip_overhead:  # the memory runs need the untrained package the overhead run writes
            torch.manual_seed(0)
            save_model_package(build_model(liver_maml_architecture()), _manifest(), folder / "bench-maml")
        else:
            results["overhead"] = overhead(folder, args.repeats)
        if not args.skip_memory:
            results["memory"] = peak_memory(folder, planned=False)
            results["memory_planned"] = peak_memory(folder, planned=True)
    ok = True
    if "overhead" in results:
        o = results["overhead"]
        print(f"sliding window: {o['windows']} windows of {o['patch']}, one forward {o['one_forward_s']:.3f} s, "
              f"volume {o['total_per_volume_s']:.1f} s; overhead sliding {o['sliding_window_overhead']:.3f}x "
              f"(target <= 1.10), total {o['total_overhead']:.3f}x")
        ok = o["sliding_window_overhead"] <= 1.10
    for key in ("memory", "memory_planned"):
        if key in results:
            m = results[key]
            how = f"with a plan (network grid {m['network_grid_xyz']})" if m["plan"] else "without a plan (input grid)"
            print(f"peak RSS, two-phase 512x512x200 CT via the CLI, {how}: {m['peak_rss_gb']:.2f} GB "
                  f"(target <= 3 GB), {m['seconds']:.0f} s")
            ok = ok and m["peak_rss_gb"] <= 3.0
    results["targets_met"] = ok
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
