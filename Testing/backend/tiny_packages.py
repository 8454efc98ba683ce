"""Tiny, untrained but complete models and manifests, and small CT files, for tests of the package, inference and CLI code."""

from __future__ import annotations

from typing import Any

LIVER_LABELS = [
    {"value": 1, "name": "liver", "color": [0.86, 0.55, 0.39]},
    {"value": 2, "name": "tumor", "color": [0.9, 0.2, 0.2]},
]


def tiny_maml_manifest(model_id: str = "tiny-maml") -> dict[str, Any]:
    return {
        "id": model_id,
        "version": 1,
        "method": "maml",
        "title": "tiny untrained MAML for tests",
        "modalities": [
            {"name": "arterial", "patterns": ["*art*"], "normalization": "ct"},
            {"name": "venous", "patterns": ["*ven*"], "normalization": "ct"},
        ],
        "reference_modality": "venous",
        "labels": LIVER_LABELS,
        "preprocessing": {},
        "patch_size": [8, 16, 16],
        "supports_missing_modalities": True,
        "provenance": {"data": "none (random weights for tests)"},
    }


def make_tiny_maml(seed: int = 0):
    import torch

    from MultiModalSegLib.models import MAML

    torch.manual_seed(seed)
    return MAML(["arterial", "venous"], 3, base_filters=4, max_filters=8,
                strides=[(1, 2, 2), (2, 2, 2)], deep_supervision=False)


def make_tiny_dtc(seed: int = 0):
    import torch

    from MultiModalSegLib.models import DTCVNet

    torch.manual_seed(seed)
    return DTCVNet(1, 1, base_filters=2)


def tiny_dtc_manifest(model_id: str = "tiny-dtc") -> dict[str, Any]:
    return {
        "id": model_id,
        "version": 1,
        "method": "dtc",
        "title": "tiny untrained DTC for tests",
        "modalities": [{"name": "mri", "patterns": ["*mr*"], "normalization": "mr"}],
        "labels": [{"value": 1, "name": "atrium", "color": [0.8, 0.3, 0.3]}],
        "preprocessing": {},
        "patch_size": [16, 16, 16],
        "supports_missing_modalities": False,
        "provenance": {"data": "none (random weights for tests)"},
    }


def write_small_ct(path, seed: int, shape=(8, 20, 20)):
    """A small random int16 CT volume (1.5 x 1.5 x 4 mm) written to ``path``; returns the path."""
    from pathlib import Path

    import numpy as np
    import SimpleITK as sitk

    path = Path(path)
    image = sitk.GetImageFromArray(np.random.default_rng(seed).normal(50, 20, size=shape).astype(np.int16))
    image.SetSpacing((1.5, 1.5, 4.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


def make_threshold_dtc(in_channels: int = 1, channel: int = 0):
    """A DTC VNet whose weights are set by hand so that it thresholds one input channel.

    Width 1, no normalisation; every weight and bias is zero except the centre taps of the
    first encoder conv (from input ``channel``) and the last decoder conv, which carry
    ``relu(x[channel])`` through the full-resolution skip connection (every deeper path gives
    relu(0) = 0), and the heads: ``seg_logits = 10 relu(x) - 5`` and ``level_set =
    tanh(1 - 2 relu(x))``. So a voxel is labelled exactly where the chosen channel exceeds
    0.5, with probability 0.993 at 1 and 0.007 at 0, whatever the window or its padding.
    """
    import torch

    from MultiModalSegLib.models import DTCVNet

    network = DTCVNet(in_channels, 1, base_filters=1, normalization="none")
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.zero_()
        network.encoder[0][0][0].weight[0, channel, 1, 1, 1] = 1.0
        network.decoder[-1][0][0].weight[0, 0, 1, 1, 1] = 1.0
        network.segmentation_head.weight.fill_(10.0)
        network.segmentation_head.bias.fill_(-5.0)
        network.level_set_head.weight.fill_(-2.0)
        network.level_set_head.bias.fill_(1.0)
    return network


def threshold_dtc_manifest(modalities: list[str], model_id: str = "threshold-dtc") -> dict[str, Any]:
    """Manifest of :func:`make_threshold_dtc`: raw intensities (no normalisation), one label, 16^3 windows."""
    return {
        "id": model_id,
        "version": 1,
        "method": "dtc",
        "title": "hand-set DTC that thresholds its first modality, for tests",
        "modalities": [{"name": name, "patterns": [f"*{name}*"], "normalization": "none"} for name in modalities],
        "reference_modality": modalities[0],
        "labels": [{"value": 1, "name": "object", "color": [0.8, 0.3, 0.3]}],
        "preprocessing": {},
        "patch_size": [16, 16, 16],
        "supports_missing_modalities": False,
        "provenance": {"data": "none (weights set by hand for tests)"},
    }
