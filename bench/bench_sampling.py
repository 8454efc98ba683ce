"""What foreground forcing and the class choice do to the training patches (no network involved).

For the liver (liver, tumour) and brain tumour (necrotic core, edema, enhancing) phantoms at the
bundled models' patch sizes, draws the batches ``TwoStreamBatchLoader`` would give a training run
(batch 2, labeled only) under three recipes and counts, per foreground class, the share of
patches *centred* on it (a forced patch's chosen class) and the share that *contain* it at all:

* ``v1``: each patch forced with probability 0.33, the class uniform among those present (what the
  v1 bundled models trained with);
* ``nnU-Net``: nnU-Net's per-batch rule (one of every two patches forced), class uniform;
* ``bundled``: per-batch rule, class drawn with probability ~ 1/sqrt(share of the foreground), the
  rare-class rule of the v2 bundled recipes.

Run: ``python bench/bench_sampling.py [--cases 12] [--batches 400] [--json out.json]``. It has no
target to miss; it prints a table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

RECIPES = {
    "v1": {"foreground_rule": "probabilistic", "class_choice": "uniform"},
    "nnU-Net": {"foreground_rule": "per_batch", "class_choice": "uniform"},
    "bundled": {"foreground_rule": "per_batch", "class_choice": "rare"},
}
TASKS = {
    "liver-ct2": {"modalities": ["arterial", "venous"], "patch": (32, 64, 64), "values": [1, 2],
                  "names": ["liver", "tumour"]},
    "brain-mr4": {"modalities": ["t1", "t1ce", "t2", "flair"], "patch": (48, 48, 48), "values": [1, 2, 4],
                  "names": ["necrotic core", "edema", "enhancing"]},
}


def measure(kind: str, cases: int, batches: int) -> dict[str, dict[str, list[float]]]:
    import dataclasses

    from MultiModalSegLib.data_plan import compute_plan
    from MultiModalSegLib.datasets import load_cases
    from MultiModalSegLib.sampling import PatchSamplingConfig, TwoStreamBatchLoader, prepare_case
    from MultiModalSegLib.training.data import describe_modalities

    task = TASKS[kind]
    spec = f"phantom:{kind}:{cases}:1"
    loaded = load_cases(spec, task["modalities"])
    table = describe_modalities(spec, loaded, task["modalities"])
    plan = compute_plan(loaded, table.names, table.normalization, table.reference, task["patch"])
    prepared = [prepare_case(case, table.names, table.normalization, reference=table.reference,
                             minimum_shape=task["patch"], plan=plan) for case in loaded]
    results: dict[str, dict[str, list[float]]] = {}
    for name, rule in RECIPES.items():
        config = dataclasses.replace(PatchSamplingConfig.for_maml(task["patch"]), **rule)
        loader = TwoStreamBatchLoader(prepared, config, task["values"], batch_size=2, seed=0)
        sampler = loader.sampler
        contains = np.zeros(len(task["values"]))
        centred = np.zeros(len(task["values"]))
        rng = np.random.default_rng(0)
        patches = 0
        for _ in range(batches):
            forced = sampler.forced_slots(2, rng)
            for slot in range(2):
                case_index = int(rng.integers(len(sampler.cases)))
                present = [c for c, voxels in enumerate(sampler.foreground_locations[case_index]) if len(voxels)]
                if forced[slot] and present:
                    centred[present] += sampler.class_probabilities(present)
                _, label = sampler.sample_case(case_index, rng, forced[slot])
                contains += [bool((label == c + 1).any()) for c in range(len(task["values"]))]
                patches += 1
        results[name] = {"centred": list(np.round(100 * centred / patches, 1)),
                         "contains": list(np.round(100 * contains / patches, 1)),
                         "class_share_of_foreground": list(np.round(100 * sampler.class_shares, 2))}
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=12)
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    report = {}
    for kind, task in TASKS.items():
        report[kind] = measure(kind, args.cases, args.batches)
        shares = report[kind]["bundled"]["class_share_of_foreground"]
        print(f"\n{kind}: {args.cases} phantoms, {2 * args.batches} patches of {task['patch']} per recipe; "
              f"foreground shares {dict(zip(task['names'], shares))} %")
        print("| recipe | " + " | ".join(f"centred on {n} | contains {n}" for n in task["names"]) + " |")
        print("|---|" + "---|---|" * len(task["names"]))
        for name, row in report[kind].items():
            cells = " | ".join(f"{c} % | {h} %" for c, h in zip(row["centred"], row["contains"]))
            print(f"| {name} | {cells} |")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
