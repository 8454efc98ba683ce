"""One DTC training iteration (HiLab-git/DTC ``train_la_dtc.py``).

The whole batch (labeled first, then unlabeled) goes through the VNet once. The labeled part is
supervised by Dice on ``sigmoid(seg)`` and ``beta * MSE(level_set, SDF)``; every sample, labeled
or not, contributes the dual-task consistency ``mean((sigmoid(seg) - heaviside(level_set))^2)``
weighted by the ramp-up ``w(t)``. All of that is :class:`~MultiModalSegLib.losses.DTCLoss`; this
step only feeds it the batch (the SDF targets were computed per patch by the batch loader).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from MultiModalSegLib.training.loop import StepResult
from MultiModalSegLib.training.maml_step import loss_terms

if TYPE_CHECKING:  # pragma: no cover
    import torch


class DTCStep:
    """``step(network, batch, iteration)`` for DTC."""

    def __init__(self, loss: Any) -> None:
        self.loss = loss

    def __call__(self, network: torch.nn.Module, batch: dict[str, Any], iteration: int) -> StepResult:
        image = batch["image"]
        labeled = int(batch.get("labeled_batch_size", image.shape[0]))
        seg_logits, level_set = network(image)
        total, terms = loss_terms(self.loss(seg_logits.float(), level_set.float(), batch["label"], batch["sdf"],
                                            labeled, iteration))
        return StepResult(loss=total, terms=terms)
