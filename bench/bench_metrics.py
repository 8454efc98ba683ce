"""Benchmark MultiModalSegLib.metrics against medpy.metric.binary: agreement and speed.

The case: a 256 x 256 x 128 (x, y, z) volume at 0.8 x 0.8 x 2.5 mm, i.e. a (128, 256, 256)
(z, y, x) array with spacing (2.5, 0.8, 0.8) in array order. The reference is a lobulated
organ-sized blob (semi-axes about 100 x 60 x 68 mm, roughly a liver); the prediction is
the reference with its boundary moved in and out by a smooth random field (a few voxels)
plus two small false-positive islands outside it, as a network's output looks.

Both libraries compute dc/jc/hd95/assd (with the spacing) alternately, several repeats,
and the script prints the largest absolute difference over all values, the median time
of each function, the median speed ratio of each function, and the median speed ratio
for hd95 + assd together (medpy calling hd95 and assd versus our one surface_metrics
call, which is what evaluation code uses). It exits 1 if the values differ by more than
1e-6 or hd95 + assd is less than 20 times faster.

Run from the repository root: ``python bench/bench_metrics.py [--repeats 5] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import ndimage

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from MultiModalSegLib import metrics

SHAPE_ZYX = (128, 256, 256)
SPACING_ZYX = (2.5, 0.8, 0.8)  # 0.8 x 0.8 x 2.5 mm (x, y, z) in array order
AGREEMENT_TOLERANCE = 1e-6
SPEEDUP_TARGET = 20.0


def smooth_noise(shape: tuple[int, ...], rng: np.random.Generator, coarse_factor: int, sigma: float) -> np.ndarray:
    """Unit-variance smooth random field: Gaussian-filtered noise on a coarse grid, upsampled."""
    coarse_shape = tuple(-(-s // coarse_factor) for s in shape)
    field = ndimage.gaussian_filter(rng.standard_normal(coarse_shape), sigma)
    field = ndimage.zoom(field, coarse_factor, order=1)[tuple(slice(0, s) for s in shape)]
    return (field - field.mean()) / field.std()


def make_case(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(prediction, reference)`` boolean masks of shape SHAPE_ZYX (see the module docstring)."""
    rng = np.random.default_rng(seed)
    grid = np.ogrid[tuple(slice(0, s) for s in SHAPE_ZYX)]
    centre = (64.0, 124.0, 132.0)
    semi_axes = (40.0, 75.0, 85.0)  # voxels: 100 mm, 60 mm, 68 mm
    radius = np.sqrt(sum(((g - c) / a) ** 2 for g, c, a in zip(grid, centre, semi_axes)))
    lobes = smooth_noise(SHAPE_ZYX, rng, coarse_factor=8, sigma=1.5)
    organ_level = radius + 0.12 * lobes
    reference = organ_level < 1.0
    # Boundary error of a few voxels: ~0.04 of a 75-voxel radius is ~3 voxels.
    boundary_error = smooth_noise(SHAPE_ZYX, rng, coarse_factor=4, sigma=2.0)
    prediction = (organ_level + 0.04 * boundary_error) < 1.0
    for island_centre, island_radius in (((70, 30, 200), 5.0), ((30, 210, 90), 3.5)):
        distance = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, island_centre)))
        prediction |= distance < island_radius
    return prediction, reference


def timed(function: Callable[[], object]) -> tuple[object, float]:
    start = time.perf_counter()
    value = function()
    return value, time.perf_counter() - start


