"""Which volumes the slice views show: background image, foreground overlay and its opacity.

Slicer keeps these per view in ``vtkMRMLSliceCompositeNode`` s (one per slice view: Red,
Yellow, Green, ...). Setting them on every composite node in the scene works the same in
the Slicer application and headless, and the settings are saved with the scene.

The foreground layer may hold the user's own volume (a PET over a CT, a second sequence).
MultiModalSeg touches it only to show one of its overlays, and gives it back: showing an
overlay remembers each view's previous foreground volume and opacity on the composite node
(attribute :data:`PREVIOUS_FOREGROUND_ATTRIBUTE`, saved with the scene), hiding the overlay
restores them, and an opacity change reaches only the views that show the overlay. A view
whose foreground is not a MultiModalSeg overlay is never changed by hiding or by opacity.

Showing an overlay also switches what goes with it:

* the zero contour of a level-set overlay is shown, every other zero contour hidden;
* MultiModalSeg's segmentations are drawn as outlines only while an overlay is shown (the
  fill would hide the overlay under it), and filled again when it is hidden.
"""

from __future__ import annotations

import slicer

from .errors import SceneLogicError
from .node_roles import ROLE_ATTRIBUTE, ROLE_OVERLAY, ROLE_SEGMENTATION, ROLE_ZERO_CONTOUR, nodes_with_role
from .overlays import zero_contour_of

__all__ = [
    "DEFAULT_OVERLAY_OPACITY",
    "PREVIOUS_FOREGROUND_ATTRIBUTE",
    "hide_overlay",
    "is_overlay",
    "set_overlay_opacity",
    "show_background",
    "show_overlay",
    "shown_overlay",
    "slice_composite_nodes",
]

DEFAULT_OVERLAY_OPACITY = 0.5
PREVIOUS_FOREGROUND_ATTRIBUTE = "MultiModalSeg.PreviousForeground"
"""On a composite node: ``<volume id>|<opacity>`` of the foreground an overlay replaced (id may be empty)."""


