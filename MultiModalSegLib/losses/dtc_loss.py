"""DTC's semi-supervised loss: Dice + level-set regression + dual-task consistency.

    total = L_dice + beta * MSE(level_set, SDF(label)) + w(t) * mean((sigmoid(seg) - H(level_set))^2)

* ``L_dice`` (:func:`squared_dice_loss` on sigmoid probabilities) and the level-set MSE
  need labels: computed on the labeled part of the batch, which DTC puts first
  (``[:labeled_batch_size]``, its ``TwoStreamBatchSampler``).
* The consistency term needs none: it compares the segmentation head with the level-set
  head turned into a segmentation by ``H(z) = sigmoid(-k z)`` (:func:`heaviside`) on the
  whole batch, labeled and unlabeled, as the reference does.
* ``w(t) = w_max * exp(-5 (1 - t/T)^2)`` (:func:`sigmoid_rampup`).

The ablation of DTC Table 2 is :attr:`DTCLossConfig.variant` (default: the full method):

* ``"seg"``: segmentation head only, ``total = L_dice`` (beta 0, no consistency); the
  level-set head gets no gradient. DTC's supervised "VNet" rows are this, trained on the
  labeled cases alone.
* ``"lsf"``: level-set head only; the segmentation is *read from the level set*,
  ``H(level_set)``, so ``total = L_dice(H(level_set)) + beta * MSE(level_set, SDF)`` and at
  inference the label is ``level_set < 0`` (the package's ``segmentation_output``).
* ``"seg+lsf"``: both heads supervised, no consistency: ``L_dice + beta * MSE``.
* ``"seg+lsf+dtc"``: the full DTC loss above.

Multi-class DTC is one-vs-rest, as the reference trains ``n_classes = num_classes - 1``
sigmoid channels: ``seg_logits`` and ``level_set`` are ``[B, C, *spatial]`` with C
foreground classes; channel c is class c + 1. The Dice is averaged over channels, the
MSE and the consistency are means over all channels and voxels (for C = 1 exactly the
reference's terms).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from MultiModalSegLib.errors import MultiModalSegError
from MultiModalSegLib.levelset import heaviside, signed_distance_map
from MultiModalSegLib.losses.dice import squared_dice_loss
from MultiModalSegLib.losses.rampup import sigmoid_rampup

__all__ = ["DTC_VARIANTS", "DTCLoss", "DTCLossConfig", "foreground_one_hot", "segmentation_output_of"]

DTC_VARIANTS = ("seg", "lsf", "seg+lsf", "seg+lsf+dtc")
"""DTC Table 2's ablation rows (Seg / LSF / Seg+LSF / Seg+LSF+DTC); see the module docstring."""


def check_variant(variant: str) -> str:
    """``variant`` in lower case, or a :class:`MultiModalSegError` that lists the choices."""
    name = str(variant).strip().lower()
    if name not in DTC_VARIANTS:
        raise MultiModalSegError(
            f"Unknown DTC variant '{variant}'; use one of {', '.join(DTC_VARIANTS)} "
            "(seg+lsf+dtc is the full method).")
    return name


def segmentation_output_of(variant: str) -> str:
    """Which head a trained DTC network's label is read from: ``level_set`` for "lsf", else ``segmentation``."""
    return "level_set" if check_variant(variant) == "lsf" else "segmentation"


