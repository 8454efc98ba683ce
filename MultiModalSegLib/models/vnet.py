"""DTC's VNet with two heads (Luo et al., AAAI 2021, "Dual-task Consistency").

The network of the DTC reference code (HiLab-git/DTC ``code/networks/vnet_sdf.py``),
with ``F = base_filters``:

* encoder stages of 1, 2, 3, 3, 3 conv(3x3x3)-norm-ReLU layers with F, 2F, 4F, 8F, 16F
  channels; between them a stride-2, kernel-2 conv-norm-ReLU doubles the width
  (no residual connections: the reference's ``has_residual`` defaults to False and DTC
  does not set it);
* decoder: transposed conv (kernel 2, stride 2)-norm-ReLU halves the width, the encoder
  feature of the same resolution is **added** (not concatenated), then stages of 3, 3, 2, 1
  conv layers;
* ``Dropout3d(0.5)`` on the bottleneck and on the last decoder feature in training mode
  (``has_dropout``; the reference builds its DTC model with ``has_dropout=True``);
* two 1x1x1 heads (with bias) on the last decoder feature: the segmentation logits and the
  level set ``tanh(conv(x))`` in ``[-1, 1]``.

``num_classes`` counts foreground classes only, one sigmoid channel each (one-vs-rest), as
the reference trains ``n_classes = num_classes - 1``. At ``base_filters=16``,
``in_channels=1``, ``num_classes=1`` the network has the paper's 9.44 M parameters.

Differences from the reference, none of which changes the maths: ``forward`` returns
``(seg_logits, level_set)`` (the reference returns ``(level_set, seg_logits)``) and takes
no ``turnoff_drop`` flag (use ``eval()``); the reference's tanh head is ``out_conv`` and
its segmentation head ``out_conv2``, here ``level_set_head`` and ``segmentation_head``.
Like the reference, all layers keep PyTorch's default initialisation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import nn

from MultiModalSegLib.errors import MultiModalSegError

Normalization = Literal["batchnorm", "groupnorm", "instancenorm", "none"]
NORMALIZATIONS: tuple[str, ...] = ("batchnorm", "groupnorm", "instancenorm", "none")
ENCODER_CONVS = (1, 2, 3, 3, 3)  # conv layers per encoder stage, the last is the bottleneck
DECODER_CONVS = (3, 3, 2, 1)  # conv layers per decoder stage, lowest resolution first
GROUP_NORM_GROUPS = 16  # the reference's GroupNorm(num_groups=16)


@dataclass(frozen=True)
class DTCVNetConfig:
    """The constructor arguments of :class:`DTCVNet` with the DTC reference's defaults."""

    # image channels; DTC's LA and Pancreas-CT experiments use 1
    in_channels: int
    # foreground classes (one sigmoid channel each); the reference uses 1 (left atrium, pancreas)
    num_classes: int
    # channels of the first stage; the reference's n_filters=16
    base_filters: int = 16
    # the reference's DTC training uses batchnorm (the VNet class defaults to "none")
    normalization: Normalization = "batchnorm"
    # Dropout3d(0.5) at the bottleneck and the last decoder feature while training
    # (the reference's DTC training sets it; the VNet class defaults to False)
    has_dropout: bool = True

    def validated(self) -> DTCVNetConfig:
        """Itself, or :class:`MultiModalSegError` naming the bad value."""
        for name in ("in_channels", "num_classes", "base_filters"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise MultiModalSegError(f"DTCVNet {name} must be an integer >= 1, not {value!r}.")
        if self.normalization not in NORMALIZATIONS:
            raise MultiModalSegError(
                f"DTCVNet normalization must be one of {', '.join(NORMALIZATIONS)}, not {self.normalization!r}.")
        if self.normalization == "groupnorm" and self.base_filters % GROUP_NORM_GROUPS:
            raise MultiModalSegError(
                f"DTCVNet with groupnorm ({GROUP_NORM_GROUPS} groups) needs base_filters divisible by "
                f"{GROUP_NORM_GROUPS}, not {self.base_filters}.")
        if not isinstance(self.has_dropout, bool):
            raise MultiModalSegError(f"DTCVNet has_dropout must be true or false, not {self.has_dropout!r}.")
        return self


def _normalization_layer(kind: str, channels: int) -> nn.Module | None:
    if kind == "batchnorm":
        return nn.BatchNorm3d(channels)
    if kind == "groupnorm":
        return nn.GroupNorm(GROUP_NORM_GROUPS, channels)
    if kind == "instancenorm":
        return nn.InstanceNorm3d(channels)  # the reference's: no affine parameters
    return None


def _with_norm_and_relu(layer: nn.Module, kind: str, channels: int) -> nn.Sequential:
    norm = _normalization_layer(kind, channels)
    return nn.Sequential(*[m for m in (layer, norm, nn.ReLU(inplace=True)) if m is not None])


class VNetConvStage(nn.Sequential):
    """``num_convs`` x (conv 3x3x3 with bias -> norm -> ReLU): ``[B, in, ...] -> [B, out, ...]``."""

    def __init__(self, num_convs: int, in_channels: int, out_channels: int, normalization: str):
        layers = [_with_norm_and_relu(nn.Conv3d(in_channels if i == 0 else out_channels, out_channels, 3, padding=1),
                                      normalization, out_channels)
                  for i in range(num_convs)]
        super().__init__(*layers)


def vnet_downsampling(in_channels: int, out_channels: int, normalization: str) -> nn.Sequential:
    """Conv(kernel 2, stride 2) -> norm -> ReLU: halves each spatial size."""
    return _with_norm_and_relu(nn.Conv3d(in_channels, out_channels, 2, stride=2), normalization, out_channels)


def vnet_upsampling(in_channels: int, out_channels: int, normalization: str) -> nn.Sequential:
    """Transposed conv(kernel 2, stride 2) -> norm -> ReLU: doubles each spatial size."""
    return _with_norm_and_relu(nn.ConvTranspose3d(in_channels, out_channels, 2, stride=2), normalization,
                               out_channels)


class DTCVNet(nn.Module):
    """VNet with a segmentation head and a tanh level-set head (see the module docstring)."""

    def __init__(self, in_channels: int, num_classes: int,
                 base_filters: int = DTCVNetConfig.base_filters,
                 normalization: Normalization = DTCVNetConfig.normalization,
                 has_dropout: bool = DTCVNetConfig.has_dropout):
        super().__init__()
        config = DTCVNetConfig(in_channels=in_channels, num_classes=num_classes, base_filters=base_filters,
                               normalization=normalization, has_dropout=has_dropout).validated()
        self.config = config
        self.architecture: dict[str, Any] = {"name": "DTCVNet", "config": asdict(config)}
        self.num_classes = num_classes
        self.has_dropout = has_dropout

        widths = [base_filters * 2 ** stage for stage in range(len(ENCODER_CONVS))]  # F, 2F, 4F, 8F, 16F
        self.encoder = nn.ModuleList()
        self.downsamplers = nn.ModuleList()
        for stage, num_convs in enumerate(ENCODER_CONVS):
            # the downsampling conv already doubled the width, so only the first stage changes it
            stage_input = in_channels if stage == 0 else widths[stage]
            self.encoder.append(VNetConvStage(num_convs, stage_input, widths[stage], normalization))
            if stage < len(ENCODER_CONVS) - 1:
                self.downsamplers.append(vnet_downsampling(widths[stage], widths[stage + 1], normalization))

        self.upsamplers = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for u, num_convs in enumerate(DECODER_CONVS):
            source = len(widths) - 1 - u
            self.upsamplers.append(vnet_upsampling(widths[source], widths[source - 1], normalization))
            self.decoder.append(VNetConvStage(num_convs, widths[source - 1], widths[source - 1], normalization))

        self.dropout = nn.Dropout3d(p=0.5)
        self.segmentation_head = nn.Conv3d(base_filters, num_classes, 1)
        self.level_set_head = nn.Conv3d(base_filters, num_classes, 1)

    @property
    def input_divisor(self) -> tuple[int, int, int]:
        """Each spatial size ``(z, y, x)`` must be a multiple of 16 (four 2x downsamplings)."""
        factor = 2 ** (len(ENCODER_CONVS) - 1)
        return (factor, factor, factor)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` ``[B, in_channels, z, y, x]`` -> ``(seg_logits, level_set)``, both
        ``[B, num_classes, z, y, x]``; ``level_set`` is in ``[-1, 1]``."""
        if x.dim() != 5 or x.shape[1] != self.config.in_channels:
            raise MultiModalSegError(
                f"DTCVNet expects an input of shape [batch, {self.config.in_channels}, z, y, x], "
                f"got {list(x.shape)}.")
        divisor = self.input_divisor
        if any(size % d for size, d in zip(x.shape[2:], divisor)):
            raise MultiModalSegError(
                f"DTCVNet input size {list(x.shape[2:])} (z, y, x) is not a multiple of {list(divisor)}; "
                "pad the image or choose a patch size that is.")

        skips = []
        for stage, downsample in zip(self.encoder[:-1], self.downsamplers):
            x = stage(x)
            skips.append(x)
            x = downsample(x)
        x = self.encoder[-1](x)
        if self.has_dropout:
            x = self.dropout(x)  # identity in eval mode
        for upsample, stage, skip in zip(self.upsamplers, self.decoder, reversed(skips)):
            x = stage(upsample(x) + skip)
        if self.has_dropout:
            x = self.dropout(x)
        return self.segmentation_head(x), torch.tanh(self.level_set_head(x))
