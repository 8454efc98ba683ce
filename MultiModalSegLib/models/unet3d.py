"""The per-modality 3D U-Net of MAML: nnU-Net v1's ``Generic_UNet`` as MAML configures it.

One encoder stage per entry of ``kernel_sizes``; stage ``d`` has
``min(base_filters * 2**d, max_filters)`` channels and two
conv-InstanceNorm-LeakyReLU layers. Stages after the first downsample with a strided
first convolution (stride ``strides[d-1]``, per axis, so anisotropic data can keep z at
full resolution in the first stages, e.g. ``(1, 2, 2)``). The decoder upsamples with a
transposed convolution (kernel = stride, no bias) to the skip's width, concatenates the
skip, and applies two conv layers. Each decoder stage has a 1x1x1 segmentation head
(no bias); the full-resolution one gives the logits, the others the deep-supervision
outputs. The last decoder feature (``base_filters`` channels, full resolution) is the
feature ``F_i`` that MAML's modality-aware fusion uses.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from MultiModalSegLib.models.blocks import ConvStack, Triple, initialize_he_leaky_relu


class UNetOutputs(NamedTuple):
    """What one U-Net branch gives.

    * ``features``: last full-resolution decoder feature ``[B, base_filters, z, y, x]``.
    * ``logits``: full-resolution logits ``[B, num_classes, z, y, x]``.
    * ``deep_logits``: lower-resolution logits, highest resolution first (downsampled by
      ``strides[0]``, then ``strides[0]*strides[1]``, ...); empty unless requested.
    """

    features: torch.Tensor
    logits: torch.Tensor
    deep_logits: list[torch.Tensor]


class UNet3D(nn.Module):
    """nnU-Net v1 ``Generic_UNet`` (convolutional pooling and upsampling, no dropout).

    Args are already validated by the caller (:class:`MAML` does it):
    ``strides`` has one triple per downsampling (``len(kernel_sizes) - 1`` of them),
    ``kernel_sizes`` one triple per stage.
    """

    def __init__(self, in_channels: int, num_classes: int, base_filters: int, max_filters: int,
                 strides: list[Triple], kernel_sizes: list[Triple], deep_supervision: bool):
        super().__init__()
        num_stages = len(kernel_sizes)
        widths = [min(base_filters * 2 ** stage, max_filters) for stage in range(num_stages)]
        self.widths = widths

        self.encoder = nn.ModuleList()
        previous = in_channels
        for stage in range(num_stages):
            first_stride = (1, 1, 1) if stage == 0 else strides[stage - 1]
            self.encoder.append(ConvStack(previous, widths[stage], kernel_sizes[stage], first_stride))
            previous = widths[stage]

        # decoder stage u goes from encoder stage (num_stages - 1 - u) up to (num_stages - 2 - u)
        self.upsamplers = nn.ModuleList()
        self.decoder = nn.ModuleList()
        self.segmentation_heads = nn.ModuleList()
        for target in range(num_stages - 2, -1, -1):
            stride = strides[target]
            self.upsamplers.append(nn.ConvTranspose3d(widths[target + 1], widths[target], stride, stride, bias=False))
            self.decoder.append(ConvStack(2 * widths[target], widths[target], kernel_sizes[target]))
            # nnU-Net keeps a head on every decoder stage; without deep supervision only the last is used
            if deep_supervision or target == 0:
                self.segmentation_heads.append(nn.Conv3d(widths[target], num_classes, 1, bias=False))
        self.deep_supervision = deep_supervision
        self.apply(initialize_he_leaky_relu)

    def forward(self, x: torch.Tensor, with_deep_outputs: bool = False) -> UNetOutputs:
        """``x`` ``[B, in_channels, z, y, x]``, each size divisible by the product of ``strides``.

        ``with_deep_outputs`` (only with ``deep_supervision``) also returns the logits of
        the lower-resolution decoder stages.
        """
        skips = []
        for stage in self.encoder[:-1]:
            x = stage(x)
            skips.append(x)
        x = self.encoder[-1](x)

        deep_logits: list[torch.Tensor] = []
        last = len(self.decoder) - 1
        for u, (upsample, stage) in enumerate(zip(self.upsamplers, self.decoder)):
            x = stage(torch.cat([upsample(x), skips[-(u + 1)]], dim=1))
            if with_deep_outputs and self.deep_supervision and u < last:
                deep_logits.append(self.segmentation_heads[u](x))
        logits = self.segmentation_heads[-1](x)
        deep_logits.reverse()  # highest resolution first
        return UNetOutputs(features=x, logits=logits, deep_logits=deep_logits)
