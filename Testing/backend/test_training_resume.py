"""``train --resume`` (issue 11, item 6): another method or network is refused; a resumed run is the same run.

Once ``--resume --method maml`` on a DTC checkpoint (or another ``--base-filters`` or
``--architecture``) trained on silently as the checkpoint's run, and a resumed run drew another
batch stream (re-seeded with seed + iteration) than the uninterrupted one. Real training on tiny
phantoms, real SIGTERM into the installed handler to interrupt, real checkpoints.
"""

from __future__ import annotations

import json
import signal

import pytest
import torch
from read_only import Sabotage
from test_training_support import ATRIUM, LIVER, tiny_config

from MultiModalSegLib import cli
from MultiModalSegLib.progress import ProgressReporter
from MultiModalSegLib.training.cancellation import CancellationToken, TrainingCancelled
from MultiModalSegLib.training.checkpoint import load_checkpoint
from MultiModalSegLib.training.train import train
from MultiModalSegLib.weights import load_model_package

DTC_COMMAND = ["train", "--method", "dtc", "--data", ATRIUM, "--iterations", "2", "--patch", "16x32x32",
               "--batch", "2", "--labeled-batch", "1", "--base-filters", "2", "--checkpoint-every", "2",
               "--validate-every", "100", "--device", "cpu"]


@pytest.fixture(scope="module")
def dtc_run(tmp_path_factory):
    """A finished 2-iteration DTC run with a checkpoint, made through the CLI."""
    output = tmp_path_factory.mktemp("resume") / "run"
    assert cli.main([*DTC_COMMAND, "--output", str(output)]) == 0
    return output


def resume(capsys, output, *options: str, method: str = "dtc") -> tuple[int, dict]:
    """``DTC_COMMAND`` (with ``--method method``) plus ``--resume`` and ``options``; the exit code and last event."""
    capsys.readouterr()
    code = cli.main(["train", "--method", method, *DTC_COMMAND[3:], "--output", str(output), "--resume", *options])
    return code, json.loads(capsys.readouterr().out.splitlines()[-1])


@pytest.mark.parametrize("options, named", [
    (["--method", "maml"], "was trained with --method dtc, not maml; resume with --method dtc"),
    (["--base-filters", "4"], "--base-filters 2 (asked: 4)"),
    (["--architecture", '{"has_dropout": false}'], '--architecture null (asked: {"has_dropout": false})'),
    (["--patch", "16x32x16"], "--patch [16, 32, 32] (asked: [16, 32, 16])"),
    (["--seed", "8"], "--seed 1337 (asked: 8)"),
])
def test_resume_with_another_method_or_network_is_refused_in_a_sentence(dtc_run, capsys, options, named):
    before = load_checkpoint(dtc_run / "checkpoint").record
    if options[0] == "--method":
        code, last = resume(capsys, dtc_run, method=options[1])
    else:
        code, last = resume(capsys, dtc_run, *options)
    assert code == 2 and last["event"] == "error", last
    assert named in last["message"] and last["message"].endswith(".")
    assert load_checkpoint(dtc_run / "checkpoint").record == before, "a refused resume changed the checkpoint"


def test_a_set_back_to_the_default_is_compared_with_the_checkpoint(tmp_path, capsys):
    """``--set dtc.beta=0.3`` (the default) on a run trained with 0.5 was once taken as 'nothing asked'."""
    output = tmp_path / "beta"
    assert cli.main([*DTC_COMMAND, "--set", "dtc.beta=0.5", "--output", str(output)]) == 0
    before = load_checkpoint(output / "checkpoint").record
    code, last = resume(capsys, output, "--set", "dtc.beta=0.3")
    assert code == 2 and last["event"] == "error", last
    assert "--set dtc.beta 0.5 (asked: 0.3)" in last["message"], last["message"]
    assert load_checkpoint(output / "checkpoint").record == before, "a refused resume changed the checkpoint"
    code, last = resume(capsys, output, "--set", "dtc.beta=0.5", "--iterations", "3", "--checkpoint-every", "3")
    assert code == 0 and last["event"] == "result", last


@pytest.mark.slow
def test_the_same_command_with_resume_and_a_longer_run_is_accepted(dtc_run, capsys):
    code, last = resume(capsys, dtc_run, "--iterations", "3", "--validate-every", "50", "--checkpoint-every", "3")
    assert code == 0 and last["event"] == "result" and last["iterations"] == 3


def test_the_library_refuses_another_method_too(dtc_run):
    from MultiModalSegLib.errors import MultiModalSegError

    with pytest.raises(MultiModalSegError, match="--method dtc, not maml"):
        train(tiny_config("maml"), ATRIUM, dtc_run, resume=True)


def interrupted_then_resumed(config, data, output) -> None:
    """Train with a real SIGTERM at the first checkpoint (the run stops there), then resume to the end."""
    stream = Sabotage(lambda event: event["event"] == "checkpoint", lambda: signal.raise_signal(signal.SIGTERM))
    with CancellationToken() as token, pytest.raises(TrainingCancelled):
        train(config, data, output, reporter=ProgressReporter(stream=stream), token=token)
    assert stream.fired and load_checkpoint(output / "checkpoint").state.iteration == 2
    train(config, data, output, resume=True)


@pytest.mark.slow
@pytest.mark.parametrize("method, data", [("dtc", ATRIUM), ("maml", LIVER)])
def test_an_interrupted_and_resumed_run_ends_with_the_uninterrupted_runs_weights(tmp_path, method, data):
    """Bit for bit on CPU: weights, optimizer state, losses and validation, with DTC's dropout drawing torch RNG."""
    config = tiny_config(method, iterations=4, checkpoint_every=2, validate_every=2)
    train(config, data, tmp_path / "whole")
    interrupted_then_resumed(config, data, tmp_path / "parts")
    whole, parts = (load_checkpoint(tmp_path / name / "checkpoint") for name in ("whole", "parts"))
    assert whole.state.iteration == parts.state.iteration == 4
    for key, value in whole.weights.items():
        assert torch.equal(value, parts.weights[key]), key
    for key, value in whole.optimizer_tensors.items():
        assert torch.equal(value, parts.optimizer_tensors[key]), key
    assert whole.state.last_losses == parts.state.last_losses
    assert [h["mean_dice"] for h in whole.state.history] == [h["mean_dice"] for h in parts.state.history]
    a = load_model_package(tmp_path / "whole" / "last").load_state_dict()
    b = load_model_package(tmp_path / "parts" / "last").load_state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
