"""Overlay volumes: attention, probability and uncertainty as heat maps; the level set as a
diverging map with its zero contour.

Heat overlays (``attention``, ``probability``, ``uncertainty``)
    The heat color map (:mod:`.color_maps`) over a fixed window: [0, 1] for attention and
    probability (both are in [0, 1] by construction, so colors compare across cases), and
    [0, max] for uncertainty, whose scale depends on the method. Voxels below a small
    threshold (``DEFAULT_THRESHOLD_FRACTION`` of the window, 0.05) are transparent: without
    it the near-zero background would tint and darken the whole image under the overlay.

Level set (``level_set``, DTC)
    The blue-white-red map with the window centred on 0 (level 0, window twice the
    largest |value|): blue inside (the level set is negative inside, as in DTC and
    ``MultiModalSegLib.levelset``), white on the contour, red outside; no threshold,
    since every value carries meaning. Its zero contour is a separate segmentation node
    holding ``level set < 0``, drawn as an outline only (no fill) in a yellow that stands
    out on both blue and red. It is a segmentation, not a label-map outline, because the
    label-map outline mode is a per-view setting that would change how every label map is
    drawn; a segmentation is shown and hidden on its own and is saved as ``.seg.nrrd``.
    The contour follows voxel faces (the level set thresholded per voxel), the same
    resolution as the segmentation it is compared with.

Each overlay volume carries the attributes of :mod:`.node_roles`, so the panel and a
reloaded scene find the overlays and the contour of each level set.
"""

from __future__ import annotations

import numpy as np
import slicer
from slicer.util import arrayFromVolume, updateVolumeFromArray

from .color_maps import diverging_color_node, heat_color_node
from .errors import SceneLogicError
from .node_roles import (
    OVERLAY_KEY_ATTRIBUTE,
    OVERLAY_KIND_ATTRIBUTE,
    ROLE_ATTRIBUTE,
    ROLE_OVERLAY,
    ROLE_ZERO_CONTOUR,
    ZERO_CONTOUR_REFERENCE_ROLE,
    nodes_with_role,
)
from .segment_labels import SegmentLabel
from .segmentation_import import import_labelmap_node_as_segmentation

__all__ = [
    "DEFAULT_THRESHOLD_FRACTION",
    "HEAT_OVERLAY_KINDS",
    "OVERLAY_KINDS",
    "ZERO_CONTOUR_COLOR",
    "ZERO_CONTOUR_THICKNESS",
    "configure_heat_overlay",
    "configure_level_set_overlay",
    "list_overlays",
    "overlay_key",
    "overlay_key_of",
    "zero_contour_of",
]

HEAT_OVERLAY_KINDS = ("attention", "probability", "uncertainty")
OVERLAY_KINDS = HEAT_OVERLAY_KINDS + ("level_set",)

DEFAULT_THRESHOLD_FRACTION = 0.05
"""Heat-overlay voxels below this fraction of the window are transparent."""

ZERO_CONTOUR_COLOR = (1.0, 0.85, 0.0)
ZERO_CONTOUR_THICKNESS = 2
"""Outline width in screen pixels of the zero contour (Slicer's default is 1)."""


def overlay_key(kind: str, name: str = "") -> str:
    """Stable identifier of an overlay: ``attention:venous``, ``probability:tumor``,
    ``level_set:tumor``, ``uncertainty``. The scene writer's ``--overlay`` takes these."""
    if kind not in OVERLAY_KINDS:
        raise SceneLogicError(f"Unknown overlay kind '{kind}'; choose one of {', '.join(OVERLAY_KINDS)}.")
    return f"{kind}:{name}" if name else kind


def overlay_key_of(volume_node: slicer.vtkMRMLVolumeNode) -> str | None:
    """The :func:`overlay_key` of an overlay volume, None for other volumes."""
    if volume_node.GetAttribute(ROLE_ATTRIBUTE) != ROLE_OVERLAY:
        return None
    return overlay_key(volume_node.GetAttribute(OVERLAY_KIND_ATTRIBUTE) or "",
                       volume_node.GetAttribute(OVERLAY_KEY_ATTRIBUTE) or "")


def _mark_overlay(volume_node: slicer.vtkMRMLVolumeNode, kind: str, name: str) -> None:
    volume_node.SetAttribute(ROLE_ATTRIBUTE, ROLE_OVERLAY)
    volume_node.SetAttribute(OVERLAY_KIND_ATTRIBUTE, kind)
    volume_node.SetAttribute(OVERLAY_KEY_ATTRIBUTE, name)


def _display_node(volume_node: slicer.vtkMRMLScalarVolumeNode) -> slicer.vtkMRMLScalarVolumeDisplayNode:
    if volume_node.GetDisplayNode() is None:
        volume_node.CreateDefaultDisplayNodes()
    return volume_node.GetDisplayNode()


