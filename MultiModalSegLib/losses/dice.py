"""Soft Dice losses, alone and with cross-entropy, as the two reference codes use them.

* :class:`SoftDiceLoss` and :class:`DiceCELoss` follow nnU-Net v1 (on which the MAML
  reference is built): ``dice_k = (2 TP_k + smooth) / (2 TP_k + FP_k + FN_k + smooth)``
  on softmax probabilities, summed over the batch too when ``batch_dice`` (nnU-Net's 3D
  full-resolution default), background class left out, ``smooth = 1e-5``; DiceCE adds
  cross-entropy with weight 1 each. nnU-Net returns ``-mean(dice)``; we return
  ``1 - mean(dice)`` so a perfect prediction gives 0. The gradient is identical.
* :func:`squared_dice_loss` is DTC's (V-Net, Milletari 2016) ``dice_loss``:
  ``1 - (2 sum(p t) + smooth) / (sum(p^2) + sum(t^2) + smooth)`` over every voxel of the
  batch, on sigmoid probabilities.

Targets may be class indices ``[B, *spatial]`` or ``[B, 1, *spatial]`` (integer or
float holding integers) or one-hot ``[B, K, *spatial]`` (the shape of the logits).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DiceCELoss", "SoftDiceLoss", "class_indices", "one_hot", "squared_dice_loss"]

Nonlinearity = Literal["softmax", "sigmoid", "none"]


def one_hot(labels: Tensor, num_classes: int) -> Tensor:
    """Class-index map ``[B, *spatial]`` or ``[B, 1, *spatial]`` -> float ``[B, K, *spatial]``."""
    if labels.dim() >= 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    encoded = F.one_hot(labels.long(), num_classes)  # [B, *spatial, K]
    return encoded.movedim(-1, 1).to(torch.float32)


def _target_as_one_hot(target: Tensor, logits: Tensor) -> Tensor:
    """Bring a class-index or one-hot target to the logits' shape ``[B, K, *spatial]``."""
    if target.shape == logits.shape and logits.shape[1] > 1:
        return target.to(torch.float32)
    if target.dim() == logits.dim() - 1 or (target.dim() == logits.dim() and target.shape[1] == 1):
        indices = target[:, 0] if target.dim() == logits.dim() else target
        if indices.shape[0] != logits.shape[0] or indices.shape[1:] != logits.shape[2:]:
            raise ValueError(f"Target shape {tuple(target.shape)} does not match logits {tuple(logits.shape)}.")
        return one_hot(indices, logits.shape[1])
    raise ValueError(
        f"Target must be class indices [B, *spatial] / [B, 1, *spatial] or one-hot like the logits "
        f"{tuple(logits.shape)}; got {tuple(target.shape)}."
    )


def class_indices(target: Tensor, logits: Tensor) -> Tensor:
    """Class-index map ``[B, *spatial]`` (long) from a class-index or one-hot target."""
    if target.shape == logits.shape and logits.shape[1] > 1:
        return target.argmax(dim=1)
    if target.dim() == logits.dim():
        target = target[:, 0]
    return target.long()


def _probabilities(logits: Tensor, nonlinearity: Nonlinearity) -> Tensor:
    logits = logits.float()  # sums over whole volumes overflow half precision
    if nonlinearity == "softmax":
        return torch.softmax(logits, dim=1)
    if nonlinearity == "sigmoid":
        return torch.sigmoid(logits)
    if nonlinearity == "none":
        return logits
    raise ValueError(f"Unknown nonlinearity {nonlinearity!r}; use 'softmax', 'sigmoid' or 'none'.")