def slice_composite_nodes(scene: slicer.vtkMRMLScene) -> list[slicer.vtkMRMLSliceCompositeNode]:
    """Every slice view's composite node in the scene (none until slice views or logics exist)."""
    return [scene.GetNthNodeByClass(index, "vtkMRMLSliceCompositeNode")
            for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode"))]


def show_background(scene: slicer.vtkMRMLScene, volume_node: slicer.vtkMRMLVolumeNode | None) -> None:
    """Show ``volume_node`` (an input image) as the background of every slice view."""
    volume_id = volume_node.GetID() if volume_node is not None else None
    for composite_node in slice_composite_nodes(scene):
        composite_node.SetBackgroundVolumeID(volume_id)


def is_overlay(node: slicer.vtkMRMLNode | None) -> bool:
    """True for a volume MultiModalSeg made as an overlay (attention, probability, uncertainty, level set)."""
    return node is not None and node.GetAttribute(ROLE_ATTRIBUTE) == ROLE_OVERLAY


def _check_opacity(opacity: float) -> float:
    if not 0.0 <= float(opacity) <= 1.0:
        raise SceneLogicError(f"Overlay opacity {opacity} is outside 0-1; choose a value between 0 and 1.")
    return float(opacity)


def _shows_overlay(scene: slicer.vtkMRMLScene, composite_node: slicer.vtkMRMLSliceCompositeNode) -> bool:
    volume_id = composite_node.GetForegroundVolumeID()
    return bool(volume_id) and is_overlay(scene.GetNodeByID(volume_id))


def show_overlay(
    scene: slicer.vtkMRMLScene,
    overlay_node: slicer.vtkMRMLScalarVolumeNode | None,
    opacity: float = DEFAULT_OVERLAY_OPACITY,
    outline_segmentations: bool = True,
) -> None:
    """Show ``overlay_node`` as every slice view's foreground at ``opacity`` (0-1); None hides it
    (:func:`hide_overlay`).

    Each view's previous foreground, when it is not an overlay, is remembered for
    :func:`hide_overlay`. A level-set overlay's zero contour becomes visible with it.
    ``outline_segmentations`` draws MultiModalSeg's segmentations as outlines while it is shown.
    """
    opacity = _check_opacity(opacity)
    if overlay_node is None:
        hide_overlay(scene)
        return
    if not is_overlay(overlay_node):
        raise SceneLogicError(
            f"Volume '{overlay_node.GetName()}' is not a MultiModalSeg overlay; pick an attention, probability, "
            "uncertainty or level-set map of a segmentation result.")
    for composite_node in slice_composite_nodes(scene):
        if not _shows_overlay(scene, composite_node):
            previous = composite_node.GetForegroundVolumeID() or ""
            composite_node.SetAttribute(PREVIOUS_FOREGROUND_ATTRIBUTE,
                                        f"{previous}|{composite_node.GetForegroundOpacity():g}")
        composite_node.SetForegroundVolumeID(overlay_node.GetID())
        composite_node.SetForegroundOpacity(opacity)
    _show_layers_that_go_with(scene, overlay_node, fill=not outline_segmentations)


def hide_overlay(scene: slicer.vtkMRMLScene) -> int:
    """Take MultiModalSeg's overlay out of every view that shows one, giving back the foreground
    (volume and opacity) it replaced; views showing anything else are left alone. Returns the
    number of views changed."""
    changed = 0
    for composite_node in slice_composite_nodes(scene):
        if not _shows_overlay(scene, composite_node):
            continue
        previous_id, _, previous_opacity = (composite_node.GetAttribute(PREVIOUS_FOREGROUND_ATTRIBUTE) or "").partition("|")
        composite_node.SetForegroundVolumeID(previous_id if previous_id and scene.GetNodeByID(previous_id) else None)
        if previous_opacity:
            composite_node.SetForegroundOpacity(float(previous_opacity))
        composite_node.RemoveAttribute(PREVIOUS_FOREGROUND_ATTRIBUTE)
        changed += 1
    _show_layers_that_go_with(scene, None, fill=True)
    return changed


def set_overlay_opacity(scene: slicer.vtkMRMLScene, overlay_node: slicer.vtkMRMLScalarVolumeNode | None,
                        opacity: float) -> int:
    """Set ``opacity`` in the views whose foreground is ``overlay_node``; nothing else changes (no
    overlay: nothing at all). Returns the number of views changed."""
    opacity = _check_opacity(opacity)
    if not is_overlay(overlay_node):
        return 0
    changed = 0
    for composite_node in slice_composite_nodes(scene):
        if composite_node.GetForegroundVolumeID() == overlay_node.GetID():
            composite_node.SetForegroundOpacity(opacity)
            changed += 1
    return changed


def _show_layers_that_go_with(scene: slicer.vtkMRMLScene, overlay_node: slicer.vtkMRMLScalarVolumeNode | None,
                              fill: bool) -> None:
    """The zero contour of ``overlay_node`` visible (every other one hidden); segmentation fill on or off."""
    selected_contour = zero_contour_of(overlay_node) if overlay_node is not None else None
    selected_contour_id = selected_contour.GetID() if selected_contour is not None else None
    for contour in nodes_with_role(scene, ROLE_ZERO_CONTOUR, "vtkMRMLSegmentationNode"):
        if contour.GetDisplayNode() is not None:
            contour.GetDisplayNode().SetVisibility(contour.GetID() == selected_contour_id)
    for segmentation_node in nodes_with_role(scene, ROLE_SEGMENTATION, "vtkMRMLSegmentationNode"):
        if segmentation_node.GetDisplayNode() is not None:
            segmentation_node.GetDisplayNode().SetVisibility2DFill(fill)
            segmentation_node.GetDisplayNode().SetVisibility2DOutline(True)


def shown_overlay(scene: slicer.vtkMRMLScene) -> slicer.vtkMRMLScalarVolumeNode | None:
    """The MultiModalSeg overlay the slice views show (the first view showing one), None if none does."""
    for composite_node in slice_composite_nodes(scene):
        if _shows_overlay(scene, composite_node):
            return scene.GetNodeByID(composite_node.GetForegroundVolumeID())
    return None