def configure_heat_overlay(
    scene: slicer.vtkMRMLScene,
    volume_node: slicer.vtkMRMLScalarVolumeNode,
    kind: str,
    name: str = "",
    threshold_fraction: float = DEFAULT_THRESHOLD_FRACTION,
) -> None:
    """Display ``volume_node`` as a heat overlay of ``kind`` (attention, probability, uncertainty).

    ``name`` is the modality (attention) or label (probability). Sets the heat color node,
    a fixed window (see the module docstring), and the lower threshold below which voxels
    are transparent.
    """
    if kind not in HEAT_OVERLAY_KINDS:
        raise SceneLogicError(f"'{kind}' is not a heat overlay; choose one of {', '.join(HEAT_OVERLAY_KINDS)}.")
    if volume_node.GetImageData() is None:
        raise SceneLogicError(f"Overlay volume '{volume_node.GetName()}' has no image data; load the result again.")
    if kind == "uncertainty":
        window_max = float(volume_node.GetImageData().GetScalarRange()[1])
        window_max = window_max if window_max > 0 else 1.0
    else:
        window_max = 1.0
    display_node = _display_node(volume_node)
    display_node.SetAndObserveColorNodeID(heat_color_node(scene).GetID())
    display_node.SetAutoWindowLevel(False)
    display_node.SetWindowLevelMinMax(0.0, window_max)
    display_node.SetAutoThreshold(False)
    display_node.SetApplyThreshold(True)
    display_node.SetThreshold(threshold_fraction * window_max, max(window_max, 1.0) * 1e6)
    display_node.SetInterpolate(True)
    _mark_overlay(volume_node, kind, name)


def configure_level_set_overlay(
    scene: slicer.vtkMRMLScene,
    volume_node: slicer.vtkMRMLScalarVolumeNode,
    name: str,
) -> slicer.vtkMRMLSegmentationNode:
    """Display a level set with the diverging map centred on 0 and add its zero-contour segmentation.

    ``name`` is the label the level set belongs to. Returns the contour segmentation (one
    segment, ``level set < 0``, outline only, hidden until the overlay is shown with
    :func:`.slice_layers.show_overlay`); the volume references it under
    :data:`ZERO_CONTOUR_REFERENCE_ROLE`.
    """
    if volume_node.GetImageData() is None:
        raise SceneLogicError(f"Level-set volume '{volume_node.GetName()}' has no image data; load the result again.")
    level_set = arrayFromVolume(volume_node)
    half_window = float(np.max(np.abs(level_set))) if level_set.size else 0.0
    half_window = half_window if half_window > 0 else 1.0
    display_node = _display_node(volume_node)
    display_node.SetAndObserveColorNodeID(diverging_color_node(scene).GetID())
    display_node.SetAutoWindowLevel(False)
    display_node.SetWindowLevel(2.0 * half_window, 0.0)
    display_node.SetAutoThreshold(False)
    display_node.SetApplyThreshold(False)
    display_node.SetInterpolate(True)
    _mark_overlay(volume_node, "level_set", name)

    inside = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", f"{volume_node.GetName()} inside")
    try:
        inside.CopyOrientation(volume_node)
        inside.SetAndObserveTransformNodeID(volume_node.GetTransformNodeID())
        updateVolumeFromArray(inside, (level_set < 0).astype(np.uint8))
        contour_label = SegmentLabel(value=1, name=f"{name} zero level set", color=ZERO_CONTOUR_COLOR)
        contour = import_labelmap_node_as_segmentation(
            scene, inside, [contour_label], reference_volume_node=volume_node,
            name=f"{volume_node.GetName()} zero contour", role=ROLE_ZERO_CONTOUR)
    finally:
        if inside.GetDisplayNode() is not None:
            scene.RemoveNode(inside.GetDisplayNode())
        scene.RemoveNode(inside)
    contour_display = contour.GetDisplayNode()
    contour_display.SetVisibility2DFill(False)
    contour_display.SetVisibility2DOutline(True)
    contour_display.SetSliceIntersectionThickness(ZERO_CONTOUR_THICKNESS)
    contour_display.SetVisibility(False)
    volume_node.SetNodeReferenceID(ZERO_CONTOUR_REFERENCE_ROLE, contour.GetID())
    return contour


def zero_contour_of(volume_node: slicer.vtkMRMLVolumeNode) -> slicer.vtkMRMLSegmentationNode | None:
    """The zero-contour segmentation of a level-set overlay, None for other volumes."""
    return volume_node.GetNodeReference(ZERO_CONTOUR_REFERENCE_ROLE)


def list_overlays(scene: slicer.vtkMRMLScene) -> list[slicer.vtkMRMLScalarVolumeNode]:
    """All overlay volumes in the scene, in the order they were added (for the panel's selector)."""
    return list(nodes_with_role(scene, ROLE_OVERLAY, "vtkMRMLScalarVolumeNode"))
