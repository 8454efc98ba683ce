"""Resumable checkpoints: safetensors + JSON only, exact continuation, atomic replacement."""

from __future__ import annotations

import json
import os

import pytest
import torch

from MultiModalSegLib.errors import MultiModalSegError
from MultiModalSegLib.models import DTCVNet
from MultiModalSegLib.training.checkpoint import (
    MODEL_FILE,
    OPTIMIZER_FILE,
    STATE_FILE,
    TrainingState,
    load_checkpoint,
    recover_folder,
    replace_folder_atomically,
    save_checkpoint,
)


def make_network_and_optimizer() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    network = DTCVNet(1, 1, base_filters=2)  # BatchNorm buffers and Dropout3d: RNG and buffers matter
    optimizer = torch.optim.SGD(network.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    return network, optimizer


def train_steps(network: torch.nn.Module, optimizer: torch.optim.Optimizer, steps: int) -> None:
    network.train()
    for _ in range(steps):
        x = torch.randn(2, 1, 16, 16, 16)
        seg, level_set = network(x)
        loss = seg.pow(2).mean() + level_set.abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def state(iteration: int) -> TrainingState:
    return TrainingState(iteration=iteration, total_iterations=10, config={"method": "dtc"}, method="dtc",
                         best_metric=0.5, best_iteration=2, history=[{"iteration": 2, "mean_dice": 0.5}],
                         last_losses={"loss": 1.0})


def test_resume_continues_exactly(tmp_path):
    network, optimizer = make_network_and_optimizer()
    train_steps(network, optimizer, 3)
    folder = save_checkpoint(tmp_path / "checkpoint", network, optimizer, state(3))
    train_steps(network, optimizer, 2)
    uninterrupted = {k: v.clone() for k, v in network.state_dict().items()}

    fresh, fresh_optimizer = make_network_and_optimizer()
    torch.manual_seed(999)  # the RNG state must come from the checkpoint, not from here
    loaded = load_checkpoint(folder)
    loaded.restore(fresh, fresh_optimizer)
    assert loaded.state.iteration == 3 and loaded.state.best_iteration == 2
    train_steps(fresh, fresh_optimizer, 2)
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, uninterrupted[key]), key


def test_checkpoint_holds_no_pickle(tmp_path):
    network, optimizer = make_network_and_optimizer()
    train_steps(network, optimizer, 1)
    folder = save_checkpoint(tmp_path / "checkpoint", network, optimizer, state(1))
    assert sorted(p.name for p in folder.iterdir()) == sorted([MODEL_FILE, OPTIMIZER_FILE, STATE_FILE])
    for name in (MODEL_FILE, OPTIMIZER_FILE):
        header_length = int.from_bytes((folder / name).read_bytes()[:8], "little")
        header = json.loads((folder / name).read_bytes()[8:8 + header_length])  # safetensors header is JSON
        assert header
    record = json.loads((folder / STATE_FILE).read_text())
    assert record["optimizer"]["param_groups"][0]["momentum"] == 0.9
    momentum = [k for k in header if k.startswith("state.")]
    assert momentum, "the SGD momentum buffers are stored as tensors"


def test_corrupt_checkpoint_is_refused(tmp_path):
    network, optimizer = make_network_and_optimizer()
    folder = save_checkpoint(tmp_path / "checkpoint", network, optimizer, state(1))
    data = bytearray((folder / MODEL_FILE).read_bytes())
    data[-3] ^= 0x55
    (folder / MODEL_FILE).write_bytes(bytes(data))
    with pytest.raises(MultiModalSegError, match="corrupt"):
        load_checkpoint(folder)
    with pytest.raises(MultiModalSegError, match="no checkpoint"):
        load_checkpoint(tmp_path / "nothing")


def test_checkpoint_of_another_network_is_refused(tmp_path):
    network, optimizer = make_network_and_optimizer()
    folder = save_checkpoint(tmp_path / "checkpoint", network, optimizer, state(1))
    other = DTCVNet(1, 2, base_filters=2)
    with pytest.raises(MultiModalSegError, match="another network"):
        load_checkpoint(folder).restore(other)


def test_failed_write_leaves_the_previous_folder(tmp_path):
    final = tmp_path / "checkpoint"
    final.mkdir()
    (final / "a.txt").write_text("old")
    with pytest.raises(RuntimeError), replace_folder_atomically(final) as staging:
        (staging / "a.txt").write_text("new")
        raise RuntimeError("killed while writing")
    assert (final / "a.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
    with replace_folder_atomically(final) as staging:
        (staging / "a.txt").write_text("new")
    assert (final / "a.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


def test_half_done_swap_is_recovered(tmp_path):
    network, optimizer = make_network_and_optimizer()
    folder = save_checkpoint(tmp_path / "checkpoint", network, optimizer, state(4))
    # a process killed between "old -> .old-" and "staging -> final" leaves these two behind
    os.replace(folder, tmp_path / ".checkpoint.old-x1")
    (tmp_path / ".checkpoint.tmp-x2").mkdir()
    (tmp_path / ".checkpoint.tmp-x2" / MODEL_FILE).write_bytes(b"partial")
    assert load_checkpoint(folder).state.iteration == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
    recover_folder(folder)  # idempotent
    assert folder.is_dir()
