"""The networks: :class:`MAML` (multi-modal U-Nets with modality-aware fusion) and
:class:`DTCVNet` (VNet with segmentation and level-set heads), plus :func:`build_model`.

Importing this package does not import torch; the names are loaded on first use, so code
that only passes architecture dicts around stays light.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from MultiModalSegLib.models.fusion_unet import FusionUNet
    from MultiModalSegLib.models.maml import MAML, MAMLConfig
    from MultiModalSegLib.models.modality_aware import ModalityAwareModule
    from MultiModalSegLib.models.registry import MODEL_CLASSES, build_model
    from MultiModalSegLib.models.unet3d import UNet3D
    from MultiModalSegLib.models.vnet import DTCVNet, DTCVNetConfig

_WHERE = {
    "MAML": "maml",
    "MAMLConfig": "maml",
    "DTCVNet": "vnet",
    "DTCVNetConfig": "vnet",
    "UNet3D": "unet3d",
    "FusionUNet": "fusion_unet",
    "ModalityAwareModule": "modality_aware",
    "build_model": "registry",
    "MODEL_CLASSES": "registry",
}

__all__ = [
    "MAML",
    "MODEL_CLASSES",
    "DTCVNet",
    "DTCVNetConfig",
    "FusionUNet",
    "MAMLConfig",
    "ModalityAwareModule",
    "UNet3D",
    "build_model",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
