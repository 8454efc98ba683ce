"""MAML's Modality-Aware module: an attention map A_i for one modality's feature F_i.

``A_i = sigmoid(conv_b(LeakyReLU(IN(conv_a([F_i, F_dual])))))``, ``[B, F, z, y, x]`` in
``[0, 1]``, where ``F_dual`` is the fused feature of all (present) modalities. The joint
feature is then ``F_att = sum_i A_i * F_i``.

Two variants of ``conv_b`` exist (``kernel``):

* ``"reference"`` (default): both convolutions 3x3x3, as in the authors' code
  (YaoZhang93/MAML ``generic_MAML.py``: ``conv(2F->F, 3) -> IN -> LReLU -> conv(F->F, 3) ->
  sigmoid``, both with bias).
* ``"slide"``: ``conv_a`` 3x3x3 and ``conv_b`` 1x1x1, as the paper's figure / talk slide
  draws it ("conv 3x3x3 + conv 1x1x1").

As in the reference, these layers keep PyTorch's default initialisation (the reference's
He initialisation is applied inside the U-Net branches only).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from MultiModalSegLib.models.blocks import INSTANCE_NORM_EPS, LEAKY_RELU_SLOPE

ModalityAwareKernel = Literal["reference", "slide"]
MODALITY_AWARE_KERNELS: tuple[str, ...] = ("reference", "slide")


class ModalityAwareModule(nn.Module):
    """Attention of one modality: ``([B, F, ...], [B, F, ...]) -> [B, F, ...]`` in ``[0, 1]``."""

    def __init__(self, feature_channels: int, kernel: ModalityAwareKernel = "reference"):
        super().__init__()
        second_kernel = 3 if kernel == "reference" else 1
        self.layers = nn.Sequential(
            nn.Conv3d(2 * feature_channels, feature_channels, 3, padding=1, bias=True),
            nn.InstanceNorm3d(feature_channels, eps=INSTANCE_NORM_EPS, affine=True),
            nn.LeakyReLU(LEAKY_RELU_SLOPE, inplace=True),
            nn.Conv3d(feature_channels, feature_channels, second_kernel, padding=second_kernel // 2, bias=True),
            nn.Sigmoid(),
        )

    def forward(self, modality_feature: torch.Tensor, dual_feature: torch.Tensor) -> torch.Tensor:
        """``A_i`` from ``F_i`` and ``F_dual`` (both ``[B, F, z, y, x]``)."""
        return self.layers(torch.cat([modality_feature, dual_feature], dim=1))