@dataclass
class DTCLossConfig:
    """Weights and schedule of :class:`DTCLoss`; defaults are the reference code's.

    The published DTC numbers come from HiLab-git/DTC ``train_la_dtc.py``; where the
    paper (Luo et al., AAAI 2021) writes something else it is noted per field.
    """

    beta: float = 0.3
    """Weight of the level-set MSE. Reference: ``--beta 0.3``. Paper: the total loss adds
    L_LSF with weight 1 (set 1.0 for the paper's form)."""

    consistency_weight_max: float = 1.0
    """w_max of the ramp. Reference: ``--consistency 1.0`` (its ``--consistency_weight
    0.1`` is parsed but never used). Paper: lambda_d = exp(-5 (1 - t/t_max)^2), also 1 at the end."""

    consistency_rampup_iterations: float = 6000.0
    """T, in iterations, where the ramp reaches w_max. Reference: ramp length 40 "epochs"
    of 150 iterations = 6000 = its ``--max_iterations``. Paper: t_max, the maximum
    training iteration. Set this to your own number of iterations."""

    consistency_rampup_step: int = 150
    """The ramp is evaluated at ``(t // step) * step``: the reference steps it every 150
    iterations (``iter_num // 150``), a staircase; 1 gives the paper's smooth curve."""

    heaviside_k: float = 1500.0
    """k in H(z) = sigmoid(-k z). Paper: "as large as possible"; reference: 1500."""

    dice_smooth: float = 1e-5
    """Smoothing of DTC's Dice (reference ``losses.dice_loss``: 1e-5)."""

    sdf_source: Literal["patch", "volume"] = "patch"
    """Where the SDF regression target comes from. "patch" (reference): computed from the
    labels of each training patch on the fly, so it is normalised by the patch's own
    distance maxima. "volume": the caller passes ``sdf_targets`` computed once on the
    whole label volume with :func:`signed_distance_map` and cropped like the image (the
    paper only says the label is transformed by T; distances then reach past the patch)."""

    sdf_spacing: tuple[float, ...] | None = None
    """Voxel spacing (array order z, y, x) for on-the-fly SDFs. Reference: voxel units (None)."""

    variant: str = "seg+lsf+dtc"
    """DTC Table 2's ablation row (:data:`DTC_VARIANTS`). "seg+lsf+dtc" (default) is the
    paper's and the reference's method; "seg" trains the segmentation head alone (Dice);
    "lsf" the level-set head alone (Dice of H(level set) + beta * MSE; the label is read from
    the level set); "seg+lsf" both heads without the consistency term. The paper's Table 2
    rows; the reference repository ships only the full method's script."""


def foreground_one_hot(labels: Tensor, num_foreground: int, spatial_dims: int) -> Tensor:
    """Labels -> float one-vs-rest targets ``[B, C, *spatial]`` (channel c is class c + 1).

    Accepts class indices ``[B, *spatial]`` or ``[B, 1, *spatial]`` (0 = background), or
    one-hot foreground channels ``[B, C, *spatial]`` with C > 1. For C = 1 a
    ``[B, 1, *spatial]`` 0/1 map reads the same either way.
    """
    if labels.dim() == spatial_dims + 1:
        indices = labels
    elif labels.dim() == spatial_dims + 2 and labels.shape[1] == 1:
        indices = labels[:, 0]
    elif labels.dim() == spatial_dims + 2 and labels.shape[1] == num_foreground:
        return labels.to(torch.float32)
    else:
        raise ValueError(
            f"DTC labels must be class indices [B, *spatial] / [B, 1, *spatial] or one-hot "
            f"foreground channels [B, {num_foreground}, *spatial]; got {tuple(labels.shape)}."
        )
    classes = torch.arange(1, num_foreground + 1, device=indices.device).view(1, -1, *([1] * spatial_dims))
    return (indices.long().unsqueeze(1) == classes).to(torch.float32)


