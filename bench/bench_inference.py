"""Sliding-window inference benchmark: overhead over bare forwards, and peak memory.

1. Overhead: a two-modality 256x256x128 volume through ``inference.predict`` with the
   MAML configuration the bundled liver model uses. Reports seconds per volume, the number
   of windows, and ``total / (windows x one forward)`` where "one forward" is the median
   time of the bare network on a batch of two windows, halved (predict's default batch; same
   process, same threads). Target <= 1.10
   for the sliding-window part.
2. Memory: a two-phase 512x512x200 int16 CT written to NIfTI, segmented by the real CLI
   (``python -m MultiModalSegLib predict``) in a child process; its peak RSS is read from
   ``getrusage(RUSAGE_CHILDREN)``. Target <= 3 GB on CPU. Memory does not depend on the
   overlap (the accumulators are a z-band of one patch), so this run uses ``--overlap 0``
   to keep the benchmark short; the overhead run uses the default 0.5.

Run: ``python bench/bench_inference.py [--json PATH] [--skip-memory]``.
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


def peak_memory(folder: Path) -> dict:
    arterial, venous = folder / "arterial.nii.gz", folder / "venous.nii.gz"
    sitk.WriteImage(_ct_volume((200, 512, 512), 3), str(arterial), True)
    sitk.WriteImage(_ct_volume((200, 512, 512), 4), str(venous), True)
    command = [sys.executable, "-m", "MultiModalSegLib", "predict", "--model", str(folder / "bench-maml"),
               "--input", f"arterial={arterial}", "--input", f"venous={venous}",
               "--output", str(folder / "out512"), "--device", "cpu", "--overlap", "0"]
    start = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, cwd=REPOSITORY)
    seconds = time.perf_counter() - start
    if completed.returncode != 0:
        raise RuntimeError(f"predict failed:\n{completed.stdout[-2000:]}\n{completed.stderr[-2000:]}")
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"input": "2 x 512x512x200 int16 CT", "overlap": 0.0, "seconds": round(seconds, 1),
            "peak_rss_gb": round(peak_kb / 1024 ** 2, 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        results = {"overhead": overhead(folder, args.repeats)}
        if not args.skip_memory:
            results["memory"] = peak_memory(folder)
    o = results["overhead"]
    print(f"sliding window: {o['windows']} windows of {o['patch']}, one forward {o['one_forward_s']:.3f} s, "
          f"volume {o['total_per_volume_s']:.1f} s; overhead sliding {o['sliding_window_overhead']:.3f}x "
          f"(target <= 1.10), total {o['total_overhead']:.3f}x")
    ok = o["sliding_window_overhead"] <= 1.10
    if "memory" in results:
        m = results["memory"]
        print(f"peak RSS, two-phase 512x512x200 CT via the CLI: {m['peak_rss_gb']:.2f} GB (target <= 3 GB), "
              f"{m['seconds']:.0f} s")
        ok = ok and m["peak_rss_gb"] <= 3.0
    results["targets_met"] = ok
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
