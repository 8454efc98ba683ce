"""MAML's training loss: ``L = w_joint * L_joint(Y | X) + lambda * sum_i L_intra(Y | X_i)``.

The joint output (attention-fused features of all modalities) and each modality's own
branch output are supervised with the same label map, so every branch learns to segment
alone: that is what lets MAML run with a modality missing. Each term is nnU-Net's
Dice + cross-entropy (:class:`DiceCELoss`), with nnU-Net's deep supervision when the
model also returns lower-resolution logits.

Reference code (YaoZhang93/MAML, ``MAMLTrainerV2``): there is no explicit lambda. The
network returns the joint full-resolution logits followed by every branch's deep
supervision outputs; the loss weights are ``[w_0] + [w_0 .. w_{n-1}] * M`` with nnU-Net's
``w_l`` (``1/2^l``, lowest resolution dropped, normalised to sum 1). So each branch's
deep-supervised loss has total weight 1 and the joint loss (full resolution only) has
weight ``w_0`` (0.533 for 5 outputs). Relative to ``L_joint`` that is
``lambda = 1 / w_0`` (1.875 for 5 outputs), up to an overall factor ``w_0``.

The default reproduces the reference exactly: ``joint_weight="reference"`` weighs ``L_joint``
by ``w_0`` of the branches' output count (0.571 for the bundled 5-stage networks, whose
branches return 4 supervised outputs; 0.533 for 5) and ``lambda_intra = 1``. Summing the three
terms with weight 1 each (``joint_weight=1``) instead gives about 3x the reference's gradient
at the same learning rate, a confound for the paper's tables.

Each branch's loss has two parts: its full-resolution output (the branch's own prediction from
its modality alone, the paper's ``L_intra``: mutual learning, and what runs when another
modality is missing) and nnU-Net's deep supervision of its decoder's lower levels. The joint
output is made from the branches' full-resolution decoder features, so those decoders are the
joint network's decoders as well, and the joint head has no deep outputs of its own (as in the
reference). ``lambda_deep`` weighs the deep part separately:

    L = w_joint * L_joint + lambda * sum_i w_0 L_i,0 + lambda_deep * sum_i sum_{l>=1} w_l L_i,l

``lambda_deep=None`` (default) uses ``lambda`` for both parts, the reference's single loss
list. MAML Table 1's MS+MA row (no mutual learning) is ``lambda=0, lambda_deep=1``: the branches'
own predictions leave the loss while the decoders keep the deep supervision that every nnU-Net
network -- and so every U-Net row of the table -- trains with. ``lambda=0`` alone would remove
both at once, and MS+MA would be the only row trained without deep supervision.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from MultiModalSegLib.losses.dice import DiceCELoss

__all__ = ["MAMLLoss", "nnunet_deep_supervision_weights"]


def nnunet_deep_supervision_weights(num_outputs: int) -> list[float]:
    """nnU-Net v1's weights for outputs ordered from full to lowest resolution.

    ``w_l = 1 / 2^l``, the lowest-resolution output gets 0 (when there are two or more),
    then normalised to sum 1. E.g. 1 -> [1]; 3 -> [2/3, 1/3, 0];
    5 -> [0.5333, 0.2667, 0.1333, 0.0667, 0].
    """
    if num_outputs < 1:
        raise ValueError(f"num_outputs must be >= 1, got {num_outputs}.")
    weights = [1.0 / 2**level for level in range(num_outputs)]
    if num_outputs > 1:
        weights[-1] = 0.0
    total = sum(weights)
    return [w / total for w in weights]


def _downsample_target(target: Tensor, spatial_shape: torch.Size) -> Tensor:
    """Nearest-neighbour resize of a class-index map ``[B, *spatial]`` (as nnU-Net's order-0 resize).

    ``nearest-exact`` samples the voxel whose centre is nearest (pixel-centre aligned,
    like skimage's order-0 ``resize`` that nnU-Net uses), not torch's legacy "nearest".
    """
    resized = F.interpolate(target[:, None].float(), size=tuple(spatial_shape), mode="nearest-exact")
    return resized[:, 0].long()


class MAMLLoss(nn.Module):
    """``L_joint + lambda_intra * sum_i L_intra_i``, each term deep-supervised as nnU-Net.

    Args:
        lambda_intra: weight of the summed per-modality losses (the paper's lambda).
            Default 1.0, as the reference (each branch's deep-supervised loss has weight 1).
        lambda_deep: weight of the branches' lower-resolution (deep-supervision) terms;
            None (default): ``lambda_intra``, the reference. ``lambda_intra=0,
            lambda_deep=1`` is MS+MA with deep supervision (see the module docstring).
        joint_weight: weight of ``L_joint``. ``"reference"`` (default): the reference
            code's ``w_0``, the full-resolution deep-supervision weight of a branch with
            its number of outputs (1.0 when the branches have no deep outputs, or there
            are no branches: the U-Net baselines). A number is used as given.
        deep_supervision_weights: weights of the outputs from full to lowest resolution
            for every head. None: :func:`nnunet_deep_supervision_weights` for the number
            of outputs the model returned (so without deep supervision the single
            output has weight 1). An explicit sequence is used as given (not
            renormalised) and must have one weight per output.
        segmentation_loss: the per-output loss; default :class:`DiceCELoss` (nnU-Net's).

    ``forward(outputs, target)`` takes the MAML forward dict:

    * ``"joint"``: logits ``[B, K, *spatial]``;
    * ``"branches"``: ``{modality: logits [B, K, *spatial]}``;
    * optional ``"joint_deep"``: list of lower-resolution joint logits, highest first;
    * optional ``"branches_deep"``: ``{modality: [logits, ...]}`` (highest first), or a
      list with one ``{modality: logits}`` dict per level;
    * ``"attention"`` and any other keys are ignored.

    and the target label map, class indices ``[B, *spatial]`` or ``[B, 1, *spatial]``;
    rows beyond the outputs' batch are ignored (a semi-supervised batch may pass the
    labels of its whole batch with the outputs of its labeled first rows).
    Targets of lower-resolution outputs are nearest-downsampled to each output's size.
    Returns ``{"total", "joint", "intra/<modality>" ...}`` (scalars), so training can
    log each term.
    """

    def __init__(
        self,
        lambda_intra: float = 1.0,
        deep_supervision_weights: Sequence[float] | None = None,
        segmentation_loss: nn.Module | None = None,
        joint_weight: float | str = "reference",
        lambda_deep: float | None = None,
    ) -> None:
        super().__init__()
        self.lambda_intra = float(lambda_intra)
        self.lambda_deep = None if lambda_deep is None else float(lambda_deep)
        if self.lambda_intra < 0 or (self.lambda_deep is not None and self.lambda_deep < 0):
            raise ValueError(f"lambda_intra and lambda_deep must be >= 0, not {lambda_intra!r} and {lambda_deep!r}.")
        if joint_weight != "reference" and not (isinstance(joint_weight, (int, float)) and joint_weight >= 0):
            raise ValueError(f"joint_weight must be 'reference' or a number >= 0, not {joint_weight!r}.")
        self.joint_weight = joint_weight
        self.deep_supervision_weights = (
            None if deep_supervision_weights is None else [float(w) for w in deep_supervision_weights]
        )
        self.segmentation_loss = segmentation_loss if segmentation_loss is not None else DiceCELoss()

    def _weights_for(self, num_outputs: int) -> list[float]:
        if self.deep_supervision_weights is None:
            return nnunet_deep_supervision_weights(num_outputs)
        if len(self.deep_supervision_weights) != num_outputs:
            raise ValueError(
                f"deep_supervision_weights has {len(self.deep_supervision_weights)} weights but the "
                f"model returned {num_outputs} outputs per head (full resolution + deep levels)."
            )
        return self.deep_supervision_weights

    def _level_losses(self, outputs: Sequence[Tensor], target: Tensor, cache: dict[Any, Tensor]) -> list[Tensor]:
        """One head's weighted loss per output, full resolution first (zero where the weight is 0)."""
        terms = []
        for weight, logits in zip(self._weights_for(len(outputs)), outputs):
            if weight == 0:
                terms.append(logits.new_zeros((), dtype=torch.float32))
                continue
            spatial = logits.shape[2:]
            if spatial not in cache:
                cache[spatial] = _downsample_target(target, spatial)
            terms.append(weight * self.segmentation_loss(logits, cache[spatial]))
        return terms

    def _head_loss(self, outputs: Sequence[Tensor], target: Tensor, cache: dict[Any, Tensor]) -> Tensor:
        """Weighted sum over one head's outputs, full resolution first."""
        return torch.stack(self._level_losses(outputs, target, cache)).sum()

    @staticmethod
    def _branch_levels(outputs: Mapping[str, Any]) -> dict[str, list[Tensor]]:
        branches: Mapping[str, Tensor] = outputs["branches"]
        levels = {name: [logits] for name, logits in branches.items()}
        deep = outputs.get("branches_deep")
        if deep is None:
            return levels
        if isinstance(deep, Mapping):
            for name, deep_logits in deep.items():
                levels[name].extend(deep_logits)
        else:
            for level in deep:
                for name, logits in level.items():
                    levels[name].append(logits)
        return levels

    def forward(self, outputs: Mapping[str, Any], target: Tensor) -> dict[str, Tensor]:
        joint = outputs["joint"]
        if target.dim() == joint.dim():
            target = target[:, 0]
        target = target[: joint.shape[0]].to(joint.device).long()
        if target.shape[0] != joint.shape[0] or target.shape[1:] != joint.shape[2:]:
            raise ValueError(f"Target {tuple(target.shape)} does not match the joint logits {tuple(joint.shape)}.")
        cache: dict[Any, Tensor] = {joint.shape[2:]: target}
        joint_levels = [joint, *outputs.get("joint_deep", [])]
        terms: dict[str, Tensor] = {"joint": self._head_loss(joint_levels, target, cache)}
        full_sum = terms["joint"].new_zeros(())
        deep_sum = terms["joint"].new_zeros(())
        for name, levels in self._branch_levels(outputs).items():
            level_losses = self._level_losses(levels, target, cache)
            terms[f"intra/{name}"] = torch.stack(level_losses).sum()
            full_sum = full_sum + level_losses[0]
            deep_sum = deep_sum + sum(level_losses[1:], start=deep_sum.new_zeros(()))
        lambda_deep = self.lambda_intra if self.lambda_deep is None else self.lambda_deep
        terms["total"] = (self._joint_weight(outputs) * terms["joint"] + self.lambda_intra * full_sum
                          + lambda_deep * deep_sum)
        return terms

    def _joint_weight(self, outputs: Mapping[str, Any]) -> float:
        """``joint_weight``, or the reference's ``w_0`` for the branches' number of outputs."""
        if self.joint_weight != "reference":
            return float(self.joint_weight)
        levels = self._branch_levels(outputs)
        if not levels:
            return 1.0
        return self._weights_for(len(next(iter(levels.values()))))[0]