def run(repeats: int, seed: int) -> dict:
    """Time both libraries alternately and collect values, times and ratios."""
    from medpy.metric import binary as medpy_binary

    prediction, reference = make_case(seed)
    spacing = SPACING_ZYX
    medpy_calls: dict[str, Callable[[], float]] = {
        "dice": lambda: medpy_binary.dc(prediction, reference),
        "jaccard": lambda: medpy_binary.jc(prediction, reference),
        "hd95": lambda: medpy_binary.hd95(prediction, reference, voxelspacing=spacing),
        "assd": lambda: medpy_binary.assd(prediction, reference, voxelspacing=spacing),
    }
    our_calls: dict[str, Callable[[], float]] = {
        "dice": lambda: metrics.dice(prediction, reference),
        "jaccard": lambda: metrics.jaccard(prediction, reference),
        "hd95": lambda: metrics.hd95(prediction, reference, spacing),
        "assd": lambda: metrics.assd(prediction, reference, spacing),
    }
    medpy_times: dict[str, list[float]] = {name: [] for name in medpy_calls}
    our_times: dict[str, list[float]] = {name: [] for name in our_calls}
    our_times["surface_metrics"] = []
    medpy_values: dict[str, float] = {}
    our_values: dict[str, float] = {}
    max_abs_difference = 0.0

    for repeat in range(repeats):
        medpy_first = repeat % 2 == 0
        for name in medpy_calls:
            order = ("medpy", "ours") if medpy_first else ("ours", "medpy")
            for library in order:
                calls, times, values = (
                    (medpy_calls, medpy_times, medpy_values)
                    if library == "medpy"
                    else (our_calls, our_times, our_values)
                )
                value, seconds = timed(calls[name])
                times[name].append(seconds)
                values[name] = float(value)
            max_abs_difference = max(max_abs_difference, abs(medpy_values[name] - our_values[name]))
        combined, seconds = timed(lambda: metrics.surface_metrics(prediction, reference, spacing))
        our_times["surface_metrics"].append(seconds)
        for name in ("hd95", "assd"):
            max_abs_difference = max(max_abs_difference, abs(medpy_values[name] - combined[name]))

    def median_ratio(medpy_list: list[float], our_list: list[float]) -> float:
        return statistics.median(m / o for m, o in zip(medpy_list, our_list))

    per_function_ratio = {name: median_ratio(medpy_times[name], our_times[name]) for name in medpy_calls}
    medpy_both = [h + a for h, a in zip(medpy_times["hd95"], medpy_times["assd"])]
    ours_both_separate = [h + a for h, a in zip(our_times["hd95"], our_times["assd"])]
    both_ratio = median_ratio(medpy_both, our_times["surface_metrics"])
    both_ratio_separate = median_ratio(medpy_both, ours_both_separate)

    occupied = np.argwhere(prediction | reference)
    box_shape = (occupied.max(axis=0) - occupied.min(axis=0) + 1).tolist()
    import medpy
    import scipy

    return {
        "case": {
            "shape_zyx": list(SHAPE_ZYX),
            "spacing_zyx_mm": list(SPACING_ZYX),
            "seed": seed,
            "reference_voxels": int(reference.sum()),
            "prediction_voxels": int(prediction.sum()),
            "reference_surface_voxels": int(metrics.surface_mask(reference).sum()),
            "prediction_surface_voxels": int(metrics.surface_mask(prediction).sum()),
            "joint_bounding_box_shape": box_shape,
        },
        "repeats": repeats,
        "values": {"medpy": medpy_values, "ours": our_values, "ours_surface_metrics": combined},
        "max_abs_difference": max_abs_difference,
        "median_seconds": {
            "medpy": {name: statistics.median(t) for name, t in medpy_times.items()},
            "ours": {name: statistics.median(t) for name, t in our_times.items()},
            "medpy_hd95_plus_assd": statistics.median(medpy_both),
        },
        "median_speed_ratio": {
            "hd95_plus_assd": both_ratio,
            "hd95_plus_assd_separate_calls": both_ratio_separate,
            **per_function_ratio,
        },
        "targets": {"agreement": AGREEMENT_TOLERANCE, "speedup_hd95_plus_assd": SPEEDUP_TARGET},
        "passed": bool(max_abs_difference <= AGREEMENT_TOLERANCE and both_ratio >= SPEEDUP_TARGET),
        "environment": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "medpy": getattr(medpy, "__version__", "unknown"),
            "cpu_count": os.cpu_count(),
            "machine": platform.machine(),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per function (at least 3; default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic case")
    parser.add_argument("--json", type=Path, default=None, help="write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.repeats < 3:
        parser.error("--repeats must be at least 3 for a meaningful median")

    results = run(args.repeats, args.seed)
    case = results["case"]
    print(
        f"case: {tuple(case['shape_zyx'])} (z, y, x) at {tuple(case['spacing_zyx_mm'])} mm, "
        f"joint bounding box {case['joint_bounding_box_shape']}, "
        f"surface voxels ref {case['reference_surface_voxels']} / pred {case['prediction_surface_voxels']}"
    )
    values = results["values"]
    for name in ("dice", "jaccard", "hd95", "assd"):
        print(f"  {name:8s} medpy {values['medpy'][name]:.10f}  ours {values['ours'][name]:.10f}")
    print(
        f"max |ours - medpy| over all values: {results['max_abs_difference']:.3g} (tolerance {AGREEMENT_TOLERANCE:g})"
    )
    seconds = results["median_seconds"]
    ratios = results["median_speed_ratio"]
    print(f"median seconds over {results['repeats']} repeats (medpy / ours) and median speed ratio:")
    for name in ("dice", "jaccard", "hd95", "assd"):
        print(f"  {name:8s} {seconds['medpy'][name]:8.4f} / {seconds['ours'][name]:8.4f}  x{ratios[name]:.1f}")
    print(
        f"  hd95+assd {seconds['medpy_hd95_plus_assd']:7.4f} / {seconds['ours']['surface_metrics']:8.4f}  "
        f"x{ratios['hd95_plus_assd']:.1f}  (ours as one surface_metrics call; "
        f"x{ratios['hd95_plus_assd_separate_calls']:.1f} as separate hd95 and assd calls; target x{SPEEDUP_TARGET:g})"
    )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")
    print("PASSED" if results["passed"] else "FAILED")
    return 0 if results["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
