"""Which volumes the slice views show: background image, foreground overlay and its opacity.

Slicer keeps these per view in ``vtkMRMLSliceCompositeNode`` s (one per slice view: Red,
Yellow, Green, ...). Setting them on every composite node in the scene works the same in
the Slicer application and headless, and the settings are saved with the scene.

Showing an overlay also switches what goes with it:

* the zero contour of a level-set overlay is shown, every other zero contour hidden;
* MultiModalSeg's segmentations are drawn as outlines only while an overlay is shown (the
  fill would hide the overlay under it), and filled again when none is.
"""

from __future__ import annotations

import slicer

from .errors import SceneLogicError
from .node_roles import ROLE_ATTRIBUTE, ROLE_OVERLAY, ROLE_SEGMENTATION, ROLE_ZERO_CONTOUR, nodes_with_role
from .overlays import zero_contour_of

__all__ = ["DEFAULT_OVERLAY_OPACITY", "show_background", "show_overlay", "shown_overlay", "slice_composite_nodes"]

DEFAULT_OVERLAY_OPACITY = 0.5


def slice_composite_nodes(scene: slicer.vtkMRMLScene) -> list[slicer.vtkMRMLSliceCompositeNode]:
    """Every slice view's composite node in the scene (none until slice views or logics exist)."""
    return [scene.GetNthNodeByClass(index, "vtkMRMLSliceCompositeNode")
            for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode"))]


def show_background(scene: slicer.vtkMRMLScene, volume_node: slicer.vtkMRMLVolumeNode | None) -> None:
    """Show ``volume_node`` (an input image) as the background of every slice view."""
    volume_id = volume_node.GetID() if volume_node is not None else None
    for composite_node in slice_composite_nodes(scene):
        composite_node.SetBackgroundVolumeID(volume_id)


def show_overlay(
    scene: slicer.vtkMRMLScene,
    overlay_node: slicer.vtkMRMLScalarVolumeNode | None,
    opacity: float = DEFAULT_OVERLAY_OPACITY,
    outline_segmentations: bool = True,
) -> None:
    """Show ``overlay_node`` as every slice view's foreground at ``opacity`` (0-1); None hides it.

    A level-set overlay's zero contour becomes visible with it. ``outline_segmentations``
    draws MultiModalSeg's segmentations as outlines while an overlay is shown.
    """
    if not 0.0 <= float(opacity) <= 1.0:
        raise SceneLogicError(f"Overlay opacity {opacity} is outside 0-1; choose a value between 0 and 1.")
    if overlay_node is not None and overlay_node.GetAttribute(ROLE_ATTRIBUTE) != ROLE_OVERLAY:
        raise SceneLogicError(
            f"Volume '{overlay_node.GetName()}' is not a MultiModalSeg overlay; pick an attention, probability, "
            "uncertainty or level-set map of a segmentation result.")
    overlay_id = overlay_node.GetID() if overlay_node is not None else None
    for composite_node in slice_composite_nodes(scene):
        composite_node.SetForegroundVolumeID(overlay_id)
        composite_node.SetForegroundOpacity(float(opacity))

    selected_contour = zero_contour_of(overlay_node) if overlay_node is not None else None
    selected_contour_id = selected_contour.GetID() if selected_contour is not None else None
    for contour in nodes_with_role(scene, ROLE_ZERO_CONTOUR, "vtkMRMLSegmentationNode"):
        if contour.GetDisplayNode() is not None:
            contour.GetDisplayNode().SetVisibility(contour.GetID() == selected_contour_id)
    fill = overlay_node is None or not outline_segmentations
    for segmentation_node in nodes_with_role(scene, ROLE_SEGMENTATION, "vtkMRMLSegmentationNode"):
        if segmentation_node.GetDisplayNode() is not None:
            segmentation_node.GetDisplayNode().SetVisibility2DFill(fill)
            segmentation_node.GetDisplayNode().SetVisibility2DOutline(True)


def shown_overlay(scene: slicer.vtkMRMLScene) -> slicer.vtkMRMLScalarVolumeNode | None:
    """The overlay the first slice view shows as foreground, None if it shows none."""
    for composite_node in slice_composite_nodes(scene):
        volume_id = composite_node.GetForegroundVolumeID()
        return scene.GetNodeByID(volume_id) if volume_id else None
    return None
