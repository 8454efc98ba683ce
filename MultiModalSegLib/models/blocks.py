"""nnU-Net style building blocks: conv -> InstanceNorm -> LeakyReLU, stacked per stage.

These are the blocks of nnU-Net v1's ``Generic_UNet`` as the MAML reference code
(YaoZhang93/MAML, a nnU-Net v1 fork) configures them: 3D convolutions with bias,
``InstanceNorm3d(eps=1e-5, affine=True)``, ``LeakyReLU(0.01)``, no dropout, and He
(Kaiming normal, a=0.01) initialisation. Shapes are ``[B, C, z, y, x]`` throughout.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from MultiModalSegLib.errors import MultiModalSegError

Triple = tuple[int, int, int]

LEAKY_RELU_SLOPE = 1e-2  # nnU-Net v1 and the MAML reference
INSTANCE_NORM_EPS = 1e-5  # nnU-Net v1 and the MAML reference


def to_triple(value: int | Sequence[int], what: str) -> Triple:
    """One positive int per spatial axis ``(z, y, x)``; an int is used for all three.

    ``what`` names the setting in the error message, e.g. ``"strides[1]"``.
    """
    if isinstance(value, bool):
        raise MultiModalSegError(f"{what} must be a positive integer or three of them, not {value!r}.")
    if isinstance(value, int):
        values = (value, value, value)
    else:
        try:
            values = tuple(value)
        except TypeError:
            raise MultiModalSegError(
                f"{what} must be a positive integer or three of them (z, y, x), not {value!r}.") from None
    if len(values) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
        raise MultiModalSegError(f"{what} must be a positive integer or three of them (z, y, x), not {value!r}.")
    return values  # type: ignore[return-value]


class ConvInstanceNormLeakyReLU(nn.Sequential):
    """``Conv3d(kernel, stride, 'same' padding, bias) -> InstanceNorm3d(affine) -> LeakyReLU(0.01)``.

    ``[B, in_channels, z, y, x] -> [B, out_channels, z/sz, y/sy, x/sx]`` (ceil for odd sizes).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Triple, stride: Triple = (1, 1, 1)):
        padding = tuple(k // 2 for k in kernel_size)
        super().__init__(
            nn.Conv3d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=True),
            nn.InstanceNorm3d(out_channels, eps=INSTANCE_NORM_EPS, affine=True),
            nn.LeakyReLU(LEAKY_RELU_SLOPE, inplace=True),
        )


class ConvStack(nn.Sequential):
    """``num_convs`` x :class:`ConvInstanceNormLeakyReLU`; only the first one strides.

    With ``first_stride=(2, 2, 2)`` this is an nnU-Net encoder stage that downsamples by a
    strided convolution ("convolutional pooling") instead of max pooling.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Triple,
                 first_stride: Triple = (1, 1, 1), num_convs: int = 2):
        layers = [ConvInstanceNormLeakyReLU(in_channels, out_channels, kernel_size, first_stride)]
        layers += [ConvInstanceNormLeakyReLU(out_channels, out_channels, kernel_size) for _ in range(num_convs - 1)]
        super().__init__(*layers)
        self.out_channels = out_channels


def initialize_he_leaky_relu(module: nn.Module, negative_slope: float = LEAKY_RELU_SLOPE) -> None:
    """nnU-Net's ``InitWeights_He``: Kaiming-normal conv / transposed-conv weights, zero biases.

    Use with ``network.apply(initialize_he_leaky_relu)``.
    """
    if isinstance(module, (nn.Conv3d, nn.ConvTranspose3d)):
        nn.init.kaiming_normal_(module.weight, a=negative_slope)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def stride_product(strides: Sequence[Sequence[int]]) -> Triple:
    """Each spatial size ``(z, y, x)`` of a network with these strides must be a multiple of this."""
    divisor = [1, 1, 1]
    for stride in strides:
        divisor = [d * s for d, s in zip(divisor, stride)]
    return (divisor[0], divisor[1], divisor[2])


def check_modality_input(x: torch.Tensor, modalities: Sequence[str], divisor: Sequence[int], network: str) -> None:
    """Raise :class:`MultiModalSegError` unless ``x`` is ``[B, M, z, y, x]`` (one channel per modality)
    with spatial sizes that are multiples of ``divisor`` (the product of the strides)."""
    if x.dim() != 5 or x.shape[1] != len(modalities):
        raise MultiModalSegError(
            f"{network} expects an input of shape [batch, {len(modalities)} modalities, z, y, x] "
            f"(one channel per modality: {', '.join(modalities)}), got {list(x.shape)}.")
    if any(size % d for size, d in zip(x.shape[2:], divisor)):
        raise MultiModalSegError(
            f"{network} input size {list(x.shape[2:])} (z, y, x) is not a multiple of {list(divisor)}; "
            "pad the image or choose a patch size that is.")
