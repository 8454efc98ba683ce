"""Multi-process training: ``torchrun`` with 2 CPU processes and gloo, as on a GPU cluster with NCCL.

A real ``python -m torch.distributed.run --nproc_per_node 2 -m MultiModalSegLib train`` run; both
ranks report the sha256 of their final weights (gathered by rank 0 into the result event), they
must be identical, and only rank 0 prints events and writes files.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace

import numpy as np
from test_training_support import ATRIUM, PYTHON, REPO, subprocess_env

from MultiModalSegLib.training.distributed import DistributedContext


def test_two_gloo_processes_end_with_identical_weights(tmp_path):
    output = tmp_path / "ddp"
    command = [PYTHON, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", "2",
               "-m", "MultiModalSegLib", "train", "--method", "dtc", "--data", ATRIUM, "--output", str(output),
               "--iterations", "3", "--patch", "16x32x32", "--batch", "2", "--labeled-batch", "1",
               "--base-filters", "2", "--validate-every", "3", "--checkpoint-every", "3", "--device", "cpu"]
    done = subprocess.run(command, capture_output=True, text=True, env=subprocess_env(), cwd=REPO, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    results = [e for e in events if e["event"] == "result"]
    assert len(results) == 1  # rank 1 prints nothing
    assert len([e for e in events if e["event"] == "started"]) == 1
    result = results[0]
    assert result["world_size"] == 2
    digests = result["weights_sha256_per_rank"]
    assert len(digests) == 2 and digests[0] == digests[1]
    assert [e["iteration"] for e in events if e["event"] == "validation"] == [3]
    manifest = json.loads((output / "last" / "manifest.json").read_text())
    assert manifest["provenance"]["world_size"] == 2
    assert not [p for p in output.rglob("*") if ".tmp-" in p.name]


def test_each_rank_samples_its_own_patches():
    from MultiModalSegLib.datasets import load_cases
    from MultiModalSegLib.training.data import describe_labels, describe_modalities
    from MultiModalSegLib.training.setup import make_batch_loader, prepare_volumes

    cases = load_cases(ATRIUM)
    modalities = describe_modalities(ATRIUM, cases)
    labels = describe_labels(ATRIUM, [1])
    volumes = prepare_volumes(cases[:2], modalities, {}, (16, 32, 32))
    unlabeled = prepare_volumes([replace(c, label=None) for c in cases[2:]], modalities, {}, (16, 32, 32))

    def first_batch(rank: int) -> np.ndarray:
        loader = make_batch_loader(volumes, unlabeled, method="dtc", labels=labels, patch_size=(16, 32, 32),
                                   batch_size=2, labeled_batch_size=1, foreground_fraction=0.5, seed=1,
                                   context=DistributedContext(rank=rank, world_size=2))
        return np.asarray(next(loader)["image"])

    assert not np.array_equal(first_batch(0), first_batch(1))
    assert np.array_equal(first_batch(0), first_batch(0))
