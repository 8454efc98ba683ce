"""``train``: MAML (supervised, mutual learning) and DTC (semi-supervised) on tiny phantoms.

Real torch, real phantom volumes, real model packages and checkpoints on disk, the lead's
inference on the written package.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_training_support import ATRIUM, LIVER, reporter_with_events, tiny_config

from MultiModalSegLib.errors import MultiModalSegError
from MultiModalSegLib.training.checkpoint import load_checkpoint
from MultiModalSegLib.training.train import train
from MultiModalSegLib.weights import load_model_package


def manifest_of(folder) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def test_maml_training_writes_best_last_checkpoint_and_progress(tmp_path):
    reporter, events = reporter_with_events()
    output = tmp_path / "run"
    outcome = train(tiny_config("maml"), LIVER, output, reporter=reporter, command="mmseg train --method maml")

    progress = events.of("progress")
    assert [p["iteration"] for p in progress] == [1, 2, 3, 4]
    assert all(p["total"] == 4 and p["seconds_per_iteration"] > 0 and p["eta_s"] >= 0 for p in progress)
    losses = progress[-1]["losses"]
    assert {"loss", "joint", "intra/arterial", "intra/venous"} <= set(losses)
    assert all(np.isfinite(v) for v in losses.values())
    assert progress[0]["lr"] == pytest.approx(0.01) and progress[-1]["lr"] < progress[0]["lr"]  # poly decay
    validations = events.of("validation")
    assert [v["iteration"] for v in validations] == [2, 4]
    assert set(validations[0]["dice_per_class"]) <= {"liver", "tumor"} and validations[0]["cases"]
    assert [c["iteration"] for c in events.of("checkpoint")] == [2, 4]

    last = manifest_of(output / "last")
    assert last["provenance"]["selection"] == "last" and last["provenance"]["iteration"] == 4
    assert last["provenance"]["command"] == "mmseg train --method maml" and last["provenance"]["seed"] == 7
    assert len(last["provenance"]["validation"]) == 2
    assert last["provenance"]["cases"]["validation"] == ["liver-ct2-2"]
    assert set(last["provenance"]["final_losses"]) >= {"loss", "joint"}
    assert [label["name"] for label in last["labels"]] == ["liver", "tumor"]
    assert last["reference_modality"] == "venous"
    assert [m["normalization"] for m in last["modalities"]] == ["ct", "ct"]
    best = manifest_of(output / "best")
    assert best["provenance"]["selection"] == "best"
    assert best["provenance"]["iteration"] == outcome.best_iteration == last["provenance"]["best_iteration"]
    assert load_checkpoint(output / "checkpoint").state.iteration == 4
    result = json.loads((output / "result.json").read_text())
    assert {"best/model.safetensors", "last/manifest.json", "checkpoint/state.json"} <= set(result["files"])

    # the package is usable by inference as written
    from MultiModalSegLib.datasets import load_cases
    from MultiModalSegLib.inference import predict

    case = load_cases(LIVER)[2]
    prediction = predict(load_model_package(output / "last"), case.images, device="cpu")
    assert prediction.labelmap.shape == tuple(reversed(case.images["venous"].GetSize()))


def test_dtc_trains_semi_supervised_with_ramped_consistency(tmp_path):
    reporter, events = reporter_with_events()
    config = tiny_config("dtc", labeled_cases=1, batch_size=2, labeled_batch_size=1, iterations=3,
                         validate_every=3, checkpoint_every=3)
    train(config, ATRIUM, tmp_path / "dtc", reporter=reporter)
    data = events.of("data")[0]
    assert (data["labeled"], data["unlabeled"], data["validation"]) == (1, 2, 1)
    losses = events.of("progress")[-1]["losses"]
    assert {"dice", "sdf_mse", "consistency", "consistency_weight"} <= set(losses)
    assert 0 < losses["consistency_weight"] < 0.01  # the reference's ramp starts at exp(-5)
    manifest = manifest_of(tmp_path / "dtc" / "last")
    assert manifest["method"] == "dtc" and manifest["architecture"]["name"] == "DTCVNet"
    assert manifest["provenance"]["cases"]["unlabeled"] == ["atrium-mr-1", "atrium-mr-2"]
    assert manifest["provenance"]["config"]["optimizer"]["momentum"] == 0.9  # the DTC reference's SGD


def test_same_seed_gives_identical_weights_on_cpu(tmp_path):
    def run(name: str, seed: int) -> str:
        config = tiny_config("dtc", iterations=3, validation_cases=0, checkpoint_every=3, seed=seed)
        return train(config, ATRIUM, tmp_path / name).rank_weight_digests[0]

    first, second, other = run("a", 3), run("b", 3), run("c", 4)
    assert first == second
    assert first != other
    a = load_model_package(tmp_path / "a" / "last").load_state_dict()
    b = load_model_package(tmp_path / "b" / "last").load_state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_continues_from_the_checkpoint(tmp_path):
    output = tmp_path / "run"
    config = tiny_config("dtc", iterations=2, validate_every=2, checkpoint_every=2)
    train(config, ATRIUM, output)
    before = load_checkpoint(output / "checkpoint")
    with pytest.raises(MultiModalSegError, match="not empty"):
        train(config, ATRIUM, output)
    with pytest.raises(MultiModalSegError, match="same --data"):
        train(config, LIVER, output, resume=True)

    reporter, events = reporter_with_events()
    outcome = train(config, ATRIUM, output, resume=True, resume_iterations=4, reporter=reporter)
    assert [p["iteration"] for p in events.of("progress")] == [3, 4]
    assert outcome.iterations == 4
    after = load_checkpoint(output / "checkpoint")
    assert after.state.iteration == 4 and after.state.total_iterations == 4
    assert [h["iteration"] for h in after.state.history] == [2, 4]  # the validation history carried over
    assert before.record["extra"]["split"] == after.record["extra"]["split"]
    assert manifest_of(output / "last")["provenance"]["iteration"] == 4

    with pytest.raises(MultiModalSegError, match="no checkpoint"):
        train(config, ATRIUM, tmp_path / "empty", resume=True)


def test_a_patch_that_does_not_fit_the_network_is_refused(tmp_path):
    with pytest.raises(MultiModalSegError, match="multiple of"):
        train(tiny_config("dtc", patch_size=(12, 32, 32)), ATRIUM, tmp_path / "bad")


def test_data_without_any_label_is_refused(tmp_path):
    from MultiModalSegLib.datasets import load_cases
    from MultiModalSegLib.training.data import split_cases

    cases = [c for c in load_cases(ATRIUM)]
    for case in cases:
        case.label = None
    with pytest.raises(MultiModalSegError, match="at least one labeled case"):
        split_cases(cases)
