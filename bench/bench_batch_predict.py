"""Batch prediction throughput: ``predict --data`` (one process) vs a loop of single ``predict`` calls.

What a researcher does with a test set of N cases, both ways, on the bundled ``maml-liver-ct2``
package and small two-phase liver phantoms written to an nnU-Net raw folder (``imagesTs``):

1. **loop**: N times ``python -m MultiModalSegLib predict --model maml-liver-ct2 --input
   arterial=... --input venous=... --output ...``, one process per case (each one imports
   torch, verifies the weights' sha256 and builds the network);
2. **batch**: one ``python -m MultiModalSegLib predict --model maml-liver-ct2 --data DIR:test
   --output ...`` (network built once, the next case read while the current one runs).

Both print JSON lines into a pipe, as Slicer and scripts run them. Reported for N in
``--cases`` (default 2, 4, 8): wall seconds and cases per minute, the CPU seconds the child
processes used (``getrusage(RUSAGE_CHILDREN)``), the speed-up batch / loop by each, and the
marginal seconds per case of each (slope of a least-squares line over N), which says how each
scales with N. This machine is shared with training runs, so wall time can swing by a factor
of ten when they start or stop; CPU seconds do not, and with one thread per process
(``OMP_NUM_THREADS=1``) they equal the wall time of a quiet machine. Then, in one process,
the batch with and without reading ahead (``BatchOptions.prefetch``) on the same cases, and
the time reading one case takes (what reading ahead can hide at most).

Target: the batch does the largest N with at most 1 / 1.5 of the loop's CPU seconds (at least
1.5x the cases per CPU minute).
Run: ``python bench/bench_batch_predict.py [--cases 2,4,8] [--shape 32x64x64] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))

import numpy as np  # noqa: E402

from MultiModalSegLib.datasets import Case, write_cases_nnunet  # noqa: E402
from MultiModalSegLib.phantoms import make_case  # noqa: E402

MODEL = "maml-liver-ct2"
TARGET_SPEEDUP = 1.5


def write_test_set(root: Path, count: int, shape: tuple[int, int, int]) -> Path:
    """``count`` unlabeled liver phantoms as an nnU-Net raw folder (they land in imagesTs)."""
    cases = []
    for index in range(count):
        made = make_case("liver-ct2", 700_000 + index, shape=shape)
        cases.append(Case(f"liver_{index:03d}", dict(made["images"]), None, "bench"))
    return write_cases_nnunet(cases, root, "bench", modalities=["arterial", "venous"],
                              label_names={"liver": 1, "tumor": 2})


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def backend(*argv: str) -> tuple[float, float]:
    """Run ``python -m MultiModalSegLib ARGV`` with stdout in a pipe; return its wall and CPU seconds."""
    cpu = children_cpu_seconds()
    started = time.perf_counter()
    completed = subprocess.run([sys.executable, "-m", "MultiModalSegLib", *argv], cwd=REPOSITORY,
                               capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPOSITORY)})
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:3])} failed ({completed.returncode}): {completed.stdout[-500:]}"
                         f"{completed.stderr[-1500:]}")
    return seconds, children_cpu_seconds() - cpu


def loop_of_single_calls(dataset: Path, count: int, output: Path) -> tuple[float, float]:
    total = np.zeros(2)
    for index in range(count):
        images = dataset / "imagesTs"
        total += backend("predict", "--model", MODEL, "--device", "cpu",
                         "--input", f"arterial={images / f'liver_{index:03d}_0000.nii.gz'}",
                         "--input", f"venous={images / f'liver_{index:03d}_0001.nii.gz'}",
                         "--output", str(output / f"liver_{index:03d}"))
    return float(total[0]), float(total[1])


def slope(counts: list[int], seconds: list[float]) -> float:
    """Seconds per additional case (least-squares line through the points)."""
    return float(np.polyfit(np.array(counts, float), np.array(seconds, float), 1)[0]) if len(counts) > 1 else float("nan")


def prefetch_comparison(dataset: Path, work: Path) -> dict[str, float]:
    """Seconds per case in one process, reading the next case ahead or not (median of 2 alternating runs each)."""
    from MultiModalSegLib.batch_cases import list_prediction_cases
    from MultiModalSegLib.batch_predict import BatchOptions, predict_data_set
    from MultiModalSegLib.imageio import read_image
    from MultiModalSegLib.progress import ProgressReporter
    from MultiModalSegLib.weights import load_model_package

    timings: dict[bool, list[float]] = {False: [], True: []}
    for repeat in range(2):
        for prefetch in (False, True):
            output = work / f"prefetch-{prefetch}-{repeat}"
            summary = predict_data_set(MODEL, f"{dataset}:test", output, BatchOptions(device="cpu", prefetch=prefetch),
                                       ProgressReporter(quiet=True))
            done = summary["counts"]["done"]
            timings[prefetch].append(sum(case["seconds"] for case in summary["cases"]) / done)
    reading = []
    for case in list_prediction_cases(f"{dataset}:test", load_model_package(MODEL, verify=False).manifest):
        started = time.perf_counter()
        for path in case.inputs.values():
            read_image(path)
        reading.append(time.perf_counter() - started)
    return {"seconds_per_case_without_prefetch": round(float(np.median(timings[False])), 3),
            "seconds_per_case_with_prefetch": round(float(np.median(timings[True])), 3),
            "seconds_reading_one_case": round(float(np.median(reading)), 4)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="2,4,8", help="numbers of cases to time, comma-separated")
    parser.add_argument("--shape", default="32x64x64", help="phantom grid ZxYxX (default 32x64x64)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()
    counts = sorted({int(value) for value in args.cases.split(",") if value.strip()})
    shape = tuple(int(value) for value in args.shape.lower().split("x"))

    import torch

    rows = []
    with tempfile.TemporaryDirectory(prefix="mmseg-bench-batch-") as temporary:
        work = Path(temporary)
        dataset = write_test_set(work / "Dataset900_BenchLiver", max(counts), shape)
        backend("models", "--json")  # warm the file cache for the interpreter and torch
        for count in counts:
            subset = write_test_set(work / f"Dataset9{count:02d}_Subset", count, shape)
            loop, loop_cpu = loop_of_single_calls(subset, count, work / f"loop-{count}")
            batch, batch_cpu = backend("predict", "--model", MODEL, "--device", "cpu", "--data", f"{subset}:test",
                                       "--output", str(work / f"batch-{count}"))
            rows.append({"cases": count, "loop_s": round(loop, 2), "batch_s": round(batch, 2),
                         "loop_cpu_s": round(loop_cpu, 2), "batch_cpu_s": round(batch_cpu, 2),
                         "loop_cases_per_min": round(60 * count / loop, 2),
                         "batch_cases_per_min": round(60 * count / batch, 2),
                         "speedup_wall": round(loop / batch, 2), "speedup_cpu": round(loop_cpu / batch_cpu, 2)})
            print(f"{count:3d} cases: loop {loop:6.1f} s wall, {loop_cpu:6.1f} s CPU "
                  f"({rows[-1]['loop_cases_per_min']:5.1f} cases/min); batch {batch:6.1f} s wall, {batch_cpu:6.1f} s "
                  f"CPU ({rows[-1]['batch_cases_per_min']:5.1f} cases/min): {rows[-1]['speedup_wall']:.2f}x wall, "
                  f"{rows[-1]['speedup_cpu']:.2f}x CPU", flush=True)
        prefetch = prefetch_comparison(dataset, work)
    result = {
        "model": MODEL, "shape_zyx": list(shape), "threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "rows": rows,
        "loop_seconds_per_extra_case": round(slope(counts, [r["loop_s"] for r in rows]), 2),
        "batch_seconds_per_extra_case": round(slope(counts, [r["batch_s"] for r in rows]), 2),
        "loop_cpu_seconds_per_extra_case": round(slope(counts, [r["loop_cpu_s"] for r in rows]), 2),
        "batch_cpu_seconds_per_extra_case": round(slope(counts, [r["batch_cpu_s"] for r in rows]), 2),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        **prefetch,
        "target": f"batch >= {TARGET_SPEEDUP}x the loop's cases per CPU minute at {counts[-1]} cases",
    }
    result["met"] = rows[-1]["speedup_cpu"] >= TARGET_SPEEDUP
    print(f"marginal CPU seconds per case: loop {result['loop_cpu_seconds_per_extra_case']}, batch "
          f"{result['batch_cpu_seconds_per_extra_case']} (wall: {result['loop_seconds_per_extra_case']}, "
          f"{result['batch_seconds_per_extra_case']}; load average {result['load_average_1min_at_end']}); in one process {prefetch['seconds_per_case_without_prefetch']} s "
          f"per case without reading ahead, {prefetch['seconds_per_case_with_prefetch']} s with (reading a case: "
          f"{prefetch['seconds_reading_one_case']} s); "
          f"{'target met' if result['met'] else 'TARGET MISSED'} ({result['target']})")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if result["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
