"""Benchmark: ``levelset.signed_distance_map`` against DTC's ``compute_sdf`` recipe.

The reference recipe (HiLab-git/DTC ``code/utils/util.py``), per sample: scipy
``distance_transform_edt`` of the mask and of its complement, each min-max normalised,
``negdis_n - posdis_n``, then 0 on ``skimage.segmentation.find_boundaries(mode="inner")``.

Workload: 4 masks of 112 x 112 x 80 (DTC's LA patch) and 2 of 96^3, blobby (Gaussian
random fields smoothed with sigma 5-9 voxels, ``--sigma`` to change, thresholded at 8-35 %
foreground: several lumpy blobs per mask, many touching the border). Both implementations run in this process, alternating (reference first on even
repeats, ours first on odd ones) so load from other processes hits both alike.

Targets: max |ours - reference| <= 1e-5 and median time ratio reference/ours >= 8.
Exits 1 when a target is missed. Usage, from the repository root::

    python bench/bench_sdf.py [--repeats 7] [--json result.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage.segmentation import find_boundaries

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from MultiModalSegLib.levelset import signed_distance_map

MAX_ABS_DIFFERENCE_TARGET = 1e-5
SPEEDUP_TARGET = 8.0


def reference_compute_sdf(masks: np.ndarray) -> np.ndarray:
    """DTC's ``compute_sdf`` recipe step by step (uint8 cast, float64 output, per sample)."""
    labels = masks.astype(np.uint8)
    result = np.zeros(masks.shape)
    for index in range(masks.shape[0]):
        foreground = labels[index].astype(bool)
        if not foreground.any():
            continue
        background = ~foreground
        inside = ndimage.distance_transform_edt(foreground)
        outside = ndimage.distance_transform_edt(background)
        boundary = find_boundaries(foreground, mode="inner").astype(np.uint8)
        sample = (outside - np.min(outside)) / (np.max(outside) - np.min(outside)) - (inside - np.min(inside)) / (
            np.max(inside) - np.min(inside)
        )
        sample[boundary == 1] = 0
        result[index] = sample
    return result


def blobby_masks(
    count: int, shape: tuple[int, ...], rng: np.random.Generator, sigma_range: tuple[float, float] = (5.0, 9.0)
) -> np.ndarray:
    """Smoothed random fields thresholded at 8-35 % foreground: several lumpy blobs each."""
    masks = np.empty((count, *shape), dtype=bool)
    for index in range(count):
        field = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma=rng.uniform(*sigma_range))
        fraction = rng.uniform(0.08, 0.35)
        masks[index] = field > np.quantile(field, 1.0 - fraction)
    return masks


def timed(function, *arguments) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    output = function(*arguments)
    return time.perf_counter() - start, output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats per batch (default 7)")
    parser.add_argument("--seed", type=int, default=2021)
    parser.add_argument("--sigma", type=float, nargs=2, default=(5.0, 9.0), metavar=("MIN", "MAX"))
    parser.add_argument("--json", type=Path, default=None, help="write the result as JSON here")
    arguments = parser.parse_args(argv)

    rng = np.random.default_rng(arguments.seed)
    batches = {
        "4x112x112x80": blobby_masks(4, (112, 112, 80), rng, tuple(arguments.sigma)),
        "2x96x96x96": blobby_masks(2, (96, 96, 96), rng, tuple(arguments.sigma)),
    }

    max_abs_difference = 0.0
    for masks in batches.values():  # warm-up run doubles as the exactness check
        reference = reference_compute_sdf(masks)
        ours = signed_distance_map(masks)
        max_abs_difference = max(max_abs_difference, float(np.abs(ours - reference).max()))

    ratios: list[float] = []
    per_batch: dict[str, dict[str, float]] = {}
    for name, masks in batches.items():
        reference_times, our_times = [], []
        for repeat in range(arguments.repeats):
            if repeat % 2 == 0:
                reference_time, _ = timed(reference_compute_sdf, masks)
                our_time, _ = timed(signed_distance_map, masks)
            else:
                our_time, _ = timed(signed_distance_map, masks)
                reference_time, _ = timed(reference_compute_sdf, masks)
            reference_times.append(reference_time)
            our_times.append(our_time)
            ratios.append(reference_time / our_time)
        per_batch[name] = {
            "reference_median_s": statistics.median(reference_times),
            "ours_median_s": statistics.median(our_times),
            "median_ratio": statistics.median(r / o for r, o in zip(reference_times, our_times)),
        }
        print(
            f"{name}: reference {per_batch[name]['reference_median_s'] * 1e3:.1f} ms, "
            f"ours {per_batch[name]['ours_median_s'] * 1e3:.1f} ms, "
            f"ratio {per_batch[name]['median_ratio']:.1f}x"
        )

    median_ratio = statistics.median(ratios)
    exact = max_abs_difference <= MAX_ABS_DIFFERENCE_TARGET
    fast = median_ratio >= SPEEDUP_TARGET
    passed = exact and fast
    print(
        f"bench_sdf: max_abs_diff={max_abs_difference:.2e} (<= {MAX_ABS_DIFFERENCE_TARGET:g}: "
        f"{'ok' if exact else 'MISSED'}), median_speedup={median_ratio:.1f}x "
        f"(>= {SPEEDUP_TARGET:g}x: {'ok' if fast else 'MISSED'}), "
        f"cpus={len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()}, "
        f"{'PASS' if passed else 'FAIL'}"
    )
    if arguments.json is not None:
        result = {
            "benchmark": "signed_distance_map vs DTC compute_sdf",
            "max_abs_difference": max_abs_difference,
            "max_abs_difference_target": MAX_ABS_DIFFERENCE_TARGET,
            "median_speedup": median_ratio,
            "speedup_target": SPEEDUP_TARGET,
            "repeats": arguments.repeats,
            "mask_smoothing_sigma_range": list(arguments.sigma),
            "edt_threads": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "batches": per_batch,
            "cpu_count": os.cpu_count(),
            "machine": platform.machine(),
            "python": platform.python_version(),
            "passed": passed,
        }
        arguments.json.parent.mkdir(parents=True, exist_ok=True)
        arguments.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
