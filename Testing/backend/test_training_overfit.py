"""Each method learns: a few dozen iterations on one phantom patch lower the loss and raise its Dice.

The other training tests check that training runs, writes and resumes; these check that it
*learns*. Each runs the real training loop (:class:`TrainingLoop`: the optimizer update, the
learning-rate schedule, gradient clipping) with the method's real step and loss
(:func:`build_step`), network (:func:`network_architecture`, :func:`build_network`) and SGD
(:func:`build_optimizer`) on one fixed, labeled phantom patch, and measures the Dice of the
network's own label map on that patch before and after. A sign error in the update
(gradient ascent), a loss that does not reach the network, or a step that trains the wrong
output fails them.

The learning rate is raised above the references' (0.01) so that a few dozen iterations
suffice; the floors are well below what was measured (in each test's comment) and far above
what an untrained network gives on these patches.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from test_training_support import reporter_with_events, tiny_config

from MultiModalSegLib.intensity_normalization import normalize_intensity
from MultiModalSegLib.levelset import signed_distance_map
from MultiModalSegLib.phantoms import PHANTOM_KINDS, make_case
from MultiModalSegLib.training.cancellation import CancellationToken
from MultiModalSegLib.training.checkpoint import TrainingState
from MultiModalSegLib.training.distributed import DistributedContext
from MultiModalSegLib.training.loop import TrainingLoop
from MultiModalSegLib.training.setup import (
    build_network,
    build_optimizer,
    build_step,
    network_architecture,
    seed_everything,
)

PATCH = (16, 32, 32)


@dataclass
class OverfitRun:
    """The losses reported at every iteration and the patch's Dice per foreground class."""

    losses: list[float]
    dice_before: list[float]
    dice_after: list[float]


def one_patch(kind: str, method: str) -> dict[str, np.ndarray]:
    """A whole phantom case drawn at the patch size, as a batch of one (the loader's keys)."""
    info = PHANTOM_KINDS[kind]
    case = make_case(kind, 0, shape=PATCH)
    scheme = "mr" if kind == "atrium-mr" else "ct"
    image = np.stack([normalize_intensity(sitk.GetArrayFromImage(case["images"][name]), scheme)
                      for name in info.modalities])
    label = sitk.GetArrayFromImage(case["label"]).astype(np.int64)
    batch = {"image": image[None], "label": label[None]}
    if method == "dtc":  # the loader's per-patch SDF target of each foreground class
        classes = sorted(info.foreground_labels.values())
        batch["sdf"] = np.stack([signed_distance_map((label == value)[None])[0] for value in classes])[None]
    return batch


def patch_dice(network: torch.nn.Module, method: str, batch: dict[str, np.ndarray], num_foreground: int
               ) -> list[float]:
    """Dice per foreground class of the network's label map (eval mode) against the patch's label."""
    network.eval()
    with torch.no_grad():
        image = torch.from_numpy(batch["image"]).float()
        if method == "dtc":  # one sigmoid channel per foreground class, > 0.5
            seg_logits, _ = network(image)
            probabilities = torch.sigmoid(seg_logits[0])
            best = probabilities.argmax(0)
            labels = torch.where(probabilities.max(0).values > 0.5, best + 1, 0)
        else:  # MAML's joint output and the U-Net's output: softmax with background
            labels = network(image)["joint"][0].argmax(0)
    network.train()
    predicted, truth = labels.numpy(), batch["label"][0]
    scores = []
    for value in range(1, num_foreground + 1):
        overlap = np.logical_and(predicted == value, truth == value).sum()
        total = (predicted == value).sum() + (truth == value).sum()
        scores.append(float(2 * overlap / total) if total else 1.0)
    return scores


def overfit(method: str, kind: str, iterations: int, learning_rate: float,
            dtc_base_filters: int | None = None) -> OverfitRun:
    """Train ``method`` for ``iterations`` on one patch of ``kind`` through the real training loop."""
    info = PHANTOM_KINDS[kind]
    num_foreground = len(info.foreground_labels)
    config = tiny_config(method, iterations=iterations, patch_size=PATCH, batch_size=1, labeled_batch_size=1)
    config.optimizer.learning_rate = learning_rate
    if dtc_base_filters is not None:
        config.dtc.base_filters = dtc_base_filters
    batch = one_patch(kind, method)
    seed_everything(0)
    network = build_network(network_architecture(config, list(info.modalities), num_foreground), PATCH)
    dice_before = patch_dice(network, method, batch, num_foreground)
    reporter, events = reporter_with_events()
    loop = TrainingLoop(network=network, module=network, optimizer=build_optimizer(network, config.optimizer),
                        step=build_step(config), batches=itertools.repeat(batch),
                        optimizer_config=config.optimizer,
                        state=TrainingState(iteration=0, total_iterations=iterations, config={}, method=method),
                        device=torch.device("cpu"), context=DistributedContext(), token=CancellationToken(),
                        reporter=reporter)
    loop.run()
    losses = [event["losses"]["loss"] for event in events.of("progress")]
    assert len(losses) == iterations
    return OverfitRun(losses, dice_before, patch_dice(network, method, batch, num_foreground))


def mean_of_first_and_last(losses: list[float], count: int = 5) -> tuple[float, float]:
    """Means of the first and the last ``count`` losses (DTC's dropout makes single values noisy)."""
    return float(np.mean(losses[:count])), float(np.mean(losses[-count:]))


@pytest.mark.slow
@pytest.mark.parametrize("method, kind, iterations, base_filters, loss_ratio, dice_floor", [
    # measured: loss 6.47 -> 2.30, liver Dice 0.11 -> 0.74 (~7 s on one thread)
    ("maml", "liver-ct2", 30, None, 0.6, 0.5),
    # measured: loss 1.61 -> 0.70, liver Dice 0.06 -> 0.60 (~4 s)
    ("unet", "liver-ct2", 60, None, 0.7, 0.45),
    # measured: loss 0.90 -> 0.12, atrium Dice 0.09 -> 0.84 (VNet width 4, ~2 s)
    ("dtc", "atrium-mr", 60, 4, 0.5, 0.6),
])
def test_each_method_overfits_one_patch(method, kind, iterations, base_filters, loss_ratio, dice_floor):
    run = overfit(method, kind, iterations=iterations, learning_rate=0.1, dtc_base_filters=base_filters)
    first, last = mean_of_first_and_last(run.losses)
    assert last < loss_ratio * first, run.losses
    assert run.dice_before[0] < 0.3  # the first foreground class: liver, atrium
    assert run.dice_after[0] > dice_floor, run.dice_after
