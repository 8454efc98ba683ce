"""The U-Net baselines of MAML's tables: early fusion (all modalities as input channels) and single modality.

MAML Table 1 compares MAML with an nnU-Net that takes every modality as an input channel
("early fusion", the usual nnU-Net way of handling multi-modal data) and Table 2 with an
nnU-Net trained on one modality alone. :class:`FusionUNet` is both: one
:class:`~MultiModalSegLib.models.unet3d.UNet3D` -- the same building blocks, widths, strides
and deep supervision as one MAML branch -- whose input has one channel per modality. With
a single modality it is the single-modality U-Net, identical in structure to a MAML branch.

Its forward returns the same dict layout as :class:`~MultiModalSegLib.models.maml.MAML`
(``joint`` logits, empty ``branches`` and ``attention``, and ``joint_deep`` -- the
lower-resolution logits -- in training mode with deep supervision), so MAML's loss
(:class:`~MultiModalSegLib.losses.MAMLLoss`: with no branches it is nnU-Net's
deep-supervised Dice + CE of the one output), training step, sliding-window inference
and evaluation run it unchanged. Model packages store it with ``"method": "unet"``.

Early fusion cannot run with a modality missing: the first convolution mixes all input
channels, so an absent one cannot be left out (that is the point MAML makes); asking for
it raises :class:`MultiModalSegError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from MultiModalSegLib.errors import MultiModalSegError
from MultiModalSegLib.models.blocks import Triple, check_modality_input, stride_product
from MultiModalSegLib.models.maml import MAMLConfig
from MultiModalSegLib.models.unet3d import UNet3D


class FusionUNet(nn.Module):
    """One nnU-Net style 3D U-Net over ``len(modalities)`` input channels (early fusion).

    ``FusionUNet(["arterial", "venous"], num_classes=3)`` is the early-fusion baseline;
    ``FusionUNet(["venous"], num_classes=3)`` the single-modality one. The settings are
    those of one MAML branch (:class:`MAMLConfig`), with the same defaults.
    """

    def __init__(self, modalities: Sequence[str], num_classes: int,
                 base_filters: int = MAMLConfig.base_filters,
                 max_filters: int = MAMLConfig.max_filters,
                 num_stages: int | None = MAMLConfig.num_stages,
                 strides: Sequence[int | Sequence[int]] | None = MAMLConfig.strides,
                 kernel_sizes: Sequence[int | Sequence[int]] | None = MAMLConfig.kernel_sizes,
                 deep_supervision: bool = MAMLConfig.deep_supervision):
        super().__init__()
        try:
            config = MAMLConfig(
                modalities=modalities, num_classes=num_classes, base_filters=base_filters,  # type: ignore[arg-type]
                max_filters=max_filters, num_stages=num_stages, strides=strides,  # type: ignore[arg-type]
                kernel_sizes=kernel_sizes, deep_supervision=deep_supervision).resolved()  # type: ignore[arg-type]
        except MultiModalSegError as exc:  # the checks are MAML's; say which network they are about
            raise MultiModalSegError(str(exc).replace("MAML", "The U-Net", 1)) from exc
        self.config = config
        self.modalities: tuple[str, ...] = config.modalities
        self.num_classes = config.num_classes
        self.architecture: dict[str, Any] = {"name": "FusionUNet", "config": {
            "modalities": list(config.modalities), "num_classes": config.num_classes,
            "base_filters": config.base_filters, "max_filters": config.max_filters,
            "num_stages": config.num_stages, "strides": [list(s) for s in config.strides],  # type: ignore[union-attr]
            "kernel_sizes": [list(k) for k in config.kernel_sizes],  # type: ignore[union-attr]
            "deep_supervision": config.deep_supervision}}
        self.unet = UNet3D(len(self.modalities), config.num_classes, config.base_filters, config.max_filters,
                           list(config.strides), list(config.kernel_sizes),  # type: ignore[arg-type]
                           config.deep_supervision)

    @property
    def input_divisor(self) -> Triple:
        """Each spatial size ``(z, y, x)`` must be a multiple of this (product of the strides)."""
        return stride_product(self.config.strides)  # type: ignore[arg-type]

    def check_input(self, x: torch.Tensor, available: Iterable[str] | None = None) -> None:
        """Raise :class:`MultiModalSegError` for a wrong shape, a size the strides cannot take, or a missing modality."""
        if available is not None:
            wanted = {available} if isinstance(available, str) else set(available)
            absent = [name for name in self.modalities if name not in wanted]
            if absent:
                raise MultiModalSegError(
                    f"This U-Net fuses {', '.join(self.modalities)} as input channels and cannot run without "
                    f"{', '.join(absent)}; give every modality, or use a MAML model, which handles a missing one.")
        check_modality_input(x, self.modalities, self.input_divisor, "The U-Net")

    def forward(self, x: torch.Tensor, available: Iterable[str] | None = None) -> dict[str, Any]:
        """Segment ``x`` ``[B, M, z, y, x]`` (channels in the order of ``modalities``).

        Returns ``{"joint": [B, K, z, y, x] logits, "branches": {}, "attention": {}}`` plus
        ``"joint_deep"`` (lower-resolution logits, highest first) when deep supervision is
        on and the model is in training mode. ``available`` must name every modality (or be
        None).
        """
        self.check_input(x, available)
        with_deep = self.config.deep_supervision and self.training
        outputs = self.unet(x, with_deep_outputs=with_deep)
        result: dict[str, Any] = {"joint": outputs.logits, "branches": {}, "attention": {}}
        if with_deep:
            result["joint_deep"] = outputs.deep_logits
        return result
