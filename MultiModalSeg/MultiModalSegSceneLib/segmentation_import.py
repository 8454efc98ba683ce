"""A label map (file or node) into a segmentation node with the model's names, colors and terminology.

Slicer's ``ImportLabelmapToSegmentationNode`` makes one segment per voxel value present and
keeps that value as the segment's label value; each segment is then renamed, recolored and
tagged from the label with that value. Labels the prediction left empty still get an
(empty) segment, so the user can paint them in Segment Editor, and segments follow the
label order of the manifest.

The segmentation's reference image geometry is the input volume (the model's reference
modality): Segment Editor then edits on that image's voxel grid and offers it as source
volume. The label map must lie on that grid; it is snapped onto it exactly, removing the
float32 rounding of the NIfTI header.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import slicer

from .errors import SceneLogicError
from .node_roles import ROLE_ATTRIBUTE, ROLE_SEGMENTATION
from .segment_labels import SegmentLabel, parse_labels
from .volume_files import import_volume_file
from .volume_geometry import place_on_grid_of

__all__ = [
    "SEGMENT_OUTLINE_THICKNESS",
    "import_labelmap_file_as_segmentation",
    "import_labelmap_node_as_segmentation",
    "replace_model_segments",
    "segment_ids_by_label_value",
]

SEGMENT_OUTLINE_THICKNESS = 2
"""Outline width in screen pixels (Slicer's default, 1, is hard to see over a heat overlay)."""


def segment_ids_by_label_value(segmentation_node: slicer.vtkMRMLSegmentationNode) -> dict[int, str]:
    """Segment ID of each label value in the segmentation (as imported from a label map)."""
    segmentation = segmentation_node.GetSegmentation()
    return {
        segmentation.GetNthSegment(index).GetLabelValue(): segmentation.GetNthSegmentID(index)
        for index in range(segmentation.GetNumberOfSegments())
    }


def import_labelmap_node_as_segmentation(
    scene: slicer.vtkMRMLScene,
    labelmap_node: slicer.vtkMRMLLabelMapVolumeNode,
    labels: Iterable[Mapping[str, Any] | SegmentLabel],
    reference_volume_node: slicer.vtkMRMLVolumeNode | None = None,
    name: str = "Segmentation",
    role: str = ROLE_SEGMENTATION,
) -> slicer.vtkMRMLSegmentationNode:
    """Make a new segmentation node in ``scene`` from a label map node already in the scene.

    ``labels``: the result's / manifest's label list (see :mod:`.segment_labels`). Voxel
    values that no label lists still become segments, named ``Label <value>``.
    ``reference_volume_node``: the input image; the label map is placed on its grid (an
    error if it does not fit) and becomes the segmentation's reference geometry. Without
    one, the label map's own grid is the reference.
    """
    parsed_labels = parse_labels(labels)
    reference = reference_volume_node if reference_volume_node is not None else labelmap_node
    if reference_volume_node is not None:
        place_on_grid_of(labelmap_node, reference_volume_node, "the label map")

    segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    segmentation_node.CreateDefaultDisplayNodes()
    segmentation_node.GetDisplayNode().SetSliceIntersectionThickness(SEGMENT_OUTLINE_THICKNESS)
    segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(reference)
    if reference is not labelmap_node:
        segmentation_node.SetNodeReferenceID(segmentation_node.GetReferenceImageGeometryReferenceRole(), reference.GetID())
    segmentation_node.SetAndObserveTransformNodeID(reference.GetTransformNodeID())
    segmentation_node.SetAttribute(ROLE_ATTRIBUTE, role)
    if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap_node, segmentation_node):
        scene.RemoveNode(segmentation_node)
        raise SceneLogicError(
            f"Could not turn label map '{labelmap_node.GetName()}' into segments; check that it is an integer "
            "label image (0 = background).")

    segmentation = segmentation_node.GetSegmentation()
    imported_ids_by_value = segment_ids_by_label_value(segmentation_node)
    label_segment_ids: list[str] = []
    for label in parsed_labels:
        segment_id = imported_ids_by_value.get(label.value)
        if segment_id is None:  # the prediction has no voxel of this label: keep an empty segment to paint
            segment_id = segmentation.AddEmptySegment("", label.name, label.color)
        label_segment_ids.append(segment_id)
        segment = segmentation.GetSegment(segment_id)
        segment.SetName(label.name)
        segment.SetColor(*label.color)
        if label.terminology:
            segment.SetTerminology(label.terminology)
    known_values = {label.value for label in parsed_labels}
    for value, segment_id in imported_ids_by_value.items():
        if value not in known_values:
            segmentation.GetSegment(segment_id).SetName(f"Label {value}")
    for index, segment_id in enumerate(label_segment_ids):  # manifest order first, unknown values after
        segmentation.SetSegmentIndex(segment_id, index)
    return segmentation_node