class SoftDiceLoss(nn.Module):
    """nnU-Net's soft Dice loss: ``1 - mean_k dice_k`` over the scored classes.

    Args:
        batch_dice: sum TP/FP/FN over the batch as well as space (one Dice per class for
            the batch, nnU-Net's default for 3D full resolution) instead of one Dice per
            sample and class, averaged.
        include_background: score class 0 too. nnU-Net leaves it out (``do_bg=False``);
            with sigmoid (one-vs-rest) outputs every channel is a foreground, so pass True.
        smooth: added to numerator and denominator; nnU-Net uses 1e-5.
        nonlinearity: applied to the logits first ("softmax" as nnU-Net, "sigmoid", or
            "none" when the inputs are probabilities already).

    Shapes: logits ``[B, K, *spatial]``; target class indices ``[B, *spatial]`` /
    ``[B, 1, *spatial]`` or one-hot ``[B, K, *spatial]``. Returns a scalar.
    """

    def __init__(
        self,
        batch_dice: bool = True,
        include_background: bool = False,
        smooth: float = 1e-5,
        nonlinearity: Nonlinearity = "softmax",
    ) -> None:
        super().__init__()
        self.batch_dice = batch_dice
        self.include_background = include_background
        self.smooth = smooth
        self.nonlinearity = nonlinearity

    def dice_per_class(self, logits: Tensor, target: Tensor) -> Tensor:
        """Soft Dice ``[K']`` (batch_dice) or ``[B, K']`` of the scored classes."""
        probabilities = _probabilities(logits, self.nonlinearity)
        reference = _target_as_one_hot(target, logits).to(probabilities.device)
        axes = ([0] if self.batch_dice else []) + list(range(2, logits.dim()))
        true_positive = (probabilities * reference).sum(dim=axes)
        false_positive = (probabilities * (1 - reference)).sum(dim=axes)
        false_negative = ((1 - probabilities) * reference).sum(dim=axes)
        dice = (2 * true_positive + self.smooth) / (
            2 * true_positive + false_positive + false_negative + self.smooth + 1e-8
        )
        if not self.include_background:
            dice = dice[1:] if self.batch_dice else dice[:, 1:]
        return dice

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return 1.0 - self.dice_per_class(logits, target).mean()


class DiceCELoss(nn.Module):
    """nnU-Net's ``DC_and_CE_loss``: ``weight_ce * CE + weight_dice * SoftDice``.

    Cross-entropy on the softmax logits with the class-index target (a one-hot target is
    turned into indices by argmax); the Dice term is :class:`SoftDiceLoss` with softmax.
    Defaults are nnU-Net's (weights 1 and 1, batch Dice, no background, smooth 1e-5).
    The Dice term is ``1 - dice`` where nnU-Net uses ``-dice``: same gradient, and the
    total is ``weight_dice`` higher.

    Shapes: logits ``[B, K, *spatial]``; target ``[B, *spatial]`` / ``[B, 1, *spatial]``
    class indices or one-hot ``[B, K, *spatial]``. Returns a scalar.
    """

    def __init__(
        self,
        weight_dice: float = 1.0,
        weight_ce: float = 1.0,
        batch_dice: bool = True,
        include_background: bool = False,
        smooth: float = 1e-5,
    ) -> None:
        super().__init__()
        self.weight_dice = weight_dice
        self.weight_ce = weight_ce
        self.dice = SoftDiceLoss(batch_dice, include_background, smooth, nonlinearity="softmax")

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        total = logits.new_zeros((), dtype=torch.float32)
        if self.weight_ce != 0:
            indices = class_indices(target, logits).to(logits.device)
            total = total + self.weight_ce * F.cross_entropy(logits.float(), indices)
        if self.weight_dice != 0:
            total = total + self.weight_dice * self.dice(logits, target)
        return total


def squared_dice_loss(probabilities: Tensor, target: Tensor, smooth: float = 1e-5) -> Tensor:
    """DTC's ``dice_loss``: ``1 - (2 sum(p t) + smooth) / (sum(p^2) + sum(t^2) + smooth)``.

    The squares in the denominator are V-Net's form (Milletari et al. 2016). The sums run
    over every element given, so pass one foreground channel of the labeled batch,
    e.g. ``probabilities[:labeled, c]`` against ``target[:labeled, c]`` (any shape, equal).
    Returns a scalar; 0 for a perfect binary prediction.
    """
    probabilities = probabilities.float()
    target = target.to(device=probabilities.device, dtype=torch.float32)
    intersection = (probabilities * target).sum()
    denominator = (probabilities * probabilities).sum() + (target * target).sum()
    return 1.0 - (2.0 * intersection + smooth) / (denominator + smooth)
