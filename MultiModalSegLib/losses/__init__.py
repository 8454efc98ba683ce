"""Training losses of the two methods (imports torch: use only where a network trains).

* :class:`SoftDiceLoss`, :class:`DiceCELoss` (nnU-Net's, used by MAML) and
  :func:`squared_dice_loss` (DTC's V-Net Dice) in ``dice.py``;
* :class:`MAMLLoss`: ``L_joint + lambda * sum_i L_intra_i`` with nnU-Net deep supervision;
* :class:`DTCLoss` / :class:`DTCLossConfig`: Dice + beta * level-set MSE + ramped consistency;
* :func:`sigmoid_rampup`: DTC's consistency ramp ``exp(-5 (1 - t/T)^2)``.
"""

from __future__ import annotations

from MultiModalSegLib.losses.dice import DiceCELoss, SoftDiceLoss, squared_dice_loss
from MultiModalSegLib.losses.dtc_loss import DTC_VARIANTS, DTCLoss, DTCLossConfig, segmentation_output_of
from MultiModalSegLib.losses.maml_loss import MAMLLoss, nnunet_deep_supervision_weights
from MultiModalSegLib.losses.rampup import sigmoid_rampup

__all__ = [
    "DTC_VARIANTS",
    "DTCLoss",
    "DTCLossConfig",
    "DiceCELoss",
    "MAMLLoss",
    "SoftDiceLoss",
    "nnunet_deep_supervision_weights",
    "segmentation_output_of",
    "sigmoid_rampup",
    "squared_dice_loss",
]