def import_labelmap_file_as_segmentation(
    scene: slicer.vtkMRMLScene,
    labelmap_path: str | Path,
    labels: Iterable[Mapping[str, Any] | SegmentLabel],
    reference_volume_node: slicer.vtkMRMLVolumeNode | None = None,
    name: str = "Segmentation",
) -> slicer.vtkMRMLSegmentationNode:
    """Read a label map file (``labelmap.nii.gz``) into a new segmentation node; see
    :func:`import_labelmap_node_as_segmentation`. The temporary label map node is removed."""
    labelmap_node = import_volume_file(scene, labelmap_path, name=f"{name} label map", labelmap=True)
    try:
        return import_labelmap_node_as_segmentation(scene, labelmap_node, labels, reference_volume_node, name)
    finally:
        display_node = labelmap_node.GetDisplayNode()
        if display_node is not None:
            scene.RemoveNode(display_node)
        scene.RemoveNode(labelmap_node)


def replace_model_segments(
    target_node: slicer.vtkMRMLSegmentationNode,
    source_node: slicer.vtkMRMLSegmentationNode,
    labels: Iterable[Mapping[str, Any] | SegmentLabel],
) -> list[str]:
    """Move the model's segments from ``source_node`` into the user's ``target_node``.

    What the user expects from an output-segmentation selector (as in TotalSegmentator or
    MONAI Label): the chosen node keeps its ID, name, display settings and every segment
    the model does not produce (the user's own annotations); a segment named like one of the
    model's labels is replaced by the new result, in the model's label order, ahead of the
    user's other segments. The target's reference geometry becomes the source's when the
    target has none, so Segment Editor edits on the model's input grid. ``source_node`` is
    emptied of the moved segments. Returns the moved segments' IDs in ``target_node``.

    Raises :class:`SceneLogicError` if the target already has a reference geometry that the
    result does not lie on (say which node to pick instead).
    """
    parsed_labels = parse_labels(labels)
    source = source_node.GetSegmentation()
    target = target_node.GetSegmentation()
    role = target_node.GetReferenceImageGeometryReferenceRole()
    source_reference = source_node.GetNodeReferenceID(role)
    target_reference = target_node.GetNodeReferenceID(role)
    if target.GetNumberOfSegments() > 0 and target_reference and source_reference and target_reference != source_reference:
        raise SceneLogicError(
            f"The segmentation '{target_node.GetName()}' is drawn on another image than this result; pick an empty "
            "segmentation or one made on the model's reference input, or leave the output as 'Create new'.")
    reference_volume = source_node.GetNodeReference(role)
    if (target.GetNumberOfSegments() == 0 or not target_reference) and reference_volume is not None:
        target_node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume)
        target_node.SetNodeReferenceID(role, reference_volume.GetID())
        target_node.SetAndObserveTransformNodeID(source_node.GetTransformNodeID())
    if target_node.GetDisplayNode() is None:
        target_node.CreateDefaultDisplayNodes()
        target_node.GetDisplayNode().SetSliceIntersectionThickness(SEGMENT_OUTLINE_THICKNESS)
    target_node.SetAttribute(ROLE_ATTRIBUTE, source_node.GetAttribute(ROLE_ATTRIBUTE) or ROLE_SEGMENTATION)

    source_ids = [source.GetSegmentIdBySegmentName(label.name) for label in parsed_labels]
    source_ids += [source.GetNthSegmentID(i) for i in range(source.GetNumberOfSegments())
                   if source.GetNthSegmentID(i) not in source_ids]
    moved: list[str] = []
    for source_id in source_ids:
        if not source_id:
            continue
        name = source.GetSegment(source_id).GetName()
        old_id = target.GetSegmentIdBySegmentName(name)
        if old_id:
            target.RemoveSegment(old_id)
        before = {target.GetNthSegmentID(i) for i in range(target.GetNumberOfSegments())}
        if not target.CopySegmentFromSegmentation(source, source_id, True):
            raise SceneLogicError(
                f"Could not copy segment '{name}' into '{target_node.GetName()}'; choose 'Create new' as output.")
        new_ids = [target.GetNthSegmentID(i) for i in range(target.GetNumberOfSegments())
                   if target.GetNthSegmentID(i) not in before]
        moved.extend(new_ids)
    for index, segment_id in enumerate(moved):
        target.SetSegmentIndex(segment_id, index)
    return moved
