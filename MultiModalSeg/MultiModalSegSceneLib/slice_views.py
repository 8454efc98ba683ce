"""The Red, Yellow and Green slice views: their logics, field of view, and where they are centred.

In the Slicer application the slice logics exist already (one per view of the layout)
and are taken from the application logic. Headless, a ``vtkMRMLSliceLogic`` is made per
view, registered with the application logic like Slicer's own, and given the view's slice
node: the one already in the scene (a reloaded ``.mrml`` keeps its slice positions) or a
new one with the view's standard orientation (Red axial, Yellow sagittal, Green coronal).

For pictures and for the first look at a result, the views are centred on the largest
segment: at the segment voxel nearest to its centre of mass (the centre itself can lie
outside a curved organ), snapped to the background's voxel planes so the slices show
voxels, not interpolations between them.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import slicer
from vtkmodules.util.numpy_support import vtk_to_numpy
from vtkmodules.vtkCommonMath import vtkMatrix4x4

__all__ = [
    "DEFAULT_VIEW_NAMES",
    "VIEW_ORIENTATIONS",
    "center_slice_views",
    "fit_slice_views",
    "largest_segment_center",
    "segment_mask",
    "segment_voxel_counts",
    "slice_logics_for_views",
]

DEFAULT_VIEW_NAMES = ("Red", "Yellow", "Green")
VIEW_ORIENTATIONS = {"Red": "Axial", "Yellow": "Sagittal", "Green": "Coronal"}


def slice_logics_for_views(
    scene: slicer.vtkMRMLScene,
    application_logic: slicer.vtkMRMLApplicationLogic,
    view_names: Iterable[str] = DEFAULT_VIEW_NAMES,
) -> dict[str, slicer.vtkMRMLSliceLogic]:
    """The slice logic of each named view, taken from the application logic or made headless.

    Makes the views' slice and composite nodes exist in ``scene``; call it before
    :func:`.slice_layers.show_overlay` so the settings reach every view.
    """
    logics: dict[str, slicer.vtkMRMLSliceLogic] = {}
    for view_name in view_names:
        logic = application_logic.GetSliceLogicByLayoutName(view_name)
        if logic is None:
            logic = slicer.vtkMRMLSliceLogic()
            logic.SetMRMLApplicationLogic(application_logic)
            logic.SetMRMLScene(scene)
            slice_node = scene.GetSingletonNode(view_name, "vtkMRMLSliceNode")
            if slice_node is not None:
                logic.SetSliceNode(slice_node)
            else:
                slice_node = logic.AddSliceNode(view_name)
                orientation = VIEW_ORIENTATIONS.get(view_name, "Axial")
                slice_node.SetDefaultOrientation(orientation)
                slice_node.SetOrientation(orientation)
            application_logic.GetSliceLogics().AddItem(logic)
        logics[view_name] = logic
    return logics


def fit_slice_views(slice_logics: dict[str, slicer.vtkMRMLSliceLogic], width: int, height: int) -> None:
    """Size each view to ``width`` x ``height`` pixels and fit its field of view to the background."""
    for logic in slice_logics.values():
        logic.ResizeSliceNode(width, height)
        logic.FitSliceToBackground(width, height)


def center_slice_views(
    slice_logics: dict[str, slicer.vtkMRMLSliceLogic],
    ras: tuple[float, float, float] | np.ndarray,
    snap_to_voxels: bool = True,
) -> None:
    """Move every view's slice through ``ras`` (mm) and centre the view on it."""
    r, a, s = (float(value) for value in ras)
    for logic in slice_logics.values():
        logic.GetSliceNode().JumpSliceByCentering(r, a, s)
        if snap_to_voxels:
            logic.SnapSliceOffsetToIJK()


def segment_mask(segmentation_node: slicer.vtkMRMLSegmentationNode, segment_id: str) -> tuple[np.ndarray, np.ndarray] | None:
    """A segment's binary mask in array order ``(k, j, i)`` and the matrix from mask index
    ``(i, j, k, 1)`` to world RAS; None if the segment has no labelmap.

    Segments imported from one label map share a labelmap layer: the representation holds
    every segment of the layer, each voxel with its segment's label value.
    """
    oriented_image = slicer.vtkOrientedImageData()
    if not slicer.vtkSlicerSegmentationsModuleLogic.GetSegmentBinaryLabelmapRepresentation(
            segmentation_node, segment_id, oriented_image):
        return None
    scalars = oriented_image.GetPointData().GetScalars() if oriented_image.GetPointData() else None
    if scalars is None:
        return None
    extent = oriented_image.GetExtent()
    if extent[1] < extent[0] or extent[3] < extent[2] or extent[5] < extent[4]:
        return None
    dimensions = oriented_image.GetDimensions()
    label_value = segmentation_node.GetSegmentation().GetSegment(segment_id).GetLabelValue()
    mask = vtk_to_numpy(scalars).reshape(dimensions[2], dimensions[1], dimensions[0]) == label_value
    matrix = vtkMatrix4x4()
    oriented_image.GetImageToWorldMatrix(matrix)
    image_to_world = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    # Shift so that array index (0, 0, 0) is the extent's first voxel.
    offset = np.eye(4)
    offset[:3, 3] = (extent[0], extent[2], extent[4])
    return mask, image_to_world @ offset


def segment_voxel_counts(segmentation_node: slicer.vtkMRMLSegmentationNode) -> dict[str, int]:
    """Number of voxels of each segment (by segment ID)."""
    segmentation = segmentation_node.GetSegmentation()
    counts = {}
    for index in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(index)
        found = segment_mask(segmentation_node, segment_id)
        counts[segment_id] = int(found[0].sum()) if found is not None else 0
    return counts


def largest_segment_center(
    segmentation_node: slicer.vtkMRMLSegmentationNode,
    segment_id: str | None = None,
) -> tuple[str, np.ndarray] | None:
    """``(segment ID, RAS)`` of the voxel of the largest segment nearest its centre of mass.

    ``segment_id`` picks a segment instead of the largest one. None when every segment is empty.
    """
    if segment_id is None:
        counts = segment_voxel_counts(segmentation_node)
        if not counts or max(counts.values()) == 0:
            return None
        segment_id = max(counts, key=counts.get)
    found = segment_mask(segmentation_node, segment_id)
    if found is None or not found[0].any():
        return None
    mask, index_to_world = found
    voxels = np.argwhere(mask)  # (k, j, i)
    nearest = voxels[np.argmin(((voxels - voxels.mean(axis=0)) ** 2).sum(axis=1))]
    k, j, i = (float(value) for value in nearest)
    return segment_id, (index_to_world @ np.array([i, j, k, 1.0]))[:3]