class DTCLoss(nn.Module):
    """DTC's total loss with its named terms, for training and for logging.

    ``forward(seg_logits, level_set, labels, sdf_targets=None, labeled_batch_size=None,
    iteration=0)``:

    Args:
        seg_logits: segmentation head logits ``[B, C, *spatial]`` (sigmoid per channel).
        level_set: level-set head output (after tanh) ``[B, C, *spatial]``.
        labels: labels of the first ``labeled_batch_size`` samples (extra rows are
            ignored): class indices ``[B_l, *spatial]`` / ``[B_l, 1, *spatial]`` or one-hot
            foreground ``[B_l, C, *spatial]`` (see :func:`foreground_one_hot`).
        sdf_targets: normalised signed distance maps ``[B_l, C, *spatial]`` (or
            ``[B_l, *spatial]`` for C = 1); None computes them from ``labels`` with
            :func:`signed_distance_map` (allowed only when ``config.sdf_source == "patch"``).
        labeled_batch_size: how many leading samples are labeled; None = all rows of
            ``labels``; 0 gives a purely unsupervised step (consistency only).
        iteration: the training iteration t for the consistency ramp.

    Returns:
        ``{"total", "dice", "sdf_mse", "consistency", "consistency_weight"}``, scalars;
        ``total = dice + beta * sdf_mse + consistency_weight * consistency`` for the full
        method; the ablation variants drop terms (their weight is reported as 0) and "lsf"
        computes ``dice`` on ``H(level_set)`` (see the module docstring).
    """

    def __init__(self, config: DTCLossConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else DTCLossConfig()
        self.variant = check_variant(self.config.variant)

    def consistency_weight(self, iteration: int) -> float:
        """w(t) = w_max * sigmoid_rampup(t rounded down to the ramp step, T)."""
        step = max(1, int(self.config.consistency_rampup_step))
        stepped = (int(iteration) // step) * step
        return self.config.consistency_weight_max * sigmoid_rampup(stepped, self.config.consistency_rampup_iterations)

    def _sdf_targets(self, targets: Tensor, sdf_targets: Tensor | None, labeled: int) -> Tensor:
        if sdf_targets is None:
            if self.config.sdf_source != "patch":
                raise MultiModalSegError(
                    "DTC is set to take the level-set targets from the whole volume "
                    "(sdf_source='volume'), but none were given; pass sdf_targets cropped like the "
                    "image, or set sdf_source='patch' to compute them from each patch's labels."
                )
            flat = (targets > 0.5).reshape(-1, *targets.shape[2:])
            with torch.no_grad():
                sdf = signed_distance_map(flat, spacing=self.config.sdf_spacing)
            return sdf.reshape(targets.shape)
        sdf_targets = sdf_targets[:labeled]
        if sdf_targets.dim() == targets.dim() - 1 and targets.shape[1] == 1:
            sdf_targets = sdf_targets.unsqueeze(1)
        if sdf_targets.shape != targets.shape:
            raise ValueError(
                f"sdf_targets {tuple(sdf_targets.shape)} must be shaped like the labeled level set "
                f"{tuple(targets.shape)}."
            )
        return sdf_targets.to(device=targets.device, dtype=torch.float32)

    def forward(
        self,
        seg_logits: Tensor,
        level_set: Tensor,
        labels: Tensor,
        sdf_targets: Tensor | None = None,
        labeled_batch_size: int | None = None,
        iteration: int = 0,
    ) -> dict[str, Tensor]:
        if seg_logits.shape != level_set.shape:
            raise ValueError(f"seg_logits {tuple(seg_logits.shape)} and level_set {tuple(level_set.shape)} must match.")
        labeled = labels.shape[0] if labeled_batch_size is None else int(labeled_batch_size)
        if not 0 <= labeled <= min(labels.shape[0], seg_logits.shape[0]):
            raise ValueError(
                f"labeled_batch_size={labeled} must be between 0 and the number of label rows "
                f"({labels.shape[0]}) and of batch rows ({seg_logits.shape[0]})."
            )
        spatial_dims = seg_logits.dim() - 2
        probabilities = torch.sigmoid(seg_logits.float())
        level_set = level_set.float()

        zero = probabilities.new_zeros(())
        variant = self.variant
        uses_level_set = variant != "seg"
        # the probabilities the Dice is computed on: the segmentation head, or for "lsf" the
        # level set turned into a segmentation (the label is read from the level set)
        segmentation = heaviside(level_set, self.config.heaviside_k) if variant == "lsf" else probabilities
        dice, sdf_mse = zero, zero
        if labeled > 0:
            targets = foreground_one_hot(labels[:labeled], seg_logits.shape[1], spatial_dims)
            targets = targets.to(probabilities.device)
            dice = torch.stack(
                [
                    squared_dice_loss(segmentation[:labeled, c], targets[:, c], self.config.dice_smooth)
                    for c in range(seg_logits.shape[1])
                ]
            ).mean()
            if uses_level_set:
                sdf = self._sdf_targets(targets, sdf_targets, labeled)
                sdf_mse = torch.mean((level_set[:labeled] - sdf) ** 2)

        consistency = torch.mean((heaviside(level_set, self.config.heaviside_k) - probabilities) ** 2)
        weight = self.consistency_weight(iteration) if variant == "seg+lsf+dtc" else 0.0
        beta = self.config.beta if uses_level_set else 0.0
        total = dice + beta * sdf_mse
        if weight > 0.0:
            total = total + weight * consistency
        return {
            "total": total,
            "dice": dice,
            "sdf_mse": sdf_mse,
            "consistency": consistency.detach() if weight == 0.0 else consistency,
            "consistency_weight": torch.tensor(weight, dtype=torch.float32, device=total.device),
        }
