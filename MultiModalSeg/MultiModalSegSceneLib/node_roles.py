"""Node attributes that mark what MultiModalSeg put into the scene.

Attributes are saved in the ``.mrml`` file, so a reloaded scene (or the Qt panel after
loading one) can find the overlays and their level-set contours again without relying on
node names, which users rename.
"""

from __future__ import annotations

from collections.abc import Iterator

import slicer

__all__ = [
    "MODALITY_ATTRIBUTE",
    "OVERLAY_KEY_ATTRIBUTE",
    "OVERLAY_KIND_ATTRIBUTE",
    "ROLE_ATTRIBUTE",
    "ROLE_INPUT",
    "ROLE_OVERLAY",
    "ROLE_SEGMENTATION",
    "ROLE_ZERO_CONTOUR",
    "ZERO_CONTOUR_REFERENCE_ROLE",
    "nodes_with_role",
]

ROLE_ATTRIBUTE = "MultiModalSeg.Role"
ROLE_INPUT = "input"
"""An input image volume (its modality in :data:`MODALITY_ATTRIBUTE`)."""
ROLE_SEGMENTATION = "segmentation"
"""The segmentation imported from a result's label map."""
ROLE_OVERLAY = "overlay"
"""A scalar volume shown as slice-view foreground: attention, probability, uncertainty, level set."""
ROLE_ZERO_CONTOUR = "zeroContour"
"""A segmentation holding ``level set < 0``, drawn as an outline: the level set's zero contour."""

MODALITY_ATTRIBUTE = "MultiModalSeg.Modality"
OVERLAY_KIND_ATTRIBUTE = "MultiModalSeg.OverlayKind"
"""``attention``, ``probability``, ``uncertainty`` or ``level_set``."""
OVERLAY_KEY_ATTRIBUTE = "MultiModalSeg.OverlayKey"
"""The modality (attention) or label name (probability, level set); empty for uncertainty."""
ZERO_CONTOUR_REFERENCE_ROLE = "MultiModalSeg.zeroContour"
"""Node reference from a level-set overlay volume to its zero-contour segmentation."""


def nodes_with_role(scene: slicer.vtkMRMLScene, role: str, node_class: str = "vtkMRMLNode") -> Iterator[slicer.vtkMRMLNode]:
    """Nodes of ``node_class`` in ``scene`` whose :data:`ROLE_ATTRIBUTE` is ``role``, in scene order."""
    for index in range(scene.GetNumberOfNodesByClass(node_class)):
        node = scene.GetNthNodeByClass(index, node_class)
        if node.GetAttribute(ROLE_ATTRIBUTE) == role:
            yield node
